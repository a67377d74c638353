"""Explanations of a whole data split of a finished run, written as files: what
`python -m medjax.explain` and the report's gallery produce."""

import os

import jax
import numpy as np

from medjax.errors import ConfigError
from medjax.explain.batched import explain_images, resolve_options
from medjax.explain.model_fn import model_fn
from medjax.explain.plots import gallery, save_overlays


def split_data(run, name: str):
    from medjax.train.experiment import load_data, pipeline_fns

    splits = load_data(run.config, pipeline_fns(run.config)[0]).dataset.splits
    if name not in splits:
        raise ConfigError(f"unknown --split {name!r}; this run's splits: {', '.join(splits)}")
    return splits[name]


def explain_split(
    run,
    split_name="test",
    method="gradcam",
    out=None,
    stage=None,
    target="predicted",
    limit=16,
    batch_size=None,
    seed=0,
    options=None,
) -> str:
    """maps.npz, `limit` overlays and gallery.png of `method` over a split of `run` in `out`
    (default WORKDIR/explain/SPLIT); returns `out`. Checks everything before writing."""
    if isinstance(target, int) and not 0 <= target < run.num_classes:
        raise ConfigError(f"--target {target}: class indices are 0..{run.num_classes - 1}")
    if run.multi_label:
        raise ConfigError(
            "split galleries of a multi-label run are not supported yet (each image has one map "
            "per finding); explain single images of it with medjax.predict --cam instead"
        )
    out = out or os.path.join(run.workdir, "explain", split_name)
    split = split_data(run, split_name)
    images, labels = np.asarray(split.images, np.float32), np.asarray(split.labels)
    options = dict(options or {})
    batch = batch_size or run.config.eval.batch_size
    sample = images[: min(batch, len(images))]
    # Bad options or stages fail here, before any output.
    resolve_options(method, model_fn(run.model), run.variables, sample, stage, None, options)
    probs = run.predict(images, batch_size=batch)
    targets = {"predicted": probs.argmax(-1), "true": labels}.get(target, target)
    key = jax.random.key(seed)
    maps = explain_images(run, images, method, stage, targets, batch, key, True, **options)
    os.makedirs(out, exist_ok=True)
    indices = np.arange(len(images))
    np.savez_compressed(
        os.path.join(out, "maps.npz"),
        maps=maps,
        indices=indices,
        labels=labels,
        probs=probs,
        targets=np.broadcast_to(np.asarray(targets), labels.shape),
        method=method,
    )
    n = min(limit, len(images))
    save_overlays(
        out, images[:n], maps[:n], indices[:n], labels[:n], probs[:n], run.class_names, method
    )
    positive = run.config.eval.positive_class if run.num_classes == 2 else None
    gallery(
        os.path.join(out, "gallery.png"),
        images,
        maps,
        labels,
        probs,
        run.class_names,
        method,
        positive,
    )
    print(f"wrote {out}: maps.npz ({len(images)} maps), {n} overlays, gallery.png")
    return out
