"""Evaluating a finished run on other data (another hospital, scanner or noise): the data
loaded through the run's own data config with a few keys changed, its classes matched to the
run's, preprocessed with the statistics fitted on the run's training split (never refitted on
the external data), and scored with the run's temperature and operating point.
"""

import numpy as np

from medjax.configs import apply_overrides, as_plain, config_from_plain
from medjax.data.loading import complete_splits
from medjax.data.source import SOURCES, SPLITS
from medjax.data.values import check_finite
from medjax.errors import ConfigError, DataError
from medjax.eval import calibration, operating_point
from medjax.eval.metrics import classification_metrics

SPLIT_CHOICES = ("auto", "all", *SPLITS)


def data_config(run, overrides: list[tuple[str, str]]):
    """The run's config with `overrides` (config.data keys only) applied, checked whole."""
    from medjax.train.validate import validate  # imports every model: only when needed

    for key, _ in overrides:
        if not key.startswith("data."):
            raise ConfigError(
                f"--config.{key}: an external evaluation keeps the run's model, preprocessing "
                f"and evaluation settings; only --config.data.KEY=VALUE keys describe the other "
                f"data (preprocessing is data.preprocess, and stays the run's)"
            )
        if key == "data.preprocess":
            raise ConfigError(
                "--config.data.preprocess: the external data goes through the run's own "
                "preprocessing, with the statistics fitted on its training split; leave it out"
            )
    config = config_from_plain(as_plain(run.config))
    apply_overrides(config, overrides)
    validate(config)
    return config


def load_split(data_cfg, split: str):
    """(raw images, labels, class names, a description of what was taken). `split`: "auto"
    (the source's own test split when it has one, else all its images), "all" (every image
    the source returns), or train/val/test as a run on this data would split it (medjax.data.
    splits: official splits kept, missing ones made with data.split_fractions/split_seed)."""
    source = SOURCES.get(data_cfg.source)(data_cfg)
    has = list(source.splits)
    if split == "auto":
        split = "test" if "test" in has else "all"
    if split == "all":
        parts = [source.splits[s] for s in has]
        images = np.concatenate([p.images for p in parts])
        labels = np.concatenate([p.labels for p in parts])
        how = f"all {len(labels)} images of the source (its splits: {', '.join(has)})"
        return images, labels, source.class_names, source.origin, how
    done = complete_splits(source, data_cfg)
    chosen = done.splits[split]
    how = f"the {split} split ({done.split_method}; {len(chosen)} images)"
    return chosen.images, chosen.labels, source.class_names, source.origin, how


def parse_class_map(text: str) -> dict[str, str]:
    """'ext_a=run_a,ext_b=run_b' -> {ext_a: run_a, ...}."""
    out = {}
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        external, eq, ours = (s.strip() for s in item.partition("="))
        if not eq or not external or not ours:
            raise ConfigError(
                f"--class-map item {item!r} is not EXTERNAL=RUN; write e.g. "
                f"--class-map normal=no_lesion,tumour=lesion_1"
            )
        out[external] = ours
    return out


def match_classes(labels, external_names, run_names, class_map: dict) -> np.ndarray:
    """The labels as indices into the run's classes, through `class_map` where given; a
    DataError listing both sets of names when a class has no counterpart."""
    unknown = sorted(set(class_map) - set(external_names))
    wrong = sorted(set(class_map.values()) - set(run_names))
    mapped = [class_map.get(n, n) for n in external_names]
    missing = [e for e, m in zip(external_names, mapped, strict=True) if m not in run_names]
    if unknown or wrong or missing:
        problems = [
            f"--class-map names external classes {unknown} that the data does not have"
            if unknown
            else "",
            f"--class-map maps to {wrong}, which are not the run's classes" if wrong else "",
            f"external classes {missing} have no class of the run" if missing else "",
        ]
        raise DataError(
            f"{'; '.join(p for p in problems if p)}. External classes: {list(external_names)}; "
            f"the run's classes: {list(run_names)}. Map each external class to one of the "
            f"run's with --class-map EXTERNAL=RUN,... (e.g. --class-map "
            f"{(missing or list(external_names))[0]}={run_names[0]})"
        )
    lookup = np.array([run_names.index(m) for m in mapped], np.int32)
    return lookup[np.asarray(labels)]


def preprocess(run, raw: np.ndarray, where: str) -> np.ndarray:
    """The run's own preprocessing (training statistics bound) of the external images."""
    images = run.preprocess_images(raw)
    if images.shape[1:] != tuple(run.image_shape):
        raise DataError(
            f"{where}: images preprocess to {images.shape[1:]} but the run's model takes "
            f"{tuple(run.image_shape)}; set --config.data.image_size (and data.channels, "
            f"data.depth) so that the external images are decoded as the run's were"
        )
    check_finite(images, where, "check the external files")
    return images


def evaluate(run, labels, probs) -> dict:
    """The run's metrics (with intervals) of external `probs`: uncalibrated, calibrated with
    the run's temperature, and at the run's operating point (its threshold, chosen on the
    run's own validation split, on the uncalibrated probability)."""
    cfg, k = run.config.eval, run.num_classes
    args = dict(
        num_classes=k,
        positive_class=cfg.positive_class,
        bootstrap=cfg.bootstrap_samples,
        seed=run.config.seed,
        ece_bins=cfg.ece_bins,
    )
    out = {"uncalibrated": classification_metrics(labels, probs, **args)}
    t = run.temperature
    if t is not None:
        calibrated = calibration.apply_temperature(probs, t)
        out["calibrated"] = {"temperature": t, **classification_metrics(labels, calibrated, **args)}
    point = run.results.get("operating_point") or {}
    if "threshold" in point:
        out["operating_point"] = {
            "method": point.get("method"),
            "threshold": point["threshold"],
            "applies_to": point.get("applies_to"),
            "metrics": operating_point.metrics_at(
                labels,
                probs,
                point["threshold"],
                cfg.positive_class,
                cfg.bootstrap_samples,
                run.config.seed,
            ),
        }
    else:
        out["operating_point"] = {
            "skipped": point.get("skipped", "the run recorded no operating point")
        }
    return out
