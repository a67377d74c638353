"""What a paper needs to report: the run card (hardware, software, timings), the experiment
record, and `python -m medjax.report`, which turns a finished run into report.html and report.md."""
