"""Optimizers, losses, the train state, compiled steps, checkpoints and the training loop."""
