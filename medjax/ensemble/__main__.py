"""Combine finished runs into an output-level ensemble.

python -m medjax.ensemble --workdirs A B C --method soft|hard|stacking --workdir OUT

Each of A B C is the workdir of a finished `python -m medjax.run` (or of an earlier ensemble);
they must have predicted the same val and test images of the same classes, prepared alike.
OUT gets results.json, run_card.json, ensemble.json and predictions/ (README, "Ensembles").
To train the members first, write an ensemble config and run it with `python -m medjax.run`.
"""

import argparse
import os

from medjax.cli import at_least, main_guard


def _interval(ci) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def summary(results: dict, workdir: str) -> str:
    """The one-line report `python -m medjax.run` also prints for an ensemble config."""
    test, ci = results["test"], results["test"].get("ci95", {})
    return (
        f"{results['method']} ensemble of {len(results['members'])} runs, test: accuracy "
        f"{test['accuracy']:.3f}{_interval(ci.get('accuracy'))}, AUC {test['auc']:.3f}"
        f"{_interval(ci.get('auc'))}, balanced accuracy {test['balanced_accuracy']:.3f}; "
        f"details in {os.path.join(workdir, 'results.json')}"
    )


def main(argv):
    from medjax.ensemble.combine import COMBINERS

    parser = argparse.ArgumentParser(
        prog="python -m medjax.ensemble", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--workdirs", nargs="+", required=True, help="finished runs to combine")
    parser.add_argument(
        "--method", default="soft", help=f"one of {', '.join(COMBINERS.names())} (default soft)"
    )
    parser.add_argument("--workdir", required=True, help="where the ensemble's results go")
    parser.add_argument(
        "--bootstrap", type=at_least(0), default=1000, help="resamples for 95%% intervals"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="bootstrap and stacking folds' seed (default 0)"
    )
    args = parser.parse_args(argv)
    COMBINERS.get(args.method)  # an unknown name fails before any file is read

    from medjax.ensemble.output import combine_workdirs

    results = combine_workdirs(
        args.workdirs, args.method, args.workdir, bootstrap=args.bootstrap, seed=args.seed
    )
    print(summary(results, args.workdir))


if __name__ == "__main__":
    main_guard(main)
