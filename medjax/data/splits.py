"""Train/val/test splits for data without official ones, and k-fold cross-validation.

A source returns the official train/val/test splits when the data has them, or fewer:
- "all" (or "train" alone): split into train/val/test by `split_fractions`;
- "train" and "test": val is carved out of train (train:val in the fractions' proportion);
- "train" and "val": test is carved out of train the same way.
Official splits are never changed. Every split made here is stratified by class, and grouped by
patient whenever the source gives patient ids (`Split.groups`): no patient is in two splits.
With `num_folds > 1`, train and val are pooled (test stays fixed; it is carved first when the
source has none) and split into `num_folds` stratified folds, patient-grouped when ids exist;
fold `fold` is val and the others train.

Which algorithm: scikit-learn's StratifiedShuffleSplit (images without ids), StratifiedKFold and
StratifiedGroupKFold (folds). Scikit-learn has no stratified group split by fractions, so
`_grouped_split` does it: patients, each labelled by the majority label of its images, are
taken in a seeded random order within each label, and each goes to the split furthest below
its share of that label's images. Every run with the same seed and data gives the same splits.
"""

import dataclasses
import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, StratifiedShuffleSplit

from medjax.data.source import SPLITS, Dataset, Split
from medjax.errors import ConfigError, DataError


def check_config(cfg) -> None:
    """The split keys of `config.data`, checked before any data is read."""
    fractions = tuple(cfg.split_fractions)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(
            f"config.data.split_fractions={fractions} must be three positive fractions (train, "
            f"val, test) that sum to 1, e.g. (0.7, 0.1, 0.2)"
        )
    if cfg.num_folds < 0 or cfg.num_folds == 1:
        raise ConfigError(
            f"config.data.num_folds={cfg.num_folds}: use 0 for no cross-validation, or 2 or more"
        )
    if cfg.num_folds > 1 and not 0 <= cfg.fold < cfg.num_folds:
        raise ConfigError(
            f"config.data.fold={cfg.fold} is out of range for num_folds={cfg.num_folds}; use "
            f"0 to {cfg.num_folds - 1}"
        )


def assign(dataset: Dataset, cfg) -> Dataset:
    """Complete `dataset.splits` to train/val/test (or a k-fold split); records how in
    `dataset.split_method`."""
    check_config(cfg)
    have, origin = set(dataset.splits), dataset.origin
    valid = have == {"all"} or ("train" in have and have <= set(SPLITS))
    if not valid:
        raise DataError(
            f"{origin}: the source returned splits {sorted(have)}; it must return 'all', or "
            f"'train' with any of 'val' and 'test'"
        )
    _check_groups(dataset)
    _warn_shared_patients(dataset, pooled=cfg.num_folds > 1)
    splits = dict(dataset.splits)
    if "all" in splits:
        splits["train"] = splits.pop("all")
    seed, names = cfg.split_seed, dataset.class_names
    fractions = dict(zip(SPLITS, cfg.split_fractions, strict=True))
    grouped = dataset.splits[next(iter(dataset.splits))].groups is not None
    how = f"{'patient-grouped ' if grouped else ''}stratified(seed={seed})"
    made = [s for s in SPLITS if s not in splits]
    if cfg.num_folds > 1:
        test = "official test"
        if "test" in made:
            test = f"test {how}"
            pool = splits.pop("train")
            splits["train"], splits["test"] = _split(
                pool, [1 - fractions["test"], fractions["test"]], seed, names, "train+val/test"
            )
        pool = _concat([splits.pop(s) for s in ("train", "val") if s in splits])
        splits["train"], splits["val"] = _fold(pool, cfg.num_folds, cfg.fold, seed, names)
        method = f"fold {cfg.fold} of {cfg.num_folds} ({how}) over train+val; {test}"
    elif made:
        carved = ("train", *made)
        parts = _split(
            splits["train"], [fractions[s] for s in carved], seed, names, "/".join(carved)
        )
        splits.update(zip(carved, parts, strict=True))
        method = f"{'/'.join(carved)} {how} {'/'.join(str(fractions[s]) for s in carved)}"
        kept = [s for s in SPLITS if s not in carved]
        method += f" from the source's train; official {kept[0]}" if kept else ""
    else:
        method = "official"
    return dataclasses.replace(dataset, splits={s: splits[s] for s in SPLITS}, split_method=method)


def _check_groups(dataset: Dataset) -> None:
    has = {name: s.groups is not None for name, s in dataset.splits.items()}
    if len(set(has.values())) > 1:
        raise DataError(
            f"{dataset.origin}: patient ids were given for the "
            f"{', '.join(n for n, h in has.items() if h)} split(s) only; a source gives them "
            f"for every split or for none"
        )


class SharedPatientWarning(UserWarning):
    """A patient's images are in more than one of the source's official splits."""


def _warn_shared_patients(dataset: Dataset, pooled: bool) -> None:
    """Official splits are kept as given, but a patient in two of them leaks into the test
    (k-fold `pooled` train and val are regrouped by patient, so only test counts then)."""
    ids = {name: set(s.groups) for name, s in dataset.splits.items() if s.groups is not None}
    pairs = [(a, b) for a in ids for b in ids if a < b and not (pooled and "test" not in (a, b))]
    shared = {}
    for a, b in pairs:
        for patient in ids[a] & ids[b]:
            shared.setdefault(patient, set()).update((a, b))
    if shared:
        first = str(sorted(shared)[0])
        warnings.warn(
            f"{dataset.origin}: {len(shared)} patients have images in more than one official "
            f"split (first: {first!r} in {', '.join(sorted(shared[first]))}), so results on "
            f"the test split overstate the model; give each patient one split",
            SharedPatientWarning,
            stacklevel=3,
        )


