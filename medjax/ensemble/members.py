"""The finished runs an output-level ensemble combines: their saved predictions, and the checks
that they predicted the same images of the same classes, prepared the same way.

A member is a workdir: a finished `medjax.run` (config.json, data_summary.json,
predictions/val.npz and test.npz) or an earlier ensemble's output (ensemble.json, predictions/),
so ensembles nest.
"""

import json
import os
from dataclasses import dataclass

import numpy as np

from medjax.errors import WorkdirError
from medjax.train import predictions

RECORD = "ensemble.json"  # an ensemble's own record; makes its workdir a member like a run's
# Data keys that change how a member trains, not which images it sees or how they are
# prepared: members may differ in them.
TRAINING_ONLY_KEYS = ("augment", "mix", "sampler", "oversample", "cache", "cache_dir", "on_error")


@dataclass
class Member:
    workdir: str
    class_names: list
    data: dict  # "data.KEY" (but TRAINING_ONLY_KEYS) and "eval.positive_class" -> value
    probs: dict  # split -> (N, classes) float
    labels: dict  # split -> (N,) int
    test_metrics: dict  # results.json "test" of a run, or an ensemble's


def _read_json(path: str, fix: str) -> dict:
    if not os.path.exists(path):
        raise WorkdirError(f"{path} is missing: {fix}")
    with open(path) as f:
        return json.load(f)


def _identity(workdir: str) -> tuple[list, dict]:
    """(class names, the data settings members must share) of a run or an ensemble."""
    record = os.path.join(workdir, RECORD)
    if os.path.exists(record):
        with open(record) as f:
            rec = json.load(f)
        return rec["class_names"], rec["data"]
    fix = "is it the workdir of a finished medjax run?"
    config = _read_json(os.path.join(workdir, "config.json"), fix)
    summary = _read_json(os.path.join(workdir, "data_summary.json"), fix)
    data = {f"data.{k}": v for k, v in config["data"].items() if k not in TRAINING_ONLY_KEYS}
    data["eval.positive_class"] = config["eval"]["positive_class"]
    return summary["class_names"], data


def load_member(workdir: str) -> Member:
    """A finished run's (or ensemble's) predictions and identity; a clear error for a run that
    is unfinished or predates test predictions."""
    if not os.path.isdir(workdir):
        raise WorkdirError(f"ensemble member {workdir} is not a folder; pass finished workdirs")
    results = _read_json(
        os.path.join(workdir, "results.json"),
        "the run has not finished; run its training command again on that --workdir (it "
        "resumes), then combine",
    )
    class_names, data = _identity(workdir)
    probs, labels = {}, {}
    for split in ("val", "test"):
        probs[split], labels[split] = predictions.load_split(workdir, split)
    if labels["test"].ndim != 1:
        raise WorkdirError(
            f"ensemble member {workdir} is a multi-label run (several findings per image); "
            f"output-level ensembles combine single-label runs only"
        )
    test = results.get("test", results)
    return Member(workdir, class_names, data, probs, labels, test)


def _first_difference(a: dict, b: dict) -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"{key}: {a.get(key)!r} vs {b.get(key)!r}"
    return ""


def check_compatible(members: list[Member]) -> None:
    """Every member predicted the same val and test images (same labels in the same order) of
    the same classes, with the same data settings; otherwise one error naming two members and
    how they differ."""
    if len(members) < 2:
        raise WorkdirError(f"an ensemble needs at least 2 members, got {len(members)}")
    first = members[0]
    for other in members[1:]:
        pair = f"ensemble members {first.workdir} and {other.workdir}"
        if other.class_names != first.class_names:
            raise WorkdirError(
                f"{pair} were trained on different classes ({first.class_names} vs "
                f"{other.class_names}); combine runs of the same dataset"
            )
        diff = _first_difference(first.data, other.data)
        if diff:
            raise WorkdirError(
                f"{pair} differ in their data or preprocessing ({diff}); combine runs "
                f"that saw the same images prepared the same way"
            )
        for split in ("val", "test"):
            a, b = first.labels[split], other.labels[split]
            if a.shape != b.shape or not np.array_equal(a, b):
                what = f"{len(a)} vs {len(b)} images" if a.shape != b.shape else "labels differ"
                raise WorkdirError(
                    f"{pair} predicted different {split} sets ({what}); combine runs of the "
                    f"same splits"
                )
