"""Benchmark one model's compiled train and eval steps, or the augmentation pipeline alone,
on the current devices.

    python -m medjax.bench --model resnet18 --image-size 28 --batch-size 128 --steps 20
    python -m medjax.bench --config experiments/breastmnist_resnet18.py   # that experiment's step
    python -m medjax.bench --augment                    # default pipeline, 28 px, 224 px, 64^3
    python -m medjax.bench --augment "elastic(p=1.0)|cutout()" --per-op
    python -m medjax.bench --model resnet50 --image-size 224 --channels 3 --dtype bfloat16 \
        --batch-size max                       # the largest batch that fits, with MFU
    python -m medjax.bench --input-pipeline --image-size 224 --channels 3 --batch-size 256

Prints one JSON line per measurement: images/s in steady state (after compilation), compile
time (compile_s: the train step; eval_compile_s: the eval step), device kind and count; for a
model, also model FLOPs utilisation (XLA's FLOP count of the compiled step over its time,
against the device's peak) and the step split into its host part (index, gather, transfer of a
batch) and its device part. The steps are built by medjax.train.experiment exactly as a run of
the same config builds them; only the data are random, so only speed is measured. This is what
performance work is judged by; it is a benchmark, not a test.
"""

import argparse
import copy
import json
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

from medjax.cli import at_least, main_guard
from medjax.configs import apply_overrides, get_base_config, load_config
from medjax.errors import ConfigError
from medjax.ops import build_augment
from medjax.perf import input_pipeline
from medjax.perf.max_batch import find_max_batch
from medjax.perf.steps import forward_gflops, predict_max_batch, prepare, time_steps, timed
from medjax.report import run_card
from medjax.train import sharding
from medjax.train.experiment import build_experiment, load_data, pipeline_fns, synthetic_data


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--config",
        help="experiments/NAME.py[:args]: time that experiment's own training program (model, "
        "optimizer, loss, augmentation, precision) on random data; the flags below override it",
    )
    p.add_argument("--model", help="model name (default resnet18)")
    p.add_argument("--image-size", type=int, help="input size after preprocessing (default 28)")
    p.add_argument("--channels", type=int, help="input channels (default 1)")
    p.add_argument("--num-classes", type=at_least(2), default=2)
    p.add_argument(
        "--batch-size",
        type=_batch_size,
        help="training batch (default 128), or max: the largest that fits, doubling from "
        "--batch-start to --batch-cap until the device runs out of memory",
    )
    p.add_argument("--batch-start", type=at_least(1), default=64, help="with --batch-size max")
    p.add_argument("--batch-cap", type=at_least(1), default=4096, help="with --batch-size max")
    p.add_argument(
        "--peak-flops",
        type=float,
        help="one device's peak FLOP/s for the compute dtype, for MFU on a device the table "
        "in medjax.perf.mfu does not know (default: the table; else mfu is null)",
    )
    p.add_argument("--skip-eval", action="store_true", help="time the train step only")
    p.add_argument(
        "--input-pipeline",
        action="store_true",
        help="time the training input path alone (index stream, gather from the in-memory "
        "cache arrays, transfer to the devices) at --image-size/--channels/--batch-size",
    )
    p.add_argument(
        "--input-dtype",
        default="uint8",
        choices=("uint8", "uint16", "float32"),
        help="with --input-pipeline: the cached pixels' dtype (default uint8)",
    )
    p.add_argument(
        "--input-images",
        type=at_least(1),
        help="with --input-pipeline: images held in memory (default 4 batches, at least 256)",
    )
    p.add_argument(
        "--step-images-per-s",
        type=float,
        help="with --input-pipeline: a train step's measured rate, to say whether the input "
        "path outpaces it",
    )
    p.add_argument("--steps", type=at_least(1), default=20)
    p.add_argument("--warmup", type=at_least(0), default=3, help="untimed steps after compiling")
    p.add_argument("--dtype", help="compute dtype: float32 (default) or bfloat16")
    p.add_argument("--optimizer", help="optimizer name (default adam)")
    p.add_argument("--conv", help="convolution: auto (default), gemm or xla (lax.conv)")
    p.add_argument("--depth", type=int, help="> 0: volumes of this depth (3D models)")
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config.model key, e.g. members=\"('cnn', 'resnet18')\" (repeatable)",
    )
    p.add_argument("--train-augment", help="augmentation ops in the train step, '|'-separated")
    p.add_argument(
        "--augment",
        nargs="?",
        const="default",
        default=None,
        help="benchmark augmentation alone: the default pipeline, or ops '|'-separated",
    )
    p.add_argument("--per-op", action="store_true", help="with --augment: each op on its own too")
    p.add_argument(
        "--cost-only",
        action="store_true",
        help="parameters and forward GFLOPs only, from shapes (no weights, no timing): seconds "
        "even for 224 px models on a CPU",
    )
    p.add_argument(
        "--shapes",
        default="28x28x1,224x224x1,64x64x64x1",
        help="with --augment: comma-separated image or volume shapes (H x W x C, D x H x W x C)",
    )
    return p.parse_args(argv)


