"""Class imbalance on the data side: a class-balanced sampler and SMOTE-style over-sampling.

`config.data.sampler="balanced"` draws every epoch so that each class present in the training
split is equally represented: minority images repeat, majority images are subsampled (a fresh
subset each epoch). A balanced epoch has as many images as the training split, so num_epochs
means the same number of steps whichever sampler is used. The draw is a pure function of
(config.seed, epoch, position), so the Grain iterator's state (its position) restores exactly.

`config.data.oversample="smote(k=5)"` adds synthetic images to the training split only, after
preprocessing, until every class has as many images as the largest. Each synthetic image is
x + u (x' - x), u ~ U(0, 1), for a real image x of the class and x' one of its k nearest
neighbours in the same class by Euclidean pixel distance (Chawla et al. 2002, applied in image
space). In image space that is a pixel-wise blend (a cross-fade) of two images of the same
class: superimposed, semi-transparent anatomy, not a new plausible patient, and not the
interpolation of features the method was designed for. It evens out class counts with images
near the class's real ones, closer to MixUp within one class than to new data. Feature-space
SMOTE (interpolating learned embeddings) is not implemented. Running after preprocessing means
the dataset-fitted preprocessing sees real images only and the blends are made in the model's
input space; val and test never get synthetic images. Synthetic images get the patient id
"smote:<patient of x>+<patient of x'>:<n>", which no real id may equal. An epoch still counts
the real training images only (the schedule is computed before over-sampling), so num_epochs
means the same number of steps with or without it. Balanced sampler, SMOTE and loss class
weights each even out the classes: combined, they compound.

`config.data.oversample="gan(steps=2000)"` makes the synthetic images with a class-conditional
GAN trained on the training split instead (`medjax.data.generative`).
"""

import grain
import numpy as np
from sklearn.neighbors import NearestNeighbors

from medjax.data.pipeline import train_index_dataset
from medjax.data.source import Split
from medjax.errors import ConfigError, DataError
from medjax.ops.pipeline import parse_op
from medjax.registry import Registry

SAMPLERS = ("shuffle", "balanced")
OVERSAMPLERS = Registry("over-sampling method", "config.data.oversample")


