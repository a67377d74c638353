"""Time every convolution of ResNet-18 at 28 px, pass by pass (forward, input gradient, weight
gradient), in XLA's form and in medjax's GEMM form: where a train step's convolution time goes.

    python tools/conv_layers.py [--batch 128] [--dtype float32] [--layers s1,s2a] [--reps 6]

Prints one JSON line per layer shape: for each pass and form "wall/cpu" milliseconds, each the
best of --reps runs. On a machine with other load, compare CPU times (the process's own),
which the load disturbs far less than wall times. `count` is how often ResNet-18 has it.
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp

from medjax.models import conv as C

# (name, input size, cin, cout, kernel, stride, count in ResNet-18 with the MedMNIST stem)
LAYERS = [
    ("stem", 28, 1, 64, 3, 1, 1),
    ("s1", 28, 64, 64, 3, 1, 4),
    ("s2a", 28, 64, 128, 3, 2, 1),
    ("s2p", 28, 64, 128, 1, 2, 1),
    ("s2", 14, 128, 128, 3, 1, 3),
    ("s3a", 14, 128, 256, 3, 2, 1),
    ("s3p", 14, 128, 256, 1, 2, 1),
    ("s3", 7, 256, 256, 3, 1, 3),
    ("s4a", 7, 256, 512, 3, 2, 1),
    ("s4p", 7, 256, 512, 1, 2, 1),
    ("s4", 4, 512, 512, 3, 1, 3),
]


def best(fn, args, reps):
    jax.block_until_ready(fn(*args))
    wall = cpu = float("inf")
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return f"{wall * 1e3:.1f}/{cpu * 1e3:.1f}"


def passes(k, s, dt):
    p = k // 2

    def xla(x, w):
        return C._xla(x, w, s, p, dt)

    return {
        "xla_fwd": xla,
        "xla_dx": lambda x, w, g: jax.vjp(lambda a: xla(a, w), x)[1](g)[0],
        "xla_dw": lambda x, w, g: jax.vjp(lambda b: xla(x, b), w)[1](g)[0],
        "gemm_fwd": lambda x, w: C._gemm_fwd(x, w, s, p, dt),
        "gemm_dx": lambda x, w, g: C._gemm_dx(g, w, x.shape, s, p, dt),
        "gemm_dw": lambda x, w, g: C._gemm_dw(x, g, k, s, p, dt),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--layers", default="", help="comma-separated names; default: all")
    ap.add_argument("--reps", type=int, default=6)
    a = ap.parse_args()
    wanted = set(a.layers.split(",")) if a.layers else {row[0] for row in LAYERS}
    for name, h, cin, cout, k, s, count in LAYERS:
        if name not in wanted:
            continue
        kx, kw, kg = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(kx, (a.batch, h, h, cin))
        w = jax.random.normal(kw, (k, k, cin, cout)) * 0.05
        ho = C._out_size(h, k, s, k // 2)
        g = jax.random.normal(kg, (a.batch, ho, ho, cout))
        row = {"layer": name, "count": count, "gflop": round(2 * g.size * cin * k * k / 1e9, 2)}
        for what, fn in passes(k, s, jnp.dtype(a.dtype)).items():
            args = (x, w) if what.endswith("fwd") else (x, w, g)
            row[what] = best(jax.jit(fn), args, a.reps)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
