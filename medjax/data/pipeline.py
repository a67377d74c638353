"""Grain index pipelines over in-memory splits, and host-side preprocessing.

Small medical datasets fit in host memory after preprocessing, so the pipelines move indices,
not images: a seeded, per-epoch reshuffled index stream for training whose position is a
checkpointable iterator state, and padded, masked batches for evaluation so that every
evaluation image counts exactly once.
"""

import dataclasses
from collections.abc import Iterator

import grain
import jax
import numpy as np
from tqdm.auto import tqdm

from medjax.data.preprocess_check import check_preprocessed
from medjax.data.source import Dataset, Split


def preprocess_split(split: Split, fn, chunk: int = 1024, desc: str = "") -> Split:
    """Apply a jit-compiled, vmapped preprocessing function to a whole split, chunk by chunk."""
    batched = jax.jit(jax.vmap(fn))
    cpu = jax.devices("cpu")[0]
    out = []
    for start in tqdm(
        range(0, len(split), chunk), desc=desc, leave=False, disable=len(split) < 8 * chunk
    ):
        block = jax.device_put(split.images[start : start + chunk], cpu)
        out.append(np.asarray(batched(block)))
    return Split(np.concatenate(out).astype(np.float32), split.labels, split.groups)


def preprocess_dataset(
    dataset: Dataset, preprocess, range_check: str = "raise"
) -> tuple[Dataset, dict]:
    """Every split through `preprocess` (a `medjax.ops.Preprocess`), with dataset-fitted ops
    fitted on the training split only; returns the dataset and the fitted statistics.

    The result is checked (`medjax.data.preprocess_check`): NaN or inf always fails, values
    far outside the range the ops promise fail, warn or pass as `range_check`
    (config.data.range_check) says."""
    fn, stats = preprocess.fit(dataset.splits["train"].images)
    splits = {
        name: preprocess_split(s, fn, desc=f"preprocess {name}")
        for name, s in dataset.splits.items()
    }
    done = dataclasses.replace(dataset, splits=splits)
    check_preprocessed(dataset, done, preprocess.specs, range_check)
    return done, stats


def train_index_dataset(num_examples: int, batch_size: int, seed: int) -> grain.IterDataset:
    """Endless batches of example indices, reshuffled every epoch from `seed`."""
    return (
        grain.MapDataset.range(num_examples)
        .shuffle(seed=seed)
        .repeat()
        .batch(batch_size, drop_remainder=True)
        .to_iter_dataset()
    )


def eval_batches(
    split: Split, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(images, labels, mask) batches of exactly `batch_size`; the last is zero-padded, mask 0."""
    for idx in grain.MapDataset.range(len(split)).batch(batch_size):
        n = len(idx)
        images, labels = split.images[idx], split.labels[idx]
        mask = np.ones(batch_size, bool)
        if n < batch_size:
            pad = batch_size - n
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
            labels = np.concatenate([labels, np.zeros((pad, *labels.shape[1:]), labels.dtype)])
            mask[n:] = False
        yield images, labels, mask
