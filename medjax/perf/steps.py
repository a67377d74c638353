"""A model's compiled train step timed as medjax.bench reports it: steady-state images/s, its
device and host parts, the trainer's loop, XLA's FLOP count and the utilisation it gives."""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from medjax.data.source import Split
from medjax.perf import input_pipeline, mfu
from medjax.perf.max_batch import predict_from_memory
from medjax.train import sharding


def timed(fn, n):
    start = time.perf_counter()
    out = None
    for _ in range(n):
        out = fn()

    jax.block_until_ready(out)
    return time.perf_counter() - start


def forward_gflops(model, state, shape) -> float | None:
    """XLA's count of one image's forward-pass floating-point operations (multiply and add
    counted separately, as papers' "FLOPs" = 2 x MACs), at float32 with XLA convolutions so
    that the count is the model's, not the implementation's."""

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    plain = (
        model.clone(dtype=jnp.float32, conv_impl="xla") if hasattr(model, "conv_impl") else model
    )
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    fn = jax.jit(lambda v, x: plain.apply(v, x, train=False))
    try:
        cost = fn.lower(variables, x).cost_analysis()
    except Exception:  # some backends cannot analyse cost; the rest of the line still stands
        return None
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    flops = (cost or {}).get("flops")
    return round(flops / 1e9, 3) if flops else None


@dataclasses.dataclass
class Ready:
    """A train step compiled and run once (so its memory was allocated), with its inputs."""

    exp: object
    train_step: object
    state: object
    images: object
    labels: object
    compile_s: float


def prepare(exp) -> Ready:
    """Compile the train step and run it once: an out-of-memory error surfaces here, at
    compilation or at the first allocation, before anything is timed."""
    state = exp.init_state()
    start = time.perf_counter()
    train_step = exp.compile_train_step(state)
    compile_s = time.perf_counter() - start
    batch = sharding.data_sharding(exp.mesh)
    data = exp.data.train
    images, labels = (sharding.to_global(a, batch) for a in (data.images, data.labels))
    state, metrics = train_step(state, images, labels)
    jax.block_until_ready(metrics)
    return Ready(exp, train_step, state, images, labels, compile_s)


def predict_max_batch(batch: int, ready: Ready) -> int | None:
    """The largest batch the compiled step's memory at `batch` says would fit on the device
    (medjax.perf.max_batch.predict_from_memory), or None where jax reports no limit."""
    stats = jax.local_devices()[0].memory_stats() or {}
    try:
        m = ready.train_step.memory_analysis()
        used = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
        used -= m.alias_size_in_bytes  # the donated state is written in place
    except Exception:  # no analysis on this backend: plain doubling
        return None
    fixed = sum(x.nbytes for x in jax.tree.leaves(ready.state))
    return predict_from_memory(stats.get("bytes_limit"), fixed, used, batch)


def time_steps(ready: Ready, args) -> dict:
    """Images/s of the compiled train step (and eval step) in steady state; the step split into
    its device part (the batch already on the devices) and its host part (the input path of
    medjax.perf.input_pipeline); and the trainer's loop, where the two overlap."""
    exp, config = ready.exp, ready.exp.config
    n = config.train.batch_size
    holder = {"state": ready.state}

    def one_step():
        holder["state"], metrics = ready.train_step(holder["state"], ready.images, ready.labels)
        return metrics

    timed(one_step, args.warmup)
    train_s = timed(one_step, args.steps) / args.steps
    held = held_split(exp.data.train)
    loop_s, holder["state"] = input_pipeline.time_loop(
        ready.train_step, holder["state"], held, n, exp.mesh, args.steps, args.warmup
    )
    host = input_pipeline.time_input(held, n, exp.mesh, args.steps, args.warmup)
    row = {
        "batch_size": n,
        "dtype": config.model.dtype,
        "conv": config.model.conv,
        "augment": list(config.data.augment),
        "parameters": int(sum(x.size for x in jax.tree.leaves(ready.state.params))),
        "gflops_per_image": forward_gflops(exp.model, ready.state, exp.data.dataset.image_shape),
        "train_images_per_s": round(n / train_s, 1),
        "train_step_ms": round(train_s * 1e3, 3),
        "train_loop_images_per_s": round(n / loop_s, 1),
        "loop_step_ms": round(loop_s * 1e3, 3),
        **host,
        "images_in_memory": len(held),
        "input_outpaces_step": bool(host["input_batch_ms"] < train_s * 1e3),
        **utilisation_fields(
            mfu.compiled_flops(ready.train_step), train_s, config.model.dtype, args.peak_flops
        ),
        "compile_s": round(ready.compile_s, 2),
    }
    if not args.skip_eval:
        start = time.perf_counter()
        eval_step = exp.eval_step.lower(holder["state"], ready.images).compile()
        row["eval_compile_s"] = round(time.perf_counter() - start, 2)
        timed(lambda: eval_step(holder["state"], ready.images), args.warmup)
        eval_s = timed(lambda: eval_step(holder["state"], ready.images), args.steps)
        row["eval_images_per_s"] = round(args.steps * n / eval_s, 1)
    return row


def held_split(batch: Split, copies: int = 4, most_bytes: int = 4 << 30) -> Split:
    """A training split of several batches (the one batch repeated): with only one, every
    batch would start an epoch, whose reshuffle is not what a step usually waits for."""
    copies = max(1, min(copies, most_bytes // max(batch.images.nbytes, 1)))
    return Split(np.concatenate([batch.images] * copies), np.concatenate([batch.labels] * copies))


def _significant(value, digits=4):
    return None if value is None else float(f"{value:.{digits}g}")


def utilisation_fields(flops, seconds: float, dtype: str, peak_override) -> dict:
    """One device's GFLOPs per step (XLA's count), its achieved TFLOP/s and their fraction of
    the device's peak (null where the peak is not known: pass --peak-flops)."""
    peak = mfu.peak_flops(jax.devices()[0].device_kind, dtype, peak_override)
    return {
        "step_gflops": _significant(flops and flops / 1e9),
        "step_tflops_per_s": _significant(flops and flops / seconds / 1e12),
        "peak_tflops": peak and round(peak / 1e12, 1),
        "mfu": _significant(mfu.utilisation(flops, seconds, peak), 3),
    }
