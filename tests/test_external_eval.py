"""A run's plots and post-hoc results, and `python -m medjax.evaluate` on other data."""

import json
import os

import pytest

from medjax.cli import main_guard
from medjax.evaluate import main
from medjax.inference import load_run
from medjax.train import workdir as wd

PLOTS = {"roc_pr.png", "confusion_matrix.png", "reliability.png"}


@pytest.fixture(scope="module")
def trained(phantom_run):
    """The shared tiny run (with its plots): nothing here writes into its workdir."""
    assert phantom_run.config.log.plots
    return phantom_run.workdir, phantom_run.results


def _evaluate(argv, capsys=None):
    main_guard(main, argv)
    return capsys.readouterr() if capsys else None


def test_a_run_writes_plots_an_operating_point_and_a_temperature(trained):
    workdir, results = trained
    assert set(os.listdir(os.path.join(workdir, "plots"))) == PLOTS | {"learning_curves.png"}
    point, cal = results["operating_point"], results["calibration"]
    assert point["method"] == "youden" and 0 < point["threshold"] < 1
    assert point["test"]["num_examples"] == results["test"]["num_examples"] == 64
    assert load_run(workdir).temperature == cal["temperature"] > 0
    assert cal["test_ece_before"] == results["test"]["ece"]
    assert cal["val_nll_after"] <= cal["val_nll_before"]
    assert "plots" in wd.OUTPUTS  # --overwrite removes them with the run


def test_external_evaluation_of_the_runs_own_test_split_reproduces_its_results(trained, tmp_path):
    workdir, results = trained
    out = tmp_path / "same"
    _evaluate(["--workdir", workdir, "--out", str(out)])
    ext = json.loads((out / "results.json").read_text())
    assert "the test split" in ext["data"]["taken"]
    for key in ("accuracy", "auc", "pr_auc", "ece", "brier", "confusion_matrix", "ci95"):
        assert ext["uncalibrated"][key] == results["test"][key], key
    assert ext["operating_point"]["metrics"] == results["operating_point"]["test"]
    assert ext["calibrated"]["ece"] == pytest.approx(results["calibration"]["test_ece_after"])
    assert set(os.listdir(out / "plots")) == PLOTS


def test_external_evaluation_on_mri_noise_writes_results_and_plots(trained, tmp_path):
    workdir, _ = trained
    out = tmp_path / "mri"
    _evaluate(["--workdir", workdir, "--out", str(out), "--data.modality=mri"])  # short form
    ext = json.loads((out / "results.json").read_text())
    assert "mri" in ext["data"]["origin"] and ext["data"]["num_examples"] == 64
    assert {"uncalibrated", "calibrated", "operating_point"} <= set(ext)
    assert set(os.listdir(out / "plots")) == PLOTS


def test_other_class_names_fail_with_both_sets_unless_mapped(trained, tmp_path, capsys):
    workdir, _ = trained
    out = tmp_path / "three"
    argv = ["--workdir", workdir, "--out", str(out), "--config.data.num_classes=3"]
    with pytest.raises(SystemExit) as exit_:
        _evaluate(argv)
    message = capsys.readouterr().err
    assert exit_.value.code == 2 and message.count("\n") == 1
    assert "['no_lesion', 'lesion_1', 'lesion_2']" in message
    assert "the run's classes: ['no_lesion', 'lesion_1']" in message and "--class-map" in message
    assert not out.exists()
    _evaluate([*argv, "--class-map", "lesion_2=lesion_1"])
    ext = json.loads((out / "results.json").read_text())
    assert ext["data"]["class_map"] == {"lesion_2": "lesion_1"}
    assert len(ext["uncalibrated"]["confusion_matrix"]) == 2


@pytest.mark.parametrize("extra", [[], ["--config.model.name=resnet18"]])
def test_no_finished_run_or_a_model_override_fails_clearly(tmp_path, capsys, trained, extra):
    empty = tmp_path / "empty"
    empty.mkdir()
    workdir = trained[0] if extra else str(empty)
    with pytest.raises(SystemExit):
        _evaluate(["--workdir", workdir, "--out", str(tmp_path / "out"), *extra])
    message = capsys.readouterr().err
    expected = "only --config.data" if extra else "has no finished run: results.json is missing"
    assert expected in message and not (tmp_path / "out").exists()


def test_out_folder_holding_a_run_is_refused(trained, capsys):
    workdir, _ = trained
    with pytest.raises(SystemExit):
        _evaluate(["--workdir", workdir, "--out", workdir])
    assert "holds a training run" in capsys.readouterr().err