def _concat(parts: list[Split]) -> Split:
    groups = None if parts[0].groups is None else np.concatenate([p.groups for p in parts])
    return Split(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.labels for p in parts]),
        groups,
    )


def _take(split: Split, idx: np.ndarray) -> Split:
    idx = np.sort(idx)  # keep the source's order inside each split
    groups = None if split.groups is None else split.groups[idx]
    return Split(split.images[idx], split.labels[idx], groups)


def strata(labels: np.ndarray) -> np.ndarray:
    """The class each image is stratified by: its class, or for multi-label (N, L) its rarest
    finding (L for an image with none), so that every finding, rare ones first, is spread
    over the parts (an approximation of iterative stratification)."""
    if labels.ndim == 1:
        return labels
    frequency = labels.sum(0)
    order = np.argsort(frequency, kind="stable")  # rarest first
    ranked = labels[:, order] > 0
    first = np.where(ranked.any(1), order[np.argmax(ranked, axis=1)], labels.shape[1])
    return first.astype(np.int64)


def _names(labels: np.ndarray, names) -> list:
    return list(names) + ["no finding"] if labels.ndim == 2 else names


def _check_class_sizes(labels, groups, parts: int, names, what: str) -> None:
    """Every class must be able to reach every part: at least `parts` images, and with patient
    ids at least `parts` patients."""
    for c in np.unique(labels):
        n = int(np.sum(labels == c))
        patients = n if groups is None else len(np.unique(groups[labels == c]))
        if patients < parts:
            having = f"{n} images" + ("" if groups is None else f" from {patients} patients")
            unit = "images" if groups is None else "patients"
            raise DataError(
                f"class {names[c]!r} has {having}; a stratified {what} split needs at least "
                f"{parts} {unit} per class. Add data for the class, merge or drop it, or give the "
                f"data official splits"
            )


def _split(split: Split, fractions, seed: int, names, what: str) -> list[Split]:
    """`split` into len(fractions) stratified (and patient-grouped) parts."""
    fractions = np.asarray(fractions, np.float64) / np.sum(fractions)
    labels, groups, names = strata(split.labels), split.groups, _names(split.labels, names)
    _check_class_sizes(labels, groups, len(fractions), names, what)
    for f, name in zip(fractions, what.split("/"), strict=True):
        if round(f * len(labels)) < len(np.unique(labels)):
            raise DataError(
                f"{len(labels)} images are too few for a stratified {what} split: the {name} "
                f"part ({f:.2f}) would get fewer images than there are classes. Use more data, "
                f"other config.data.split_fractions, or official splits"
            )
    if groups is not None:
        part = _grouped_split(labels, groups, fractions, seed)
        return [_take(split, np.flatnonzero(part == i)) for i in range(len(fractions))]
    parts, rest = [], np.arange(len(labels))
    # Peel off the last part first, then the next from what is left, down to the first.
    for i in range(len(fractions) - 1, 0, -1):
        size = round(fractions[i] * len(labels))  # a count: shares of shares round unevenly
        sss = StratifiedShuffleSplit(1, test_size=size, random_state=seed)
        keep, out = next(sss.split(np.zeros(len(rest)), labels[rest]))
        parts.append(rest[out])
        rest = rest[keep]
    return [_take(split, idx) for idx in [rest, *reversed(parts)]]


def _grouped_split(labels, groups, fractions, seed: int) -> np.ndarray:
    """Part index per image: whole patients, stratified by each patient's majority label."""
    rng = np.random.default_rng(seed)
    ids, inverse = np.unique(groups, return_inverse=True)
    num_classes = labels.max() + 1
    counts = np.zeros((len(ids), num_classes), np.int64)
    np.add.at(counts, (inverse, labels), 1)
    majority, sizes = counts.argmax(1), counts.sum(1)  # ties: the lower label
    part_of = np.empty(len(ids), np.int64)
    for c in np.unique(majority):
        members = rng.permutation(np.flatnonzero(majority == c))
        target = fractions * sizes[members].sum()
        filled = np.zeros(len(fractions))
        for g in members:
            # the part furthest below its share; an empty part (1.0) first, so each gets one
            p = int(np.argmax((target - filled) / target))
            part_of[g] = p
            filled[p] += sizes[g]
    return part_of[inverse]


def _fold(pool: Split, num_folds: int, fold: int, seed: int, names) -> tuple[Split, Split]:
    """(train, val) for fold `fold` of a stratified, patient-grouped when ids exist, k-fold."""
    labels, groups, names = strata(pool.labels), pool.groups, _names(pool.labels, names)
    patients = len(labels) if groups is None else len(np.unique(groups))
    if patients < num_folds:
        unit = "images" if groups is None else "patients"
        raise DataError(
            f"num_folds={num_folds} needs at least {num_folds} {unit} in train+val, which has "
            f"{patients}; lower config.data.num_folds"
        )
    _check_class_sizes(labels, groups, num_folds, names, f"{num_folds}-fold")
    if groups is None:
        folds = StratifiedKFold(num_folds, shuffle=True, random_state=seed).split(
            np.zeros(len(labels)), labels
        )
    else:
        folds = StratifiedGroupKFold(num_folds, shuffle=True, random_state=seed).split(
            np.zeros(len(labels)), labels, groups
        )
    train_idx, val_idx = list(folds)[fold]
    if len(val_idx) == 0:
        raise DataError(
            f"fold {fold} of {num_folds} is empty (too few patients for this many folds); lower "
            f"config.data.num_folds"
        )
    return _take(pool, train_idx), _take(pool, val_idx)
