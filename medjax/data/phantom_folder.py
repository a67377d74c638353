"""Phantom images written as a folder of PNG files, for folder-based recipes anyone can run.

    python -m medjax.data.fetch phantom --dir data/phantom_mri --modality mri --classes 4

writes DIR/{train,val,test}/{no_lesion,lesion_1,...}/NNNNN.png (8-bit grey), the layout the
`image_folder` source reads, from the same generator as the built-in `phantom` source. The
folder is written under a temporary name and renamed when complete, so an interrupted run
leaves nothing half-written. `--masks MASKDIR` also writes each image's ground-truth lesion
mask (0 or 255; all 0 without a lesion) at the same relative path under MASKDIR, a folder of
its own so that DIR still reads as an image folder.
"""

import os
import shutil
import tempfile

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from medjax.data.phantom import MODALITIES, generate
from medjax.errors import ConfigError, DataError


def write_phantom_folder(
    root: str,
    size: int,
    num_classes: int,
    modality: str,
    counts: dict,
    seed=0,
    noise=1.0,
    masks_root: str = "",
) -> str:
    """Write the splits in `counts` ({"train": n, ...}) under `root` (and their lesion masks
    under `masks_root` when given); returns `root`."""
    if modality not in MODALITIES:
        raise ConfigError(f"--modality must be one of {', '.join(MODALITIES)}, not {modality!r}")
    if num_classes < 2 or size < 8 or min(counts.values()) < num_classes or noise <= 0:
        raise ConfigError(
            "--classes must be at least 2, --size at least 8, --noise positive, and each split "
            "at least as large as the number of classes"
        )
    roots = [r for r in (root, masks_root) if r]
    for r in roots:
        if os.path.exists(r):
            raise DataError(f"{r} exists already; remove it or choose another --dir / --masks")
    tmps = []
    for r in roots:
        parent = os.path.dirname(os.path.abspath(r))
        os.makedirs(parent, exist_ok=True)
        tmps.append(tempfile.mkdtemp(prefix=".phantom-", dir=parent))
    names = ["no_lesion"] + [f"lesion_{k}" for k in range(1, num_classes)]
    try:
        for i, (split, n) in enumerate(counts.items()):
            images, labels, masks = generate(
                n, size, num_classes, modality, 1, 1000 * seed + i, noise, with_masks=True
            )
            pixels = [images[..., 0], masks.astype(np.uint8) * 255][: len(tmps)]
            for tmp in tmps:
                for name in names:
                    os.makedirs(os.path.join(tmp, split, name))
            for k in tqdm(range(n), desc=split, leave=False, disable=n < 500):
                for tmp, array in zip(tmps, pixels, strict=True):
                    path = os.path.join(tmp, split, names[labels[k]], f"{k:05d}.png")
                    Image.fromarray(array[k]).save(path)
        for tmp, r in zip(tmps, roots, strict=True):
            os.replace(tmp, r)
    finally:
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{root}: {sum(counts.values())} phantom {modality} images, {size} px, {num_classes} classes"
    )
    return root


def add_parser(sub) -> None:
    p = sub.add_parser("phantom", help="phantom images written as a PNG folder (no download)")
    p.add_argument("--dir", required=True, help="folder to create")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--classes", type=int, default=4, help="no lesion + lesion types")
    p.add_argument("--modality", default="mri", help=", ".join(MODALITIES))
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--val", type=int, default=400)
    p.add_argument("--test", type=int, default=800)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--masks", default="", metavar="MASKDIR", help="also write the lesion masks under MASKDIR"
    )
    p.add_argument(
        "--noise",
        type=float,
        default=2.5,
        help="noise level (2: twice the SD of the phantom source)",
    )


def run(args) -> None:
    counts = {"train": args.train, "val": args.val, "test": args.test}
    write_phantom_folder(
        args.dir, args.size, args.classes, args.modality, counts, args.seed, args.noise, args.masks
    )
