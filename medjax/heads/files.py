"""A fitted head in its run's workdir: WORKDIR/head/head.pkl (the fitted object, pickled) and
head.json (its name and chosen params). Only medjax writes these files, for its own runs:
loading one runs its pickle, as loading any scikit-learn model does."""

import json
import os
import pickle

from medjax.errors import WorkdirError

FOLDER = "head"


def save(workdir: str, name: str, params: dict, fitted) -> None:
    folder = os.path.join(workdir, FOLDER)
    os.makedirs(folder, exist_ok=True)
    for file, write, mode in (
        ("head.pkl", lambda f: pickle.dump(fitted, f), "wb"),
        ("head.json", lambda f: json.dump({"name": name, "params": params}, f), "w"),
    ):
        path = os.path.join(folder, file)
        with open(path + ".tmp", mode) as f:
            write(f)
        os.replace(path + ".tmp", path)  # a kill mid-write leaves the old file or none


def load(workdir: str, name: str):
    """The fitted head `name` of the finished run in `workdir`."""
    path = os.path.join(workdir, FOLDER, "head.pkl")
    try:
        with open(path, "rb") as f:
            fitted = pickle.load(f)
        with open(os.path.join(workdir, FOLDER, "head.json")) as f:
            saved = json.load(f)["name"]
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, KeyError) as e:
        raise WorkdirError(
            f"{path} cannot be read ({type(e).__name__}) but the run's config.model.head is "
            f"{name!r}; run its training command again on the same --workdir (a finished run "
            f"re-tests its best checkpoint and refits the head)"
        ) from None
    if saved != name:
        raise WorkdirError(
            f"{path} holds a {saved!r} head but config.json says config.model.head={name!r}; "
            f"config.json was changed or comes from another run"
        )
    return fitted
