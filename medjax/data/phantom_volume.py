"""A procedurally generated 3D dataset: the phantom (medjax.data.phantom) as volumes.

Each volume (depth x size x size) holds a soft-edged ellipsoidal "organ" with faint internal
structure; class k >= 1 adds an ellipsoidal lesion of kind k (odd kinds bright, even kinds
dark) at a random place, size and contrast, and the modality's noise model (Poisson, speckle or
Rician) is applied voxel by voxel. Select it with `data.source="phantom3d"` and `data.depth`
slices; `lesion_masks` returns where the lesions are, for checking explanations.
"""

import numpy as np

from medjax.data.phantom import MODALITIES, _noise
from medjax.data.source import SOURCES, Dataset, Split
from medjax.errors import ConfigError


def generate_volumes(n, depth, size, num_classes, modality, channels, seed, noise=1.0):
    """(volumes uint8 (n, depth, size, size, channels), labels int32 (n,), lesion masks bool
    (n, depth, size, size)), fully determined by `seed`."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
    grid = np.meshgrid(*(np.linspace(-1, 1, s) for s in (depth, size, size)), indexing="ij")

    def ellipsoid(centre, radii):  # (n, 3) each -> (n, D, H, W): < 1 inside
        return sum(
            ((g[None] - c[:, None, None, None]) / r[:, None, None, None]) ** 2
            for g, c, r in zip(grid, centre.T, radii.T, strict=True)
        )

    def uniform(lo, hi, shape=(n, 3)):
        return rng.uniform(lo, hi, shape)

    organ = ellipsoid(uniform(-0.1, 0.1), uniform(0.65, 0.85))
    volume = 0.08 + 0.42 / (1 + np.exp(np.minimum((organ - 1) * 12, 50)))
    for _ in range(3):
        blob = ellipsoid(uniform(-0.5, 0.5), uniform(0.15, 0.35))
        volume += uniform(-0.08, 0.08, n)[:, None, None, None] * np.exp(-blob)
    r = uniform(0.2, 0.35, (n, 1)) * np.array([[1.3, 1.0, 1.0]])  # thicker in depth: few slices
    lesion = ellipsoid(uniform(-0.4, 0.4), r)
    contrast = uniform(0.2, 0.35, n) * np.where(labels % 2 == 0, -1.0, 1.0)
    present = (labels > 0)[:, None, None, None]
    solid = 1 / (1 + np.exp(np.minimum((lesion - 1) * 10, 50)))
    volume += np.where(present, contrast[:, None, None, None] * solid, 0.0)
    noisy = _noise(np.clip(volume, 0, 1), modality, rng, noise)
    voxels = (np.clip(noisy, 0, 1) * 255).round().astype(np.uint8)[..., None]
    return np.repeat(voxels, channels, axis=-1), labels, present & (lesion < 1)


def _splits(cfg):
    if cfg.modality not in MODALITIES:
        raise ConfigError(
            f"unknown phantom modality {cfg.modality!r} in config.data.modality; "
            f"valid: {', '.join(MODALITIES)}"
        )
    if cfg.depth < 4:
        raise ConfigError(
            f"the phantom3d source makes volumes of config.data.depth slices; set "
            f"--config.data.depth to at least 4 (now {cfg.depth}), e.g. 16"
        )
    if cfg.num_classes < 2:
        raise ConfigError("config.data.num_classes must be at least 2 for the phantom3d source")
    sizes = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    for i, (name, n) in enumerate(sizes.items()):
        yield (
            name,
            generate_volumes(
                n,
                cfg.depth,
                cfg.image_size,
                cfg.num_classes,
                cfg.modality,
                cfg.channels,
                1000 * i + 23,
            ),
        )


def lesion_masks(cfg) -> dict[str, np.ndarray]:
    """{split: bool (N, D, H, W)} where each volume's lesion is (all False without one), for
    the volumes `phantom3d` makes from the same config."""
    return {name: masks for name, (_, _, masks) in _splits(cfg)}


@SOURCES.register("phantom3d")
def phantom3d(cfg) -> Dataset:
    splits = {name: Split(volumes, labels) for name, (volumes, labels, _) in _splits(cfg)}
    names = ["no_lesion"] + [f"lesion_{k}" for k in range(1, cfg.num_classes)]
    origin = (
        f"phantom3d({cfg.modality}, {cfg.depth}x{cfg.image_size}x{cfg.image_size}, "
        f"{cfg.num_classes} classes)"
    )
    return Dataset("phantom3d", splits, cfg.num_classes, names, cfg.modality, origin=origin)
