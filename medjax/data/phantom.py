"""A procedurally generated dataset, so that medjax runs end to end with no download.

Each image is a smooth "organ" on a dark background. Class 0 has no lesion; class k >= 1 has a
lesion of kind k (1: bright solid, 2: dark solid, 3: bright ring, then alternating contrasts
with growing elongation) at a random place, size and contrast. Noise follows the imaging
physics of the chosen modality: Poisson photon noise for X-ray, multiplicative Gamma speckle
for ultrasound, Rician magnitude noise for MRI. Lesions are faint against the noise, so a model
has to learn them; nothing about the label leaks through the image statistics.
"""

import numpy as np

from medjax.data.source import SOURCES, Dataset, Split
from medjax.errors import ConfigError

MODALITIES = ("xray", "ultrasound", "mri")


def _noise(clean: np.ndarray, modality: str, rng: np.random.Generator, level=1.0) -> np.ndarray:
    """`level` scales the noise's standard deviation (1: the default physics)."""
    if modality == "xray":  # photon counting: variance proportional to intensity
        photons = 80.0 / level**2
        return rng.poisson(clean * photons) / photons
    if modality == "ultrasound":  # fully developed speckle: multiplicative Gamma, 4 looks
        looks = 4.0 / level**2
        return clean * rng.gamma(looks, 1.0 / looks, clean.shape)
    # MRI magnitude images: complex Gaussian noise, then the modulus (Rician)
    sigma = 0.07 * level
    real = clean + rng.normal(0, sigma, clean.shape)
    imag = rng.normal(0, sigma, clean.shape)
    return np.sqrt(real**2 + imag**2)


def generate(n, size, num_classes, modality, channels, seed, noise=1.0):
    """(images uint8 (n, size, size, channels), labels int32 (n,)), fully determined by seed;
    `noise` scales the noise (harder data at > 1)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")

    def field(cy, cx, ry, rx, angle):
        c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
        dy, dx = yy[None] - cy[:, None, None], xx[None] - cx[:, None, None]
        u, v = c * dx + s * dy, -s * dx + c * dy
        return (u / rx[:, None, None]) ** 2 + (v / ry[:, None, None]) ** 2

    def uniform(lo, hi):
        return rng.uniform(lo, hi, n)

    organ = field(
        uniform(-0.1, 0.1),
        uniform(-0.1, 0.1),
        uniform(0.6, 0.85),
        uniform(0.6, 0.85),
        uniform(0, np.pi),
    )
    image = 0.08 + 0.42 / (1 + np.exp(np.minimum((organ - 1) * 12, 50)))  # soft-edged organ
    for _ in range(3):  # internal structure: faint smooth blobs
        blob = field(
            uniform(-0.5, 0.5),
            uniform(-0.5, 0.5),
            uniform(0.1, 0.35),
            uniform(0.1, 0.35),
            uniform(0, np.pi),
        )
        image += uniform(-0.08, 0.08)[:, None, None] * np.exp(-blob)

    kind = labels
    r = uniform(0.15, 0.3)
    elong = 1 + 0.35 * np.maximum(kind - 1, 0) // 2 * uniform(0.5, 1.0)
    lesion = field(uniform(-0.4, 0.4), uniform(-0.4, 0.4), r, r * elong, uniform(0, np.pi))
    contrast = uniform(0.2, 0.35) * np.where(kind % 2 == 0, -1.0, 1.0)
    solid = 1 / (1 + np.exp(np.minimum((lesion - 1) * 10, 50)))
    ring = np.exp(-((np.sqrt(lesion) - 1) ** 2) * 20)
    shape = np.where((kind == 3)[:, None, None], ring, solid)
    image += np.where((kind > 0)[:, None, None], contrast[:, None, None] * shape, 0.0)

    noisy = _noise(np.clip(image, 0, 1), modality, rng, noise)
    pixels = (np.clip(noisy, 0, 1) * 255).round().astype(np.uint8)[..., None]
    return np.repeat(pixels, channels, axis=-1), labels


@SOURCES.register("phantom")
def phantom(cfg) -> Dataset:
    if cfg.modality not in MODALITIES:
        raise ConfigError(
            f"unknown phantom modality {cfg.modality!r} in config.data.modality; "
            f"valid: {', '.join(MODALITIES)}"
        )
    if cfg.num_classes < 2:
        raise ConfigError("config.data.num_classes must be at least 2 for the phantom source")
    sizes = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    splits = {
        name: Split(
            *generate(
                n, cfg.image_size, cfg.num_classes, cfg.modality, cfg.channels, seed=1000 * i + 17
            )
        )
        for i, (name, n) in enumerate(sizes.items())
    }
    names = ["no_lesion"] + [f"lesion_{k}" for k in range(1, cfg.num_classes)]
    origin = f"phantom({cfg.modality}, {cfg.image_size}px, {cfg.num_classes} classes)"
    return Dataset("phantom", splits, cfg.num_classes, names, cfg.modality, origin=origin)
