"""What medjax.bench measures beyond images/s: model FLOPs utilisation, the largest batch that
fits, the step's host and device parts, and the input pipeline's own rate."""
