"""Benchmark one model's compiled train and eval steps, or the augmentation pipeline alone,
on the current devices.

    python -m medjax.bench --model resnet18 --image-size 28 --batch-size 128 --steps 20
    python -m medjax.bench --config experiments/breastmnist_resnet18.py   # that experiment's step
    python -m medjax.bench --augment                    # default pipeline, 28 px, 224 px, 64^3
    python -m medjax.bench --augment "elastic(p=1.0)|cutout()" --per-op

Prints one JSON line per measurement: images/s in steady state (after compilation), compile
time, device kind and count. The steps are built by medjax.train.experiment exactly as a run
of the same config builds them; only the data are random, so only speed is measured. This is what
performance work is judged by; it is a benchmark, not a test.
"""

import argparse
import json
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

from medjax.cli import at_least, main_guard
from medjax.configs import apply_overrides, get_base_config, load_config
from medjax.errors import ConfigError
from medjax.ops import build_augment
from medjax.report import run_card
from medjax.train import sharding
from medjax.train.experiment import build_experiment, synthetic_data


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
    p.add_argument("--batch-size", type=int, help="training batch (default 128)")
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


def _forward_gflops(model, state, shape) -> float | None:
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


def timed(fn, n):
    start = time.perf_counter()
    out = None
    for _ in range(n):
        out = fn()

    jax.block_until_ready(out)
    return time.perf_counter() - start


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
    if args.augment is not None:
        return bench_augment(args)
    config = bench_config(args)

    d = config.data
    shape = (d.image_size, d.image_size, d.channels)
    shape = (d.depth, *shape) if d.depth else shape
    data = synthetic_data(shape, args.num_classes, config.train.batch_size)
    # The very program a run of this config trains with: only the data are random.
    exp = build_experiment([config], data)
    row = {
        "model": config.model.name,
        "input_shape": list(shape),
        "num_classes": args.num_classes,
    }
    if args.cost_only:
        variables = jax.eval_shape(
            lambda: exp.model.init(
                jax.random.key(0), np.zeros((1, *shape), np.float32), train=False
            )
        )
        abstract = types.SimpleNamespace(
            params=variables["params"], batch_stats=variables.get("batch_stats", {})
        )
        row["parameters"] = int(sum(x.size for x in jax.tree.leaves(variables["params"])))
        row["gflops_per_image"] = _forward_gflops(exp.model, abstract, shape)
        print(json.dumps(row))
        return row
    row.update(time_steps(exp, args))
    hw = run_card.hardware()
    row.update(
        device_kind=hw["device_kind"],
        device_count=hw["device_count"],
        host_cpu=hw["host_cpu"],
        jax=run_card.software()["jax"],
    )
    print(json.dumps(row))
    return row


def time_steps(exp, args) -> dict:
    """Images/s of the compiled train and eval steps in steady state, and compile time."""

    config, data = exp.config, exp.data.train
    state = exp.init_state()
    start = time.perf_counter()
    train_step = exp.compile_train_step(state)
    batch = sharding.data_sharding(exp.mesh)
    images = sharding.to_global(data.images, batch)
    labels = sharding.to_global(data.labels, batch)
    eval_step = exp.eval_step.lower(state, images).compile()
    compile_s = time.perf_counter() - start
    gflops = _forward_gflops(exp.model, state, exp.data.dataset.image_shape)
    holder = {"state": state}

    def one_step():
        holder["state"], metrics = train_step(holder["state"], images, labels)
        return metrics

    timed(one_step, args.warmup)
    train_s = timed(one_step, args.steps)
    timed(lambda: eval_step(holder["state"], images), args.warmup)
    eval_s = timed(lambda: eval_step(holder["state"], images), args.steps)
    n = config.train.batch_size
    return {
        "batch_size": n,
        "dtype": config.model.dtype,
        "conv": config.model.conv,
        "augment": list(config.data.augment),
        "parameters": int(sum(x.size for x in jax.tree.leaves(state.params))),
        "gflops_per_image": gflops,
        "train_images_per_s": round(args.steps * n / train_s, 1),
        "eval_images_per_s": round(args.steps * n / eval_s, 1),
        "compile_s": round(compile_s, 2),
    }


if __name__ == "__main__":
    main_guard(main)
