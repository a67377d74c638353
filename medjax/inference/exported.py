"""Loading a model `python -m medjax.export` wrote: needs jax and numpy only.

    from medjax.inference.exported import load
    predict = load("exported/mri")           # or load(..., calibrated=True)
    probs = predict(images)                  # (N, *model.json input shape) float32, any N

Nothing here imports medjax's model, data or training code, so this module (or the README's
ten-line copy of it) runs wherever jax does.
"""

import json
import os

import jax
import numpy as np

from medjax.errors import WorkdirError

FORMAT = "medjax-export-1"
MANIFEST = "model.json"


def read_manifest(folder: str) -> dict:
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise WorkdirError(
            f"{path} cannot be read ({e}); pass a folder `python -m medjax.export` wrote"
        ) from None
    if meta.get("format") != FORMAT:
        raise WorkdirError(
            f"{path}: format {meta.get('format')!r}, not {FORMAT!r}; export the run again with "
            f"this medjax"
        )
    return meta


def load(folder: str, calibrated: bool = False):
    """images (N, *input shape) -> probabilities (N, classes) as a numpy array; the callable
    also carries .class_names and .meta (model.json)."""
    meta = read_manifest(folder)
    name = meta["files"]["calibrated" if calibrated else "model"]
    if name is None:
        raise WorkdirError(
            f"{folder}: the run fitted no temperature, so there is no calibrated model; load it "
            f"with calibrated=False"
        )
    with open(os.path.join(folder, name), "rb") as f:
        program = jax.export.deserialize(bytearray(f.read()))
    with np.load(os.path.join(folder, meta["files"]["variables"])) as arrays:
        weights = [jax.numpy.asarray(arrays[n]) for n in meta["variables"]]
    call = jax.jit(program.call)

    def predict(images) -> np.ndarray:
        return np.asarray(call(weights, jax.numpy.asarray(images, jax.numpy.float32)))

    predict.class_names, predict.meta = meta["class_names"], meta
    return predict
