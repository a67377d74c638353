"""A fitted head inside a run's test (medjax.train.loop.test): the checkpoint validation chose
gives features of train, val and test; each run fits and selects its own head
(medjax.heads.select), saves it in its workdir, and the head's probabilities and metrics become
the run's, the network's own kept under "network_head"."""

import jax
import numpy as np

from medjax.heads import files
from medjax.heads.features import feature_step, split_features
from medjax.heads.select import fit_and_select
from medjax.train.evaluate import metrics_of_runs


def probabilities(fitted, features, num_classes: int) -> np.ndarray:
    """(N, classes) float32 of a fitted head; a class its training labels lacked gets 0 (a
    scikit-learn estimator only has columns for the classes it saw)."""
    p = np.asarray(fitted.predict_proba(features), np.float32)
    seen = getattr(fitted, "classes_", None)
    if seen is None or p.shape[1] == num_classes:
        return p
    out = np.zeros((len(p), num_classes), np.float32)
    out[:, np.asarray(seen)] = p
    return out


def fit_heads(exp, runs, state, results: list[dict]) -> dict:
    """Each run's head fitted on the features of evaluation `state` (K runs stacked or one);
    `results` (the network's "val"/"test" metrics) are updated in place. Returns the heads'
    probabilities (K, N, classes) by split, "val" and "test"."""
    step, splits = feature_step(exp), exp.data.dataset.splits
    features = {s: split_features(exp, step, state, s) for s in ("train", "val", "test")}
    labels = {s: splits[s].labels for s in features}
    num_classes = exp.data.dataset.num_classes
    probs = {s: [] for s in ("val", "test")}
    for k, (run, config, res) in enumerate(zip(runs.runs, exp.configs, results, strict=True)):
        mine = {s: f[k] for s, f in features.items()}
        fitted, params, tried = fit_and_select(config, mine, labels, num_classes)
        if jax.process_index() == 0:
            files.save(run.workdir, config.model.head, params, fitted)
        for s in probs:
            probs[s].append(probabilities(fitted, mine[s], num_classes))
        res["network_head"] = {s: res[s] for s in probs}
        res["head"] = {
            "name": config.model.head,
            "params": params,
            "features": int(mine["train"].shape[-1]),
            "selected_by": f"val_{config.train.select_metric}",
            "grid": tried,
        }
    bootstrap = exp.config.eval.bootstrap_samples
    for s in probs:
        probs[s] = np.stack(probs[s])
        metrics = metrics_of_runs(probs[s], labels[s], exp.configs, num_classes, bootstrap)
        for res, m in zip(results, metrics, strict=True):
            res[s] = m
    return probs
