"""The explanation methods by name: `--method` of `python -m medjax.explain`.

Each is a pure function (fn: ModelFn, variables, images (B, ...), targets (B,), **options) ->
maps (B, *spatial), batched and jit-compatible; `medjax.explain.run.explain_images` jits it.
"""

from medjax.registry import Registry

EXPLAINERS = Registry("explainer", "--method")
