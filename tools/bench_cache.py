"""Time loading + preprocessing a folder of PNGs without the data cache, and from it (README).

    python tools/bench_cache.py --root /tmp/png_bench [--images 3000] [--px 512] [--size 224]

Writes `--images` phantom X-ray PNGs of `--px` pixels into `root/<class>/` once (seeded), then
runs three fresh processes on the same config (source image_folder, decoded to `--size`, the
default preprocessing): a cold run that fills an empty cache, then two runs that hit it. Each
reports the seconds spent in `medjax.data.cache.load_or_build` (key + decode + preprocess +
write, or key + read), not Python and JAX start-up. The PNGs are in the page cache by then, so
the cold time is decoding, not disk reads.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image

CHUNK = 50


def write_pngs(root: str, n: int, px: int) -> None:
    from medjax.data.phantom import generate  # noqa: PLC0415

    names = ("normal", "lesion")
    if all(os.path.isdir(os.path.join(root, c)) for c in names):
        have = sum(len(os.listdir(os.path.join(root, c))) for c in names)
        if have == n:
            return
    shutil.rmtree(root, ignore_errors=True)
    for c in names:
        os.makedirs(os.path.join(root, c))
    for start in range(0, n, CHUNK):
        images, labels = generate(min(CHUNK, n - start), px, 2, "xray", 1, seed=start)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            path = os.path.join(root, names[label], f"{start + i:05d}.png")
            Image.fromarray(image[..., 0]).save(path)


def one_run(root: str, size: int, cache_dir: str) -> dict:
    from medjax.configs import get_base_config  # noqa: PLC0415
    from medjax.data import cache, load_dataset  # noqa: PLC0415
    from medjax.data.pipeline import preprocess_dataset  # noqa: PLC0415
    from medjax.ops import build_preprocess  # noqa: PLC0415

    c = get_base_config()
    c.data.source, c.data.name, c.data.path = "image_folder", "png_bench", root
    c.data.image_size, c.data.cache_dir = size, cache_dir

    def build():
        raw = load_dataset(c.data)
        dataset, stats = preprocess_dataset(raw, build_preprocess(c.data.preprocess))
        return dataset, raw.summary(), stats

    t = time.perf_counter()
    dataset, _, _ = cache.load_or_build(c.data, build)
    seconds = time.perf_counter() - t
    return {
        "seconds": round(seconds, 2),
        "images": sum(len(s) for s in dataset.splits.values()),
        "cache_mb": round(
            sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(cache_dir) for f in fs)
            / 2**20
        ),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", required=True, help="folder for the PNGs (created once)")
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--px", type=int, default=512, help="PNG side in pixels")
    p.add_argument("--size", type=int, default=224, help="config.data.image_size")
    p.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    cache_dir = args.root.rstrip("/") + "_cache"
    if args.run:
        print(json.dumps(one_run(args.root, args.size, cache_dir)))
        return
    write_pngs(args.root, args.images, args.px)
    shutil.rmtree(cache_dir, ignore_errors=True)
    cmd = [sys.executable, __file__, "--root", args.root, "--size", str(args.size), "--run"]
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    runs = []
    for label in ("cold (fills the cache)", "cached", "cached"):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{label}: {runs[-1]}", flush=True)
    hit = min(r["seconds"] for r in runs[1:])
    print(f"speed-up: {runs[0]['seconds'] / hit:.0f}x ({runs[0]['seconds']} s -> {hit} s)")
    print(f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    np.testing.assert_equal(runs[0]["images"], runs[1]["images"])


if __name__ == "__main__":
    main()
