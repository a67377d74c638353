"""What a run fits on its validation predictions after training, and its figures.

`fit_and_report` adds results["operating_point"] (binary tasks: medjax.eval.operating_point)
and results["calibration"] (eval.calibrate: medjax.eval.calibration's temperature), both
fitted on validation only and then evaluated on test. `plot_run` draws the test split's
figures and the learning curves into WORKDIR/plots/.
"""

import os

from medjax.eval import calibration, multilabel, operating_point, plots


def fit_and_report(labels: dict, probs: dict, config, num_classes: int) -> dict:
    """{"operating_point": ..., "calibration": ...} of one run: labels/probs by split name,
    "val" the one fitted on."""
    cfg = config.eval
    if labels["val"].ndim == 2:  # multi-label: a threshold per finding, no temperature
        return {
            "operating_point": multilabel.threshold_report(
                labels, probs, cfg.bootstrap_samples, config.seed
            )
        }
    point = operating_point.report(
        labels, probs, cfg, num_classes, cfg.bootstrap_samples, config.seed
    )
    out = {"operating_point": point}
    if cfg.calibrate:
        out["calibration"] = calibration.temperature_report(
            labels, probs, cfg.ece_bins, cfg.positive_class
        )
        if "threshold" in point:
            point["threshold_calibrated"] = operating_point.calibrated_threshold(
                point["threshold"], out["calibration"]["temperature"], cfg.positive_class
            )
    return out


def plot_extras(results: dict, split: str) -> dict:
    """The operating point and calibration of `split` as write_evaluation_plots takes them."""
    point, cal = results.get("operating_point", {}), results.get("calibration")
    return {
        "operating_point": (
            {"threshold": point["threshold"], "metrics": point[split]}
            if "threshold" in point
            else None
        ),
        "calibration": cal
        and {
            "reliability_after": cal[f"{split}_reliability_after"],
            "ece_after": cal[f"{split}_ece_after"],
        },
    }


def plot_run(workdir, results, labels, probs, class_names, config, metric_rows) -> list[str]:
    """WORKDIR/plots/: the test split's ROC/PR, confusion matrix and reliability diagram, and
    the learning curves."""
    folder = os.path.join(workdir, "plots")
    positive = config.eval.positive_class
    paths = plots.write_evaluation_plots(
        folder, labels, probs, class_names, positive, results["test"], plot_extras(results, "test")
    )
    curves = plots.learning_curves(
        folder, metric_rows, config.train.select_metric, results.get("selected_step")
    )
    return paths + ([curves] if curves else [])
