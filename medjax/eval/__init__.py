"""Evaluation metrics (scikit-learn definitions) with bootstrap confidence intervals."""

from medjax.eval.metrics import classification_metrics

__all__ = ["classification_metrics"]