def _batch_size(text: str):
    return "max" if text == "max" else at_least(1)(text)


# A typical on-device pipeline: geometry, intensity and noise, as the experiments use.
DEFAULT_AUGMENT = (
    "random_flip(axis='lr')",
    "random_affine(rotate=15, zoom=0.1, shift=0.08, shear=5)",
    "gamma_jitter(gamma=0.2)",
    "gaussian_noise(std=0.05)",
)


def _time_augment(fn, images, args) -> tuple[float, float]:
    """(images/s, compile seconds) of `fn` vmapped with per-example keys, as in the train step."""

    def batch(key, x):
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(x.shape[0]))
        return jax.vmap(fn)(keys, x)

    start = time.perf_counter()
    compiled = jax.jit(batch).lower(jax.random.key(0), images).compile()
    compile_s = time.perf_counter() - start
    keys = [jax.random.key(i) for i in range(args.warmup + 1)]
    jax.block_until_ready([compiled(k, images) for k in keys[:-1]])
    seconds = timed(lambda: compiled(keys[-1], images), args.steps)
    return round(args.steps * len(images) / seconds, 1), round(compile_s, 2)


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ConfigError(f"--shapes: {text!r} is not H x W x C or D x H x W x C, e.g. 28x28x1")
    return shape


def bench_augment(args) -> None:
    """Images/s of the vmapped, jit-compiled augmentation with per-example keys, as it runs
    inside the train step, for each shape; with --per-op, also each op alone."""

    specs = DEFAULT_AUGMENT if args.augment == "default" else tuple(args.augment.split("|"))
    chains = [("pipeline", specs)] + ([(s, (s,)) for s in specs] if args.per_op else [])
    hw = run_card.hardware()
    for shape_arg in args.shapes.split(","):
        shape = _shape(shape_arg)
        # Same number of pixels per call for every shape, at least one example.
        batch = args.batch_size or FLAGS["batch_size"][1]
        n = max(1, min(batch, batch * 28 * 28 * 16 // int(np.prod(shape))))
        images = jax.random.uniform(jax.random.key(0), (n, *shape))
        for name, chain in chains:
            rate, compile_s = _time_augment(build_augment(chain), images, args)
            print(
                json.dumps(
                    {
                        "augment": name,
                        "ops": list(chain),
                        "shape": list(shape),
                        "batch": n,
                        "images_per_s": rate,
                        "compile_s": compile_s,
                        "device_kind": hw["device_kind"],
                        "device_count": hw["device_count"],
                    }
                ),
                flush=True,
            )


# Flag -> config key, and what the flag means without --config.
FLAGS = {
    "model": ("model.name", "resnet18"),
    "dtype": ("model.dtype", "float32"),
    "conv": ("model.conv", "auto"),
    "optimizer": ("optimizer.name", "adam"),
    "image_size": ("data.image_size", 28),
    "channels": ("data.channels", 1),
    "depth": ("data.depth", 0),
    "batch_size": ("train.batch_size", 128),
}


def bench_config(args):
    """The experiment's config (or the base config), with the flags that were given on top."""

    config = load_config(args.config) if args.config else get_base_config()
    overrides = []
    for flag, (key, default) in FLAGS.items():
        value = getattr(args, flag)
        if value == "max":  # a placeholder until medjax.perf.max_batch finds the batch
            value = args.batch_start
        if value is None and not args.config:
            value = default
        if value is not None:
            overrides.append((key, str(value)))
    if args.train_augment is not None:
        augment = tuple(filter(None, args.train_augment.split("|")))
        overrides.append(("data.augment", repr(augment)))
    overrides += [("model." + kv.partition("=")[0], kv.partition("=")[2]) for kv in args.model_arg]
    apply_overrides(config, overrides)
    return config


def main(argv):
    args = parse(argv)
    if args.batch_size == "max" and (args.augment is not None or args.input_pipeline):
        raise ConfigError("--batch-size max is for a model's train step; give a number here")
    if args.augment is not None:
        return bench_augment(args)
    config = bench_config(args)
    d = config.data
    shape = (d.image_size, d.image_size, d.channels)
    shape = (d.depth, *shape) if d.depth else shape
    if args.input_pipeline:
        return emit(bench_input(args, config, shape))
    row = {"model": config.model.name, "input_shape": list(shape), "num_classes": args.num_classes}
    if args.cost_only:
        exp = experiment_at(config, shape, args.num_classes, config.train.batch_size)
        return emit({**row, **cost_only(exp, shape)})
    if args.batch_size == "max":
        build = lambda b: prepare(experiment_at(config, shape, args.num_classes, b))
        log = lambda m: print(m, file=sys.stderr, flush=True)
        _, ready, tried = find_max_batch(
            build, args.batch_start, args.batch_cap, predict_max_batch, log
        )
        row["batch_search"] = tried
    else:
        ready = prepare(experiment_at(config, shape, args.num_classes, config.train.batch_size))
    row.update(time_steps(ready, args))
    hw = run_card.hardware()
    row.update(
        device_kind=hw["device_kind"],
        device_count=hw["device_count"],
        host_cpu=hw["host_cpu"],
        jax=run_card.software()["jax"],
    )
    row.update(run_card.peak_memory())
    return emit(row)


def emit(row: dict) -> dict:
    print(json.dumps(row), flush=True)
    return row


def experiment_at(config, shape, num_classes: int, batch_size: int):
    """The config's training program at `batch_size`, on random data of one batch."""
    config = copy.deepcopy(config)
    config.train.batch_size = batch_size
    # The very program a run of this config trains with: only the data are random.
    return build_experiment([config], synthetic_data(shape, num_classes, batch_size))


def cost_only(exp, shape) -> dict:
    variables = jax.eval_shape(
        lambda: exp.model.init(jax.random.key(0), np.zeros((1, *shape), np.float32), train=False)
    )
    abstract = types.SimpleNamespace(
        params=variables["params"], batch_stats=variables.get("batch_stats", {})
    )
    return {
        "parameters": int(sum(x.size for x in jax.tree.leaves(variables["params"]))),
        "gflops_per_image": forward_gflops(exp.model, abstract, shape),
    }


def bench_input(args, config, shape) -> dict:
    """The input path's images/s for batches of `shape` from an in-memory split of
    --input-dtype pixels, as a cache hit holds them (or the config's own data with --config)."""
    batch = config.train.batch_size
    mesh = sharding.make_mesh()
    sharding.check_batch_size("--batch-size", batch, mesh)
    if args.config:
        split, origin = experiment_data(config), args.config
    else:
        count = args.input_images or max(4 * batch, 256)
        split, origin = input_pipeline.synthetic_split(shape, count, args.input_dtype), "synthetic"
    row = {
        "input_pipeline": origin,
        "input_shape": list(split.images.shape[1:]),
        "input_dtype": str(split.images.dtype),
        "images_in_memory": len(split),
        "batch_size": batch,
        **input_pipeline.time_input(split, batch, mesh, args.steps, args.warmup),
    }
    if args.step_images_per_s:
        row["step_images_per_s"] = args.step_images_per_s
        row["input_outpaces_step"] = bool(row["input_images_per_s"] > args.step_images_per_s)
    hw = run_card.hardware()
    return {**row, **{k: hw[k] for k in ("device_kind", "host_cpu", "host_cpu_cores")}}


def experiment_data(config):
    """The config's training split as a run holds it (read through the data cache)."""
    preprocess = pipeline_fns(config)[0]
    return load_data(config, preprocess).train


if __name__ == "__main__":
    main_guard(main)
