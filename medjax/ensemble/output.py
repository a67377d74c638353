"""The one way to combine finished runs: `combine_workdirs` (the CLI `python -m medjax.ensemble`
and an ensemble config's `python -m medjax.run` both end here).

It writes, in the ensemble's workdir: results.json (val and test metrics with bootstrap
intervals, computed as a run's are, and each member's test metrics beside them), run_card.json,
predictions/val.npz and test.npz, and ensemble.json (method, members, and the classes and data
settings they share), which make the ensemble itself a member of a later ensemble.
"""

import os
import time

import numpy as np

from medjax.ensemble.combine import combine
from medjax.ensemble.members import RECORD, check_compatible, load_member
from medjax.eval import classification_metrics
from medjax.train import predictions
from medjax.train import workdir as wd

# A member's test metrics worth reading beside the ensemble's (the full record is its own
# results.json).
MEMBER_METRICS = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1")


def _save_predictions(workdir: str, split: str, probs, labels) -> None:
    target = predictions.path(workdir, split)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = target + ".tmp.npz"
    np.savez(tmp, probs=np.asarray(probs, np.float32), labels=np.asarray(labels, np.int32))
    os.replace(tmp, target)


def combine_workdirs(
    workdirs, method: str, workdir: str, bootstrap: int = 1000, seed: int = 0, ece_bins: int = 15
) -> dict:
    """Combine the finished runs in `workdirs` by `method` (medjax.ensemble.COMBINERS) into
    `workdir`; returns the results dict written to its results.json. Bootstrap intervals use
    `bootstrap` resamples drawn with `seed` (also stacking's folds and fit)."""
    clock = time.perf_counter()
    members = [load_member(w) for w in workdirs]
    check_compatible(members)
    first = members[0]
    labels = first.labels
    val, test, notes = combine(
        method,
        np.stack([m.probs["val"] for m in members]),
        np.stack([m.probs["test"] for m in members]),
        labels["val"],
        seed,
    )
    classes, positive = len(first.class_names), first.data["eval.positive_class"]
    results = {"method": method, **notes}
    for split, probs in (("val", val), ("test", test)):
        results[split] = classification_metrics(
            labels[split], probs, classes, positive, bootstrap=bootstrap, seed=seed,
            ece_bins=ece_bins,
        )  # fmt: skip
    results["members"] = [
        {"workdir": os.path.abspath(m.workdir)}
        | {f"test_{k}": m.test_metrics.get(k) for k in MEMBER_METRICS}
        for m in members
    ]
    wd.make(workdir)
    with wd.Lock(workdir):
        _save_predictions(workdir, "val", val, labels["val"])
        _save_predictions(workdir, "test", test, labels["test"])
        record = {
            "method": method,
            "members": [os.path.abspath(m.workdir) for m in members],
            "class_names": first.class_names,
            "data": first.data,
        }
        wd.write_json(os.path.join(workdir, RECORD), record)
        wd.write_json(os.path.join(workdir, "results.json"), results)
        wd.write_json(os.path.join(workdir, "run_card.json"), _card(members, method, seed, clock))
    return results


def _card(members, method: str, seed: int, clock: float) -> dict:
    from medjax.report import run_card

    return {
        "kind": "output-level ensemble",
        "method": method,
        "members": len(members),
        "seed": seed,
        "class_names": members[0].class_names,
        "images": {split: len(members[0].labels[split]) for split in ("val", "test")},
        "software": run_card.software(),
        "timings": {"combine_s": round(time.perf_counter() - clock, 2)},
    }
