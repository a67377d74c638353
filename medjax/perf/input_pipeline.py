"""The training input path's own rate: the index stream (Grain), the gather from the in-memory
split a cache hit holds, and the copy onto the mesh (sharding.to_global), exactly as
medjax.train.runs feeds the train step; and the trainer's loop, where that host work for the
next batch overlaps the device's step on the current one."""

import time

import jax
import numpy as np

from medjax.data import imbalance
from medjax.data.source import Split
from medjax.train import sharding


def synthetic_split(shape, num_images: int, dtype: str, num_classes: int = 2, seed: int = 0):
    """Random pixels of `dtype` (uint8: what an 8-bit cache entry holds, a quarter of float32's
    bytes) and balanced labels; the contents do not change a gather's speed."""
    rng = np.random.default_rng(seed)
    size = (num_images, *shape)
    if np.dtype(dtype) == np.uint8:
        images = rng.integers(0, 256, size, dtype=np.uint8)
    else:
        images = rng.random(size, dtype=np.float32).astype(dtype)
    labels = rng.permutation(np.arange(num_images) % num_classes).astype(np.int32)
    return Split(images, labels)


def _stream(split: Split, batch_size: int, seed: int, sampler: str):
    return iter(imbalance.index_dataset(sampler, split.labels, batch_size, seed))


def time_input(
    split: Split, batch_size: int, mesh, steps: int, warmup: int, seed=0, sampler="shuffle"
) -> dict:
    """Images/s of batches made one after another, nothing overlapped, with each part's share:
    index (the Grain stream), gather (fancy indexing into the split), transfer (to the mesh,
    blocked on)."""
    stream = _stream(split, batch_size, seed, sampler)
    batch_sharding = sharding.data_sharding(mesh)
    spent = np.zeros(3)
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        idx = next(stream)
        t1 = time.perf_counter()
        images, labels = split.images[idx], split.labels[idx]
        t2 = time.perf_counter()
        on_mesh = [sharding.to_global(a, batch_sharding) for a in (images, labels)]
        jax.block_until_ready(on_mesh)
        t3 = time.perf_counter()
        if i >= warmup:
            spent += (t1 - t0, t2 - t1, t3 - t2)
    ms = spent / steps * 1e3
    return {
        "input_images_per_s": round(steps * batch_size / spent.sum(), 1),
        "input_batch_ms": round(float(ms.sum()), 3),
        "input_index_ms": round(float(ms[0]), 3),
        "input_gather_ms": round(float(ms[1]), 3),
        "input_transfer_ms": round(float(ms[2]), 3),
        "input_mb_per_batch": round(batch_size * split.images[0].nbytes / 2**20, 2),
    }


def time_loop(
    train_step,
    state,
    split: Split,
    batch_size: int,
    mesh,
    steps: int,
    warmup: int,
    seed=0,
    sampler="shuffle",
) -> tuple[float, object]:
    """(seconds per step, the state after): the trainer's loop, where the next batch is
    indexed, gathered and sent while the device still runs the step dispatched before it.
    The step donates its state, so the caller must go on with the one returned."""
    stream = _stream(split, batch_size, seed, sampler)
    batch_sharding = sharding.data_sharding(mesh)

    def step(state):
        idx = next(stream)
        images = sharding.to_global(split.images[idx], batch_sharding)
        labels = sharding.to_global(split.labels[idx], batch_sharding)
        return train_step(state, images, labels)

    for _ in range(warmup):
        state, metrics = step(state)
    jax.block_until_ready(metrics if warmup else state)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / steps, state
