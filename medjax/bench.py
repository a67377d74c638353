"""Benchmark one model's compiled train and eval steps on the current devices.

    python -m medjax.bench --model resnet18 --image-size 28 --batch-size 128 --steps 20

Prints one JSON line: train and eval images/s (steady state, after compilation), compile time,
device kind and count. Data are random, so only speed is measured. This is what performance
work is judged by; it is a benchmark, not a test.
"""

import argparse
import json
import time

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
    p.add_argument("--augment", default="", help="augmentation ops, '|'-separated")
    return p.parse_args(argv)


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
    import jax

    from medjax.configs import get_base_config
    from medjax.models import build_model
    from medjax.ops import build_augment
    from medjax.report import run_card
    from medjax.train import losses, sharding
    from medjax.train.optimizers import build_optimizer
    from medjax.train.steps import init_state, jit_steps

    config = get_base_config()
    config.model.name, config.model.dtype, config.model.conv = args.model, args.dtype, args.conv
    config.optimizer.name = args.optimizer
    mesh = sharding.make_mesh()
    sharding.check_batch_size("--batch-size", args.batch_size, mesh)
    shape = (args.image_size, args.image_size, args.channels)
    model = build_model(config.model, args.num_classes, args.image_size)
    tx, _ = build_optimizer(config.optimizer, 1000, 10)
    weights = np.ones(args.num_classes, np.float32)
    loss_fn = lambda logits, labels: losses.softmax_xent(logits, labels, weights, 0.0)
    augment = build_augment(args.augment.split("|")) if args.augment else None
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
                "image_size": args.image_size,
                "batch_size": args.batch_size,
                "dtype": args.dtype,
                "conv": args.conv,
                "parameters": int(sum(x.size for x in jax.tree.leaves(state.params))),
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
