"""Fit a head on training features at each point of its grid and keep the one the run's
validation metric (config.train.select_metric, select_mode) prefers."""

import math

import numpy as np

from medjax.eval import classification_metrics
from medjax.heads.registry import HEADS


def val_score(config, labels, probs, num_classes: int) -> float:
    """The selection metric of `probs`, oriented so that larger is better (NaN: worst)."""
    m = classification_metrics(
        labels, probs, num_classes, config.eval.positive_class, bootstrap=0, seed=config.seed
    )[config.train.select_metric]
    if m is None or not math.isfinite(m):
        return -math.inf
    return m if config.train.select_mode == "max" else -m


def fit_and_select(config, features: dict, labels: dict, num_classes: int):
    """(fitted head, its params, the grid with each point's validation metric): each grid point
    fitted on features["train"], scored on features["val"]; ties go to the earlier point."""
    head = HEADS.get(config.model.head)
    best, tried = None, []
    for params in head.grid:
        fitted = head.fit(features["train"], labels["train"], num_classes, config.seed, **params)
        probs = np.asarray(fitted.predict_proba(features["val"]), np.float32)
        score = val_score(config, labels["val"], probs, num_classes)
        sign = 1 if config.train.select_mode == "max" else -1
        tried.append({"params": params, f"val_{config.train.select_metric}": sign * score})
        if best is None or score > best[0]:
            best = (score, fitted, params)
    return best[1], best[2], tried
