"""Using a finished run: its evaluated variables on disk and `load_run`.

`TrainedRun` and `load_run` are imported on first use, so that `medjax.inference.exported`
(an exported model's loader) runs without importing the model code or the data stack.
"""

__all__ = ["TrainedRun", "load_run"]


def __getattr__(name: str):
    if name in __all__:
        from medjax.inference import trained

        return getattr(trained, name)
    raise AttributeError(f"module 'medjax.inference' has no attribute {name!r}")
