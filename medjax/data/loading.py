"""Loading a configured dataset: the source's splits, completed and limited as the config asks.

Kept apart from `medjax.data.source` (the interface every source implements), which
`medjax.data.splits` builds on: this module uses both.
"""

import numpy as np

from medjax.data import splits
from medjax.data.source import SOURCES, SPLITS, Dataset, Split
from medjax.errors import DataError


def subsample(split: Split, max_examples: int, seed: int) -> Split:
    """A seeded random subset (some files are sorted by class, so never just the first N)."""
    if not max_examples or len(split) <= max_examples:
        return split
    keep = np.sort(np.random.default_rng(seed).permutation(len(split))[:max_examples])
    groups = None if split.groups is None else split.groups[keep]
    return Split(split.images[keep], split.labels[keep], groups)


def limit(dataset: Dataset, data_config) -> Dataset:
    """`config.data.max_examples_per_split` applied to each split (seeded by its position)."""
    if data_config.max_examples_per_split:
        dataset.splits = {
            name: subsample(s, data_config.max_examples_per_split, i)
            for i, (name, s) in enumerate(dataset.splits.items())
        }
    return dataset


def load_dataset(data_config) -> Dataset:
    """Build the configured source, make the splits it lacks, then apply the size limits."""
    return complete_splits(SOURCES.get(data_config.source)(data_config), data_config)


def complete_splits(source_dataset: Dataset, data_config) -> Dataset:
    """load_dataset's work after the source: the missing splits made, the size limits applied,
    each split checked non-empty."""
    dataset = limit(splits.assign(source_dataset, data_config), data_config)
    for name in SPLITS:
        if name not in dataset.splits or len(dataset.splits[name]) == 0:
            sizes = ", ".join(f"{n} {len(s)}" for n, s in dataset.splits.items())
            raise DataError(
                f"{dataset.origin}: the {name!r} split is empty or missing (images per split: "
                f"{sizes}); use more data, or other config.data.split_fractions"
            )
    return dataset
