"""Using a finished run: its evaluated variables on disk and `load_run`."""

from medjax.inference.trained import TrainedRun, load_run

__all__ = ["TrainedRun", "load_run"]
