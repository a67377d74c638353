"""Explain a finished run's predictions on one of its data splits.

    python -m medjax.explain --workdir W --split test --method gradcam --out W/explain

writes OUT/<split>/<index>_<label>_<pred>.png (image | map | overlay, for the first --limit
images), OUT/<split>/maps.npz (maps, indices, labels, probs, targets of the whole split) and
OUT/<split>/gallery.png (true positives, false positives, false negatives of
config.eval.positive_class; correct and wrong for more than two classes).
"""

import argparse
import ast
import os

import jax
import numpy as np

from medjax.cli import at_least, main_guard
from medjax.errors import ConfigError
from medjax.explain import EXPLAINERS
from medjax.explain.batched import explain_images, resolve_options
from medjax.explain.model_fn import model_fn
from medjax.explain.plots import gallery, save_overlays
from medjax.inference import load_run


def parse_target(text: str):
    if text in ("predicted", "true"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use predicted, true or a class index"
        ) from None


def parse_option(text: str):
    name, eq, value = text.partition("=")
    if not eq:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=VALUE, e.g. steps=32")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="the folder of a finished run")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--method", default="gradcam", help=", ".join(EXPLAINERS.names()))
    p.add_argument("--out", help="output folder (default WORKDIR/explain)")
    p.add_argument("--stage", help="stage of the CAM methods (default: the last spatial one)")
    p.add_argument(
        "--target", type=parse_target, default="predicted", help="predicted, true or INDEX"
    )
    p.add_argument("--limit", type=at_least(0), default=16, help="overlay PNGs to write")
    p.add_argument("--batch-size", type=at_least(1), help="default config.eval.batch_size")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed of smoothgrad's noise")
    p.add_argument(
        "--option",
        type=parse_option,
        action="append",
        default=[],
        help="a method option NAME=VALUE, repeatable (e.g. steps=32, window=6, noise=0.2)",
    )
    return p


def split_data(run, name: str):
    from medjax.train.experiment import load_data, pipeline_fns

    splits = load_data(run.config, pipeline_fns(run.config)[0]).dataset.splits
    if name not in splits:
        raise ConfigError(f"unknown --split {name!r}; this run's splits: {', '.join(splits)}")
    return splits[name]


def main(argv):
    args = parser().parse_args(argv)
    EXPLAINERS.get(args.method)  # a misspelt method fails before any loading
    run = load_run(args.workdir)
    out = os.path.join(args.out or os.path.join(args.workdir, "explain"), args.split)
    explain_split(
        run,
        args.split,
        args.method,
        out,
        args.stage,
        args.target,
        args.limit,
        args.batch_size,
        args.seed,
        dict(args.option),
    )


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


if __name__ == "__main__":
    main_guard(main)
