"""GAN over-sampling: `config.data.oversample = "gan(steps=2000)"`, beside "smote(k=5)".

A class-conditional GAN (`medjax.data.generative.gan`) is trained on the training split only,
after preprocessing (so it learns the model's input space, and dataset-fitted preprocessing
saw real images only), on all its classes: the majority class teaches it the modality's
general appearance, the class embedding what sets each class apart. It then generates images of
every smaller class until each has as many as the largest; they are appended after the real
images (data_summary.json's "oversample" records the count per class, the index the synthetic
images start at, and the quality of each class's images: `medjax.data.generative.quality`). Val
and test never get them. With patient ids, a synthetic image's id is "gan:<class>:<n>".

Training is a pure function of the seed and the training images, and its result (generated
images, generator weights, quality) is kept in the data cache under a key of the training
images, labels, generator arguments, seed, library versions and this package's code, so a
resumed run reads the same synthetic images instead of training again (with
config.data.cache=False it trains again, to the same weights). A run killed during generator
training starts it again from scratch: it is a matter of minutes.
"""

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import pathlib
import shutil
import tempfile

import numpy as np
from flax import serialization

from medjax.data.generative.gan import LOSSES, GanSpec, sample, train_gan
from medjax.data.generative.quality import c2st, nn1_accuracy
from medjax.data.imbalance import OVERSAMPLERS
from medjax.data.source import Split
from medjax.errors import DataError

_CODE = pathlib.Path(__file__).resolve().parent
MIN_TESTED = 10  # the fewest generated images of a class whose quality is measured
_LIBRARIES = ("numpy", "jax", "jaxlib", "flax", "optax", "scikit-learn")


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer of at least {low}, not {value!r}")


