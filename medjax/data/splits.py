"""Train/val/test splits for data without official ones, and k-fold cross-validation.

(Placeholder: passes official splits through; stratified, patient-grouped and k-fold splits
are being written.)
"""

from medjax.data.source import SPLITS, Dataset
from medjax.errors import DataError


def assign(dataset: Dataset, cfg) -> Dataset:
    if set(dataset.splits) == set(SPLITS):
        return dataset
    raise DataError(f"{dataset.origin}: has splits {sorted(dataset.splits)}; need {SPLITS}")
