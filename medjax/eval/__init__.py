"""Evaluation metrics (scikit-learn definitions) with bootstrap confidence intervals."""

from medjax.eval.metrics import classification_metrics, paired_difference_ci

__all__ = ["classification_metrics", "paired_difference_ci"]
