"""A segmentation prior for the classifier (config.segment): stage 1 trains the segmenter
(medjax.segment.train), stage 2 rewrites every split's images with its predicted masks
(cropped to the lesion's box, or the mask as a channel). The classifier then trains on the
rewritten data exactly as on any data: `build_experiment(configs, prior.data)`.
"""

import dataclasses
import time

import jax
import numpy as np

from medjax.data.source import Dataset, Split
from medjax.errors import ConfigError
from medjax.ops import build_preprocess
from medjax.segment import train as stage1
from medjax.segment import transform
from medjax.segment.masks import check_aligned, load_masks
from medjax.segment.metrics import segmentation_metrics
from medjax.train import validate
from medjax.train import workdir as wd
from medjax.train.experiment import Data, load_preprocessed, with_oversampling


@dataclasses.dataclass(frozen=True)
class Prior:
    data: Data  # the rewritten data the classifier trains on
    results: dict  # results.json "segmentation"


def prepare(configs, workdirs, overwrite: bool = False, hooks=()) -> Prior | None:
    """The prior config.segment asks for, or None when config.segment.model is ""."""
    config = configs[0]
    if not config.segment.model:
        return None
    if len(configs) > 1 or jax.process_count() > 1:
        raise ConfigError(
            "config.segment.model trains one run at a time in one process; leave "
            "config.vectorize empty (a sweep runs each seed as its own run) and start one process"
        )
    validate.validate(config)  # before any data is read or the workdir written
    start = time.perf_counter()
    dataset, summary, fitted = load_preprocessed(config, build_preprocess(config.data.preprocess))
    masks = load_masks(config.data)
    check_aligned(dataset.splits, masks, dataset.origin)
    seg = stage1.Segmenter(config, dataset.image_shape)
    pairs = {n: (s.images, masks[n]) for n, s in dataset.splits.items()}
    workdir = workdirs[0]
    wd.make(workdir)
    with wd.Lock(workdir):
        wd.claim(workdir, config, overwrite)  # resumes only the same config's segmenter
        state, best = stage1.train(seg, workdir, pairs["train"], pairs["val"], hooks)
    predicted = {n: seg.masks(state, s.images) for n, s in dataset.splits.items()}
    results = {
        "model": config.segment.model,
        "selected_step": best,
        "selected_by": "val_dice",
        "val": segmentation_metrics(predicted["val"], masks["val"]),
        "test": segmentation_metrics(
            predicted["test"], masks["test"], config.eval.bootstrap_samples, config.seed
        ),
        "predicted_lesion_fraction": {
            n: float(np.mean(p.reshape(len(p), -1).any(1))) for n, p in predicted.items()
        },
    }
    rewritten, record = rewrite(dataset, predicted, config.segment)
    results["seconds"] = round(time.perf_counter() - start, 1)
    test = results["test"]
    print(
        f"segmenter ({config.segment.model}, step {best}): test Dice {test['dice']:.3f}, IoU "
        f"{test['iou']:.3f}; images {record['use']} for the classifier"
    )
    return Prior(
        with_oversampling(rewritten, config, {**summary, "segment_prior": record}, fitted), results
    )


def rewrite(dataset: Dataset, predicted: dict, cfg) -> tuple[Dataset, dict]:
    """Every split's images through the predicted masks as config.segment.use says; (the
    dataset, what data_summary.json records)."""
    splits, record = {}, {"model": cfg.model, "use": cfg.use, "threshold": cfg.threshold}
    if cfg.use == "crop":
        record["margin"] = cfg.margin
    for name, split in dataset.splits.items():
        images, done = transform.apply(cfg.use, split.images, predicted[name], cfg.margin)
        splits[name] = Split(images, split.labels, split.groups)
        for key, value in done.items():
            record.setdefault(key, {})[name] = value
    return dataclasses.replace(dataset, splits=splits), record
