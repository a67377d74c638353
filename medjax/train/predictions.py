"""Each run's predictions on disk: WORKDIR/predictions/val.npz and test.npz (probs (N, classes)
float32, labels (N,) int32), in the split's order.

With k-fold cross-validation (config.data.num_folds > 1) the validation split is the held-out
fold, so a sweep over the folds pools these files into out-of-fold predictions
(medjax.sweep.folds).
"""

import os

import jax
import numpy as np

from medjax.errors import WorkdirError

FOLDER = "predictions"


def path(workdir: str, split: str) -> str:
    return os.path.join(workdir, FOLDER, f"{split}.npz")


def save_split(runs, split: str, probs, labels) -> None:
    """probs (K, N, classes) of the K runs of a RunGroup and the split's labels (N,)."""
    if jax.process_index() != 0:
        return
    for run, p in zip(runs.runs, np.asarray(probs), strict=True):
        target = path(run.workdir, split)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = target + ".tmp.npz"
        np.savez(tmp, probs=p.astype(np.float32), labels=np.asarray(labels, np.int32))
        os.replace(tmp, target)  # a kill mid-write leaves the old file or none


def load_split(workdir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(probs, labels) a finished run saved for `split`."""
    target = path(workdir, split)
    if not os.path.exists(target):
        raise WorkdirError(
            f"{target} is missing: the run finished before medjax saved predictions; run its "
            f"training command again on the same --workdir (it re-tests its best checkpoint)"
        )
    with np.load(target, allow_pickle=False) as f:
        return f["probs"], f["labels"]
