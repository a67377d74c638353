"""Combiners: the members' class probabilities on validation and test -> the ensemble's.

Each combiner takes val (M, N_val, C) and test (M, N_test, C) probabilities of M members, the
validation labels and a seed, and returns (val probs, test probs, notes). Validation
probabilities are what an ensemble's own validation metrics, operating point and any later
ensemble that takes it as a member are computed from, so a combiner fitted on validation must
give out-of-sample validation probabilities.
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from medjax.errors import DataError
from medjax.registry import Registry

COMBINERS = Registry("ensemble method", "config.ensemble.method")

# Hard voting: the share of the tie-breaking mean probability added to the vote fractions. Far
# below one vote (1/M), so it only orders classes with equal votes.
TIE_BREAK = 1e-6
STACKING_FOLDS = 5


@COMBINERS.register("soft")
def soft(val, test, val_labels, seed):
    """Soft voting: the mean of the members' probabilities."""
    return val.mean(0), test.mean(0), {}


def hard_vote(probs: np.ndarray) -> np.ndarray:
    """(N, C) vote fractions of the members' argmax, plus TIE_BREAK x their mean probability so
    that the argmax is the majority class and, among classes with equal votes, the one with the
    higher mean probability; rows sum to 1. Ranking metrics (AUC) thus order images by votes,
    then by mean probability within equal votes."""
    members, _, classes = probs.shape
    votes = np.eye(classes)[probs.argmax(-1)].sum(0) / members
    return (votes + TIE_BREAK * probs.mean(0)) / (1 + TIE_BREAK)


@COMBINERS.register("hard")
def hard(val, test, val_labels, seed):
    """Hard (majority) voting; the reported probabilities are the vote fractions."""
    return hard_vote(val), hard_vote(test), {"tie_break": "mean probability"}


def _stacking_model(seed: int) -> LogisticRegression:
    return LogisticRegression(max_iter=1000, random_state=seed)


def stacking_folds(val_labels, classes: int, seed: int) -> StratifiedKFold:
    """The stratified folds of validation that give stacking's out-of-sample val predictions."""
    smallest = int(np.bincount(val_labels, minlength=classes).min())
    folds = min(STACKING_FOLDS, smallest)
    if folds < 2:
        raise DataError(
            f"stacking fits its combiner on validation with {STACKING_FOLDS}-fold "
            f"cross-validation, which needs at least 2 validation images of every class (the "
            f"rarest has {smallest}); use config.ensemble.method='soft' or 'hard', or a larger "
            f"validation split"
        )
    return StratifiedKFold(folds, shuffle=True, random_state=seed)


@COMBINERS.register("stacking")
def stacking(val, test, val_labels, seed):
    """A logistic regression on the members' concatenated probabilities, fitted on all of
    validation and applied to test once; validation's own probabilities are cross-validated
    (each image predicted by a fit that never saw it), so its metrics are not in-sample."""
    features = lambda p: np.concatenate(list(p), axis=-1)  # (N, M * C)
    x_val, x_test = features(val), features(test)
    classes = val.shape[-1]
    folds = stacking_folds(val_labels, classes, seed)
    val_out = cross_val_predict(
        _stacking_model(seed), x_val, val_labels, cv=folds, method="predict_proba"
    )
    model = _stacking_model(seed).fit(x_val, val_labels)
    notes = {
        "stacking": {
            "model": "sklearn LogisticRegression(max_iter=1000), L2, C=1",
            "val_predictions": f"out-of-fold ({folds.get_n_splits()} stratified folds)",
            "coefficients": model.coef_.round(4).tolist(),
            "intercept": model.intercept_.round(4).tolist(),
        }
    }
    return val_out, model.predict_proba(x_test), notes


def combine(method: str, val, test, val_labels, seed: int = 0):
    """(val probs, test probs, notes) of the combiner named `method`."""
    fn = COMBINERS.get(method)
    val, test = np.asarray(val, np.float64), np.asarray(test, np.float64)
    return fn(val, test, np.asarray(val_labels), seed)
