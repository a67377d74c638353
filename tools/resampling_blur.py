"""How much each resampling order blurs: the evidence for random_affine's default order.

    PYTHONPATH=. python tools/resampling_blur.py [--images 256] [--size 64]

Images: phantom ultrasound, MRI and X-ray images, and, with MEDJAX_DATA_DIR set, real
BreastMNIST and PneumoniaMNIST test images (28 px). Each goes through random_affine at orders
0, 1 and 3, (a) nearly the identity (rotation within 1 degree, shift within 1 pixel: the
ideal output has the input's spectrum) and (b) a typical recipe (rotate=10, zoom=0.1,
shift=0.05). Printed per image set and order: the fine-detail power kept (the power above a
quarter of the sampling rate, |f| > 0.25 cycles/pixel, in the central half of the image, out
over in, averaged over images), the continuous Gaussian blur (sigma in pixels) that would keep as much (0 where resampling keeps it all), and
the augmentation's images/s on this machine (jit, vmap over the batch).
"""

import argparse
import json
import os
import time

import jax
import numpy as np

from medjax.data.phantom import generate
from medjax.ops import build_augment

FINE = 0.25  # cycles/pixel: the upper half of what a pixel grid holds
TRANSFORMS = {
    "near_identity": "random_affine(rotate=1, shift={px}, order={order}, p=1.0)",
    "recipe": "random_affine(rotate=10, zoom=0.1, shift=0.05, order={order}, p=1.0)",
}


def spectra(images: np.ndarray):
    """(power, |f| in cycles/pixel) of each image's central half, Hann-windowed."""
    n = images.shape[1]
    crop = images[:, n // 4 : n - n // 4, n // 4 : n - n // 4, 0]
    crop = crop - crop.mean((1, 2), keepdims=True)
    window = np.outer(np.hanning(crop.shape[1]), np.hanning(crop.shape[2]))
    f = np.fft.fftfreq(crop.shape[1])
    return np.abs(np.fft.fft2(crop * window)) ** 2, np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)


def kept(out: np.ndarray, images: np.ndarray) -> float:
    """Mean over images of the fine-detail power out over in."""
    (p_out, radius), (p_in, _) = spectra(out), spectra(images)
    fine = radius > FINE
    return float(np.mean(p_out[:, fine].sum(1) / p_in[:, fine].sum(1)))


def equivalent_sigma(images: np.ndarray, ratio: float) -> float:
    """The continuous Gaussian blur (sigma in pixels) that keeps `ratio` of the fine-detail
    power: its power transfer is exp(-4 pi^2 sigma^2 |f|^2) (bisection)."""
    power, radius = spectra(images)
    fine = radius > FINE
    lo, hi = 0.0, 3.0
    for _ in range(40):
        mid = (lo + hi) / 2
        gain = np.exp(-4 * np.pi**2 * mid**2 * radius[fine] ** 2)
        blurred = np.mean((power[:, fine] * gain).sum(1) / power[:, fine].sum(1))
        lo, hi = (mid, hi) if blurred > ratio else (lo, mid)
    return (lo + hi) / 2


def image_sets(n: int, size: int) -> dict:
    sets = {
        f"phantom {m} {size} px": generate(n, size, 4, m, 1, seed=5)[0]
        for m in ("ultrasound", "mri", "xray")
    }
    data_dir = os.environ.get("MEDJAX_DATA_DIR")
    for name in ("breastmnist", "pneumoniamnist") if data_dir else ():
        with np.load(os.path.join(data_dir, f"{name}.npz")) as f:
            sets[f"{name} test 28 px"] = f["test_images"][:n, ..., None]
    return {k: (v.astype(np.float32) / 255.0) for k, v in sets.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    for name, images in image_sets(args.images, args.size).items():
        keys = jax.random.split(jax.random.key(0), len(images))
        for transform, spec in TRANSFORMS.items():
            for order in (0, 1, 3):
                op = build_augment([spec.format(order=order, px=1 / images.shape[1])])
                fn = jax.jit(jax.vmap(op))
                out = np.asarray(fn(keys, images))
                start = time.perf_counter()
                jax.block_until_ready(fn(keys, images))
                rate = len(images) / (time.perf_counter() - start)
                ratio = kept(out, images)
                row = {
                    "images": name,
                    "transform": transform,
                    "order": order,
                    "fine_power_kept": round(ratio, 3),
                    "gaussian_sigma_px": round(equivalent_sigma(images, ratio), 2),
                    "images_per_s": round(rate),
                }
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