@OVERSAMPLERS.register("gan")
def gan(
    steps: int = 2000,
    batch_size: int = 64,
    width: int = 32,
    latent: int = 64,
    lr: float = 2e-4,
    loss: str = "hinge",
    min_images: int = 16,
):
    """min_images: the fewest training images a class to be filled may have; fewer is too
    little to learn a class from (use smote or the balanced sampler then)."""
    for name, value, low in [
        ("steps", steps, 1),
        ("batch_size", batch_size, 1),
        ("width", width, 1),
        ("latent", latent, 1),
        ("min_images", min_images, 2),
    ]:
        _check_int(name, value, low)
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < 1:
        raise ValueError(f"lr must be a number in (0, 1), not {lr!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
    spec = GanSpec(steps, batch_size, width, latent, float(lr), loss)
    return lambda split, seed, store=None: gan_split(split, spec, min_images, seed, store)


def _check_split(split: Split, fill, counts, min_images: int) -> None:
    if split.images.ndim != 4:
        raise DataError(
            f"gan over-sampling generates 2-D images (N, H, W, C); the training images have "
            f"shape {split.images.shape}. Use smote or config.data.sampler='balanced'"
        )
    h, w = split.images.shape[1:3]
    if h % 4 or w % 4:
        raise DataError(
            f"gan over-sampling needs image sides that are multiples of 4 (two stride-2 "
            f"layers), not {h}x{w}; set config.data.image_size to e.g. {4 * round(h / 4)}"
        )
    for c in fill:
        if counts[c] < min_images:
            raise DataError(
                f"class {c} has {counts[c]} training images, too few to train a generator on "
                f"(gan's min_images={min_images}); use smote(k=...) or "
                f"config.data.sampler='balanced', or lower gan(min_images=...) knowingly"
            )


def cache_key(split: Split, spec: GanSpec, seed: int) -> str:
    """A hash of everything the generated images depend on."""
    digest = hashlib.sha256()
    for array in (split.images, split.labels):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode() + array.tobytes())
    versions = {}
    for lib in _LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = ""
    digest.update(json.dumps([dataclasses.asdict(spec), seed, versions]).encode())
    for path in sorted(_CODE.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return "gan-" + digest.hexdigest()[:20]


def _load(entry: str):
    try:
        with np.load(os.path.join(entry, "samples.npz"), allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
        with open(os.path.join(entry, "meta.json")) as f:
            info = json.load(f)
        return images, labels, info
    except (OSError, ValueError, KeyError) as e:
        print(f"gan: cached samples in {entry} unreadable ({e}); training again")
        shutil.rmtree(entry, ignore_errors=True)
        return None


def _store(entry: str, images, labels, info: dict, params) -> None:
    root = os.path.dirname(entry)
    try:
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=root, prefix=".incomplete-")
        try:
            np.savez(os.path.join(tmp, "samples.npz"), images=images, labels=labels)
            with open(os.path.join(tmp, "generator.msgpack"), "wb") as f:
                f.write(serialization.msgpack_serialize(params))
            with open(os.path.join(tmp, "meta.json"), "w") as f:
                json.dump(info, f, indent=1)
            try:
                os.rename(tmp, entry)
            except OSError:
                if not os.path.isdir(entry):  # else another run stored the same entry first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        print(f"gan: generator samples not cached in {root} ({e}); a resume trains it again")


def _quality(real: np.ndarray, fake: np.ndarray, seed: int) -> dict:
    if min(len(real), len(fake)) < MIN_TESTED:  # too few for held-out folds to mean anything
        return {"c2st_accuracy": None, "nn1_accuracy": None}
    return {
        "c2st_accuracy": round(c2st(real, fake, seed), 4),
        "nn1_accuracy": round(nn1_accuracy(real, fake, seed), 4),
    }


def _generate(split: Split, fill, counts, spec: GanSpec, seed: int):
    """(images, labels, info) of the synthetic images, in the training images' range."""
    lo, hi = float(split.images.min()), float(split.images.max())
    if not hi > lo:
        raise DataError("gan over-sampling: every training pixel has the same value")
    scale = lambda x: (2 * (x.astype(np.float32) - lo) / (hi - lo) - 1).astype(np.float32)
    trained = train_gan(scale(split.images), split.labels, len(counts), spec, seed)
    images, labels, quality = [], [], {}
    for c in fill:
        need = int(counts.max() - counts[c])
        fake = sample(trained, int(c), need, seed)
        real = scale(split.images[split.labels == c])
        quality[int(c)] = _quality(real, fake, seed)
        images.append(lo + (fake + 1) / 2 * (hi - lo))
        labels.append(np.full(need, c, split.labels.dtype))
    images = np.concatenate(images)
    if np.issubdtype(split.images.dtype, np.integer):
        images = np.rint(images)
    info = {
        "generator": {**dataclasses.asdict(spec), "final_losses": trained.final_losses},
        "quality": quality,
    }
    return images.astype(split.images.dtype), np.concatenate(labels), info, trained.params


def gan_split(split: Split, spec: GanSpec, min_images: int, seed: int, store: str | None):
    """The split with generated images of every smaller class appended; (split, {class:
    count}, info for data_summary.json)."""
    if split.labels.ndim != 1:
        raise DataError(
            "gan over-sampling needs one class per image; this data has several labels per "
            "image (multi-label). Set config.data.oversample=''"
        )
    counts = np.bincount(split.labels)
    fill = np.flatnonzero((counts > 0) & (counts < counts.max()))
    if not len(fill):
        return split, {}, {}
    _check_split(split, fill, counts, min_images)
    entry = os.path.join(store, cache_key(split, spec, seed)) if store else None
    cached = _load(entry) if entry and os.path.isdir(entry) else None
    if cached is not None:
        images, labels, info = cached
        print(f"gan: generated images read from the cache {entry}")
    else:
        images, labels, info, params = _generate(split, fill, counts, spec, seed)
        if entry:
            _store(entry, images, labels, info, params)
    info["quality"] = {int(c): q for c, q in info["quality"].items()}  # JSON made keys str
    made = {int(c): int(np.sum(labels == c)) for c in fill}
    groups = split.groups
    if groups is not None:
        ids = np.array([f"gan:{c}:{i}" for i, c in enumerate(labels)])
        if set(ids) & set(np.asarray(groups).astype(str)):
            raise DataError("a real patient id has the form of gan's 'gan:<class>:<n>'")
        groups = np.concatenate([np.asarray(groups).astype(str), ids])
    out = Split(
        np.concatenate([split.images, images]), np.concatenate([split.labels, labels]), groups
    )
    return out, made, info
