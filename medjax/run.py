"""Train and evaluate one experiment.

python -m medjax.run --config experiments/NAME.py[:args] --workdir DIR [--config.KEY=VALUE]

Several processes (hosts) train one run: start the same command in each with --coordinator,
--num-processes and --process-id, through `python -m medjax.launch --nproc N -- ...` on one
machine, or `srun ... python -m medjax.run --distributed ...` on SLURM (README, "Scaling").
"""

import json
import os

from medjax import hosts
from medjax.cli import base_parser, config_from_args, main_guard, split_overrides


def _interval(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def main(argv):
    rest, overrides = split_overrides(argv)
    parser = base_parser(__doc__)
    parser.add_argument("--workdir", required=True, help="where checkpoints and results go")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete an earlier run with a different config in --workdir (only the files a "
        "medjax run writes; anything else there is refused)",
    )
    hosts.add_arguments(parser)
    args = parser.parse_args(rest)
    config = config_from_args(args, overrides)

    if config.ensemble.members:  # an output-level ensemble: its members, then their combination
        run_ensemble(config, args, overrides)
        return
    hosts.initialize(args)  # several processes: before JAX touches a device
    from medjax.report.experiment import describe
    from medjax.train.loop import train_and_evaluate  # after config errors: JAX import is slow

    results = train_and_evaluate(
        config, args.workdir, overwrite=args.overwrite, experiment=describe(args.config, overrides)
    )
    if not hosts.is_main():
        return
    test = results["test"]
    ci = test.get("ci95", {})
    if "segmentation" in results:
        seg = results["segmentation"]["test"]
        ci_seg = seg.get("ci95", {})
        print(
            f"segmenter test: Dice {seg['dice']:.3f} {_interval(ci_seg.get('dice'))}, IoU "
            f"{seg['iou']:.3f} {_interval(ci_seg.get('iou'))}"
        )
    print(
        f"test: accuracy {test['accuracy']:.3f} {_interval(ci.get('accuracy'))}, "
        f"AUC {test['auc']:.3f} {_interval(ci.get('auc'))}, balanced accuracy {test['balanced_accuracy']:.3f} "
        f"(checkpoint of step {results['selected_step']}, chosen by {results['selected_by']}); "
        f"details in {os.path.join(args.workdir, 'results.json')}"
    )
    if results["warnings"]:
        print(
            f"{len(results['warnings'])} warning(s) about this result: see above, and results.json"
        )
    with open(os.path.join(args.workdir, "run_card.json")) as f:
        timings = json.load(f)["timings"]
    print(f"run card: {os.path.join(args.workdir, 'run_card.json')} ({timings})")


def run_ensemble(config, args, overrides) -> None:
    from medjax.ensemble.__main__ import summary
    from medjax.ensemble.from_config import run_ensemble as train_and_combine
    from medjax.report.experiment import describe

    experiment = describe(args.config, overrides)
    results = train_and_combine(config, args.workdir, args.overwrite, experiment)
    print(summary(results, args.workdir))


if __name__ == "__main__":
    main_guard(main)
