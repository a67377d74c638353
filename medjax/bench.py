"""Benchmark one model's compiled train and eval steps, or the augmentation pipeline alone,
on the current devices.

    python -m medjax.bench --model resnet18 --image-size 28 --batch-size 128 --steps 20
    python -m medjax.bench --augment                    # default pipeline, 28 px, 224 px, 64^3
    python -m medjax.bench --augment "elastic(p=1.0)|cutout()" --per-op

Prints one JSON line per measurement: images/s in steady state (after compilation), compile
time, device kind and count. Data are random, so only speed is measured. This is what
performance work is judged by; it is a benchmark, not a test.
"""

import argparse
import json
import time
import types

import numpy as np

from medjax.cli import main_guard


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--num-classes", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after compilation")
    p.add_argument("--dtype", default="float32", help="compute dtype: float32 or bfloat16")
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--conv", default="auto", help="convolution: auto, gemm or xla (lax.conv)")
    p.add_argument("--depth", type=int, default=0, help="> 0: volumes of this depth (3D models)")
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config.model key, e.g. members=\"('cnn', 'resnet18')\" (repeatable)",
    )
    p.add_argument(
        "--train-augment", default="", help="augmentation ops in the train step, '|'-separated"
    )
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
    import jax
    import jax.numpy as jnp

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


def bench_augment(args) -> None:
    """Images/s of the vmapped, jit-compiled augmentation with per-example keys, as it runs
    inside the train step, for each shape; with --per-op, also each op alone."""
    import jax

    from medjax.ops import build_augment
    from medjax.report import run_card

    specs = DEFAULT_AUGMENT if args.augment == "default" else tuple(args.augment.split("|"))
    chains = [("pipeline", specs)] + ([(s, (s,)) for s in specs] if args.per_op else [])
    hw = run_card.hardware()
    for shape_arg in args.shapes.split(","):
        shape = tuple(int(n) for n in shape_arg.lower().split("x"))
        # Same number of pixels per call for every shape, at least one example.
        n = max(1, min(args.batch_size, args.batch_size * 28 * 28 * 16 // int(np.prod(shape))))
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
    import jax
    import jax.numpy as jnp

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
    import jax

    jax.block_until_ready(out)
    return time.perf_counter() - start


def main(argv):
    args = parse(argv)
    if args.augment is not None:
        return bench_augment(args)
    import jax

    from medjax.configs import apply_overrides, get_base_config
    from medjax.models import build_model
    from medjax.ops import build_augment
    from medjax.report import run_card
    from medjax.train import losses, sharding
    from medjax.train.optimizers import build_optimizer
    from medjax.train.steps import init_state, jit_steps

    config = get_base_config()
    config.model.name, config.model.dtype, config.model.conv = args.model, args.dtype, args.conv
    config.optimizer.name = args.optimizer
    apply_overrides(
        config, [("model." + kv.partition("=")[0], kv.partition("=")[2]) for kv in args.model_arg]
    )
    mesh = sharding.make_mesh()
    sharding.check_batch_size("--batch-size", args.batch_size, mesh)
    shape = (args.image_size, args.image_size, args.channels)
    shape = (args.depth, *shape) if args.depth else shape
    model = build_model(config.model, args.num_classes, shape[0])
    if args.cost_only:
        variables = jax.eval_shape(
            lambda: model.init(jax.random.key(0), np.zeros((1, *shape), np.float32), train=False)
        )
        abstract = types.SimpleNamespace(
            params=variables["params"], batch_stats=variables.get("batch_stats", {})
        )
        row = {
            "model": args.model,
            "input_shape": list(shape),
            "num_classes": args.num_classes,
            "parameters": int(sum(x.size for x in jax.tree.leaves(variables["params"]))),
            "gflops_per_image": _forward_gflops(model, abstract, shape),
        }
        print(json.dumps(row))
        return row
    tx, _ = build_optimizer(config.optimizer, 1000, 10)
    weights = np.ones(args.num_classes, np.float32)
    loss_fn = lambda logits, labels: losses.softmax_xent(logits, labels, weights, 0.0)
    augment = build_augment(args.train_augment.split("|")) if args.train_augment else None
    train_step, eval_step = jit_steps(model, tx, loss_fn, augment, mesh)

    rng = np.random.default_rng(0)
    batch = sharding.data_sharding(mesh)
    images = sharding.to_global(
        rng.normal(size=(args.batch_size, *shape)).astype(np.float32), batch
    )
    labels = sharding.to_global(
        rng.integers(0, args.num_classes, args.batch_size, dtype=np.int32), batch
    )
    state = jax.jit(
        lambda: init_state(model, tx, shape, 0), out_shardings=sharding.replicated(mesh)
    )()

    start = time.perf_counter()
    train_step = train_step.lower(state, images, labels).compile()
    eval_step = eval_step.lower(state, images).compile()
    compile_s = time.perf_counter() - start
    gflops = _forward_gflops(model, state, shape)

    holder = {"state": state}

    def one_step():
        holder["state"], metrics = train_step(holder["state"], images, labels)
        return metrics

    timed(one_step, args.warmup)
    train_s = timed(one_step, args.steps)
    timed(lambda: eval_step(holder["state"], images), args.warmup)
    eval_s = timed(lambda: eval_step(holder["state"], images), args.steps)
    hw = run_card.hardware()
    print(
        json.dumps(
            {
                "model": args.model,
                "input_shape": list(shape),
                "batch_size": args.batch_size,
                "dtype": args.dtype,
                "conv": args.conv,
                "parameters": int(sum(x.size for x in jax.tree.leaves(state.params))),
                "gflops_per_image": gflops,
                "train_images_per_s": round(args.steps * args.batch_size / train_s, 1),
                "eval_images_per_s": round(args.steps * args.batch_size / eval_s, 1),
                "compile_s": round(compile_s, 2),
                "device_kind": hw["device_kind"],
                "device_count": hw["device_count"],
                "host_cpu": hw["host_cpu"],
                "jax": run_card.software()["jax"],
            }
        )
    )


if __name__ == "__main__":
    main_guard(main)
