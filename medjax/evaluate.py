"""Evaluate a finished run on other data (external validation).

python -m medjax.evaluate --workdir RUN --out DIR [--split auto|all|train|val|test]
    [--class-map EXTERNAL=RUN,...] [--config.data.KEY=VALUE ...] (or --data.KEY=VALUE)

The other data is the run's data config with the --config.data overrides (e.g.
--config.data.source=image_folder --config.data.path=/other_hospital). The run's own
preprocessing (statistics of its training split), model, temperature and operating point are
applied; DIR/results.json and DIR/plots/ are written (nothing at all on an error).
"""

import argparse
import os

from medjax.cli import main_guard, split_overrides
from medjax.errors import ConfigError
from medjax.eval.external import SPLIT_CHOICES, parse_class_map


def _out_folder(out: str, workdir: str) -> str:
    """`out`, checked before any work: a folder that is not a run's workdir."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out} is a file; pass a folder for results.json and plots/")
    if os.path.abspath(out) == os.path.abspath(workdir) or os.path.exists(
        os.path.join(out, "config.json")
    ):
        raise ConfigError(
            f"--out {out} holds a training run (config.json): its results.json and plots/ would "
            f"be overwritten; choose another folder, e.g. {os.path.join(workdir, 'external')}"
        )
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ConfigError(f"--out {out}: the folder {parent} does not exist; create it first")
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Any config.data key can be overridden with --config.data.KEY=VALUE",
    )
    parser.add_argument("--workdir", required=True, help="the finished run to evaluate")
    parser.add_argument("--out", required=True, help="folder for results.json and plots/")
    parser.add_argument(
        "--split",
        choices=SPLIT_CHOICES,
        default="auto",
        help="auto (default): the data's own test split when it has one, else all its images; "
        "all: every image; train/val/test: that split as a run on this data would make it",
    )
    parser.add_argument(
        "--class-map",
        default="",
        help="EXTERNAL=RUN,... when the external class names differ from the run's",
    )
    return parser


def main(argv):
    # --data.KEY=V is short for --config.data.KEY=V: only data keys may change here.
    argv = [f"--config.{a[2:]}" if a.startswith("--data.") else a for a in argv]
    rest, overrides = split_overrides(argv)
    args = _parser().parse_args(rest)
    out = _out_folder(args.out, args.workdir)
    class_map = parse_class_map(args.class_map)
    from medjax.eval import external, plots  # after the argument errors: JAX import is slow
    from medjax.inference import load_run
    from medjax.train.consistency import decision_rule
    from medjax.train.workdir import write_json

    run = load_run(args.workdir)
    config = external.data_config(run, overrides)
    raw, labels, names, origin, how = external.load_split(config.data, args.split)
    labels = external.match_classes(labels, names, run.class_names, class_map)
    print(f"external data: {origin}: {how}")
    probs = run.predict(external.preprocess(run, raw, origin))
    results = {
        "run": os.path.abspath(args.workdir),
        "data": {
            "origin": origin,
            "taken": how,
            "overrides": {f"data.{k[5:]}": v for k, v in overrides},
            "class_map": class_map,
            "class_names": run.class_names,
            "num_examples": int(len(labels)),
        },
        **external.evaluate(run, labels, probs),
    }
    results["warnings"] = decision_rule(
        results["uncalibrated"], "external", run.config.eval.decision_margin
    )
    for warning in results["warnings"]:
        print(f"warning: {warning}")
    os.makedirs(os.path.join(out, "plots"), exist_ok=True)
    write_json(os.path.join(out, "results.json"), results)
    _plot(plots, os.path.join(out, "plots"), run, labels, probs, results)
    m = results["uncalibrated"]
    cal = results.get("calibrated")
    print(
        f"external: accuracy {m['accuracy']:.3f}, AUC {m['auc']:.3f}, balanced accuracy "
        f"{m['balanced_accuracy']:.3f}, ECE {m['ece']:.3f}"
        + (f" ({cal['ece']:.3f} at the run's temperature {cal['temperature']:.3f})" if cal else "")
        + f"; details in {os.path.join(out, 'results.json')}"
    )


def _plot(plots, folder, run, labels, probs, results) -> None:
    point, cal = results["operating_point"], results.get("calibrated")
    extras = {
        "operating_point": point if "threshold" in point else None,
        "calibration": cal and {"reliability_after": cal["reliability"], "ece_after": cal["ece"]},
    }
    plots.write_evaluation_plots(
        folder,
        labels,
        probs,
        run.class_names,
        run.config.eval.positive_class,
        results["uncalibrated"],
        extras,
    )


if __name__ == "__main__":
    main_guard(main)
