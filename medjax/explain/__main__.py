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

from medjax.cli import at_least, main_guard
from medjax.explain import EXPLAINERS
from medjax.explain.split import explain_split
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


if __name__ == "__main__":
    main_guard(main)
