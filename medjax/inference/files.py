"""The files a finished run keeps for inference: the variables its test evaluated.

Those are the best checkpoint's weights as tested, with the EMA weights when kept and precise
batch-norm statistics when recomputed, so predicting, explaining and exporting need neither the
training data nor the optimizer state. Flax's msgpack format: plain nested dicts of arrays.
"""

import os

import jax
import numpy as np
from flax import serialization

from medjax.errors import WorkdirError

FOLDER = "inference"
VARIABLES = os.path.join(FOLDER, "variables.msgpack")


def save_variables(workdir: str, variables) -> None:
    path = os.path.join(workdir, VARIABLES)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = serialization.msgpack_serialize(jax.tree.map(np.asarray, jax.device_get(variables)))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # a kill mid-write leaves the old file or none, never half of one


def read_variables(workdir: str) -> dict:
    path = os.path.join(workdir, VARIABLES)
    try:
        with open(path, "rb") as f:
            return serialization.msgpack_restore(f.read())
    except (ValueError, TypeError) as e:  # msgpack's errors for a damaged file
        raise WorkdirError(
            f"{path} is damaged ({type(e).__name__}); run the training command again on the "
            f"same --workdir: a finished run re-tests its best checkpoint and rewrites it"
        ) from None


def has_variables(workdir: str) -> bool:
    return os.path.exists(os.path.join(workdir, VARIABLES))