class _BalancedEpochs:
    """index -> training example index; epoch e is a seeded class-balanced draw of n indices."""

    def __init__(self, labels: np.ndarray, seed: int):
        self.n, self.seed = len(labels), seed
        self.by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        # Grain reads ahead from several threads, which straddle epoch boundaries: keep the
        # last few epochs, and never read the cache twice (a draw is pure, so a race only
        # repeats work)
        self._cache: dict[int, np.ndarray] = {}

    def epoch(self, e: int) -> np.ndarray:
        draw = self._cache.get(e)
        if draw is None:
            draw = self._draw(e)
            self._cache = {**{k: v for k, v in self._cache.items() if k >= e - 2}, e: draw}
        return draw

    def _draw(self, e: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, e])
        k = len(self.by_class)
        quota = np.full(k, self.n // k)
        quota[rng.permutation(k)[: self.n % k]] += 1  # the remainder, to random classes
        draws = []
        for members, q in zip(self.by_class, quota, strict=True):
            # whole shuffled passes over the class, so repeats are as even as possible
            reps = -(-q // len(members))
            draws.append(np.concatenate([rng.permutation(members) for _ in range(reps)])[:q])
        return rng.permutation(np.concatenate(draws))

    def __call__(self, index: int, _) -> int:
        e, i = divmod(index, self.n)
        return int(self.epoch(e)[i])


def balanced_index_dataset(labels: np.ndarray, batch_size: int, seed: int) -> grain.IterDataset:
    """Endless batches of indices with the classes equally represented in every epoch."""
    return (
        grain.MapDataset.range(len(labels))
        .repeat()
        .map_with_index(_BalancedEpochs(np.asarray(labels), seed))
        .batch(batch_size, drop_remainder=True)
        .to_iter_dataset()
    )


def index_dataset(sampler: str, labels: np.ndarray, batch_size: int, seed: int):
    """The training index pipeline `config.data.sampler` asks for."""
    check_sampler(sampler)
    if sampler == "balanced":
        return balanced_index_dataset(labels, batch_size, seed)
    return train_index_dataset(len(labels), batch_size, seed)


def check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ConfigError(
            f"config.data.sampler must be one of {', '.join(SAMPLERS)}, not {sampler!r}"
        )


@OVERSAMPLERS.register("smote")
def smote(k: int = 5):
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (neighbours) must be a positive integer, not {k!r}")
    return lambda split, seed, store=None: (*smote_split(split, k, seed), {})


def parse_oversample(spec: str):
    """ "" -> None, or a fn(split, seed, store=None) -> (split, {class: synthetic count}, info
    for data_summary.json); `store` is a folder where a method may cache what it trained."""
    if not spec:
        return None
    factory, args, kwargs = parse_op(spec, OVERSAMPLERS)
    try:
        return factory(*args, **kwargs)
    except ValueError as e:
        raise ConfigError(f"config.data.oversample={spec!r}: {e}") from None


def oversample(split: Split, spec: str, seed: int) -> tuple[Split, dict]:
    """The training split with `spec`'s synthetic images appended; ({} when spec is "")."""
    return oversample_recorded(split, spec, seed)[:2]


def oversample_recorded(split: Split, spec: str, seed: int, store: str | None = None):
    """(split, {class: synthetic count}, info): `oversample` with what the method reports
    (a generator's settings and quality) and a folder it may cache its work in."""
    fn = parse_oversample(spec)
    return (split, {}, {}) if fn is None else fn(split, seed, store)


def smote_split(split: Split, k: int, seed: int) -> tuple[Split, dict]:
    """SMOTE in image space up to the largest class's count; returns the split with synthetic
    images appended and the number made per class index."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(split.labels)
    images, labels, groups, made = [split.images], [split.labels], [split.groups], {}
    for c in np.flatnonzero((counts > 0) & (counts < counts.max())):
        members = np.flatnonzero(split.labels == c)
        if len(members) < 2:
            raise DataError(
                f"class {c} has 1 training image; SMOTE interpolates between two. Add images, "
                f"or use config.data.sampler='balanced' instead of config.data.oversample"
            )
        flat = split.images[members].reshape(len(members), -1).astype(np.float32)
        k_eff = min(k, len(members) - 1)
        nbrs = NearestNeighbors(n_neighbors=k_eff + 1).fit(flat).kneighbors(flat)[1]
        # drop each image itself (duplicates can put it anywhere in its row)
        not_self = nbrs != np.arange(len(members))[:, None]
        not_self[not_self.all(1), -1] = False
        nbrs = nbrs[not_self].reshape(len(members), k_eff)
        need = int(counts.max() - len(members))
        reps = -(-need // len(members))
        base = np.concatenate([rng.permutation(len(members)) for _ in range(reps)])[:need]
        partner = nbrs[base, rng.integers(0, k_eff, need)]
        u = rng.random((need, 1), dtype=np.float32)
        synth = flat[base] + u * (flat[partner] - flat[base])
        synth = synth.reshape(need, *split.images.shape[1:])
        if np.issubdtype(split.images.dtype, np.integer):
            synth = np.rint(synth)
        images.append(synth.astype(split.images.dtype))
        labels.append(np.full(need, c, split.labels.dtype))
        if split.groups is not None:
            g = split.groups[members]
            first = sum(made.values())  # numbered across classes, so every id is new
            groups.append(
                np.array(
                    [
                        f"smote:{g[a]}+{g[b]}:{first + i}"
                        for i, (a, b) in enumerate(zip(base, partner, strict=True))
                    ]
                )
            )
        made[int(c)] = need
    new_groups = None
    if split.groups is not None:
        new_groups = np.concatenate(groups)
        if len(np.unique(new_groups)) - len(np.unique(split.groups)) != sum(made.values()):
            raise DataError("a real patient id has the form of SMOTE's 'smote:<a>+<b>:<n>'")
    return Split(np.concatenate(images), np.concatenate(labels), new_groups), made
