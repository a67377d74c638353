"""A procedurally generated dataset, so that medjax runs end to end with no download.

Each image is a smooth "organ" on a dark background. Class 0 has no lesion; class k >= 1 has a
lesion of kind k (1: bright solid, 2: dark solid, 3: bright ring, then alternating contrasts
with growing elongation) at a random place, size and contrast. Noise follows the imaging
physics of the chosen modality: Poisson photon noise for X-ray, multiplicative Gamma speckle
for ultrasound, Rician magnitude noise for MRI. Lesions are faint against the noise, so a model
has to learn them; nothing about the label leaks through the image statistics.
"""

import numpy as np

from medjax.data import splits
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


def generate(n, size, num_classes, modality, channels, seed, noise=1.0, with_masks=False):
    """(images uint8 (n, size, size, channels), labels int32 (n,)), fully determined by seed;
    `noise` scales the noise (harder data at > 1). `with_masks` adds a third array, the
    ground-truth lesion masks, bool (n, size, size), all false for class 0: the pixels inside
    the lesion's half-maximum outline (for the ring, the whole disc its outer edge encloses).
    They are computed from the same draws and take none, so the images do not change."""
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
    images = np.repeat(pixels, channels, axis=-1)
    if not with_masks:
        return images, labels
    # solid: the sigmoid's half maximum is lesion == 1; ring: exp(-20 t^2) = 1/2 at the outer
    # edge t = sqrt(ln 2 / 20) of sqrt(lesion) - 1
    edge = np.where(kind == 3, (1 + np.sqrt(np.log(2) / 20)) ** 2, 1.0)
    masks = (lesion <= edge[:, None, None]) & (kind > 0)[:, None, None]
    return images, labels, masks


def _check(cfg) -> None:
    if cfg.modality not in MODALITIES:
        raise ConfigError(
            f"unknown phantom modality {cfg.modality!r} in config.data.modality; "
            f"valid: {', '.join(MODALITIES)}"
        )
    if cfg.num_classes < 2:
        raise ConfigError("config.data.num_classes must be at least 2 for the phantom source")


def _splits(cfg, masks: bool) -> dict[str, Split]:
    """The source's official splits; with `masks`, each split's images are its lesion masks
    (n, size, size, 1), so that split assignment and subsampling move them like images."""
    sizes = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    out = {}
    for i, (name, n) in enumerate(sizes.items()):
        arrays = generate(
            n,
            cfg.image_size,
            cfg.num_classes,
            cfg.modality,
            cfg.channels,
            1000 * i + 17,
            with_masks=masks,
        )
        out[name] = Split(arrays[2][..., None], arrays[1]) if masks else Split(*arrays)
    return out


def _dataset(cfg, masks: bool = False) -> Dataset:
    _check(cfg)
    names = ["no_lesion"] + [f"lesion_{k}" for k in range(1, cfg.num_classes)]
    origin = f"phantom({cfg.modality}, {cfg.image_size}px, {cfg.num_classes} classes)"
    return Dataset(
        "phantom", _splits(cfg, masks), cfg.num_classes, names, cfg.modality, origin=origin
    )


@SOURCES.register("phantom")
def phantom(cfg) -> Dataset:
    return _dataset(cfg)


def phantom_masks(cfg) -> dict[str, np.ndarray]:
    """Ground-truth lesion masks, bool (N, H, W), of the splits `load_dataset(cfg)` gives for
    the phantom source `cfg` (config.data), in the same order: regenerated from the same seeds
    and passed through the same split assignment (k-fold too) and subsampling. The data cache
    holds only images and labels; masks are cheap to regenerate, so they bypass it."""
    from medjax.data.loading import limit  # loading imports the source registry

    if cfg.source != "phantom":
        raise ConfigError(
            f"ground-truth masks exist only for the phantom source, not {cfg.source!r}; set "
            f"config.data.source='phantom'"
        )
    dataset = limit(splits.assign(_dataset(cfg, masks=True), cfg), cfg)
    return {name: s.images[..., 0] for name, s in dataset.splits.items()}
