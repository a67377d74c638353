"""k-fold cross-validation in a sweep (python -m medjax.sweep --folds K, medjax.sweep.folds)."""

import json
import os
import textwrap

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medjax.errors import ConfigError
from medjax.sweep import load_sweep
from medjax.sweep.__main__ import main
from medjax.sweep.runner import run_dir
from medjax.train import predictions

from .conftest import ROOT

# One setting of runs of a second or two: phantom data, a 2-stage CNN of 4 and 8 channels.
SWEEP_FILE = textwrap.dedent(
    """
    from medjax.configs import get_base_config

    def get_config(arg=None):
        c = get_base_config()
        c.data.num_train, c.data.num_val, c.data.num_test = 64, 32, 32
        c.model.widths = (4, 8)
        c.train.batch_size = 16
        c.train.num_steps = 6
        c.train.log_every_steps = 2
        c.train.eval_every_epochs = 0.5
        c.eval.batch_size = 32
        c.eval.bootstrap_samples = 10
        c.eval.gap_check = False
        return c.lock()

    def sweep(arg=None):
        return [{"seed": 0}]
    """
)


@pytest.fixture
def sweep_file(tmp_path):
    path = tmp_path / "folds_sweep.py"
    path.write_text(SWEEP_FILE)
    return str(path)


def test_folds_expand_every_run_once_per_fold(sweep_file):
    sweep = load_sweep(sweep_file, folds=3)
    assert [r.name for r in sweep.runs] == [
        f"data.num_folds=3,data.fold={f},seed=0" for f in range(3)
    ]
    assert [(r.config.data.num_folds, r.config.data.fold) for r in sweep.runs] == [
        (3, 0),
        (3, 1),
        (3, 2),
    ]
    with pytest.raises(ConfigError, match="2 or more folds"):
        load_sweep(sweep_file, folds=1)


def test_folds_cross_validate_a_plain_experiment_file():
    spec = f"{ROOT}/experiments/phantom_cnn.py:runlocal"
    with pytest.raises(ConfigError, match="--folds K"):
        load_sweep(spec)
    names = [r.name for r in load_sweep(spec, folds=2).runs]
    assert names == ["data.num_folds=2,data.fold=0", "data.num_folds=2,data.fold=1"]


def test_sweep_pools_the_out_of_fold_predictions(sweep_file, tmp_path):
    workdir = str(tmp_path / "w")
    main(["--config", sweep_file, "--workdir", workdir, "--folds", "3"])
    with open(os.path.join(workdir, "folds.json")) as f:
        (row,) = json.load(f)["settings"]
    assert row["setting"] == {"data.num_folds": "3", "seed": "0"}
    assert row["folds_finished"] == [0, 1, 2]
    names = [f"data.num_folds=3,data.fold={f},seed=0" for f in range(3)]
    parts = [predictions.load_split(run_dir(workdir, n), "val") for n in names]
    probs = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    # the held-out folds partition train+val: every one of its 96 images predicted once
    assert row["pooled"]["images"] == len(labels) == 96
    np.testing.assert_allclose(row["pooled"]["auc"], roc_auc_score(labels, probs[:, 1]))
    lo, hi = row["pooled"]["auc_ci95"]
    assert lo <= row["pooled"]["auc"] <= hi
    val_aucs = []
    for n, (_, y) in zip(names, parts, strict=True):
        with open(os.path.join(run_dir(workdir, n), "results.json")) as f:
            results = json.load(f)
        assert results["val"]["num_examples"] == len(y)
        val_aucs.append(results["val"]["auc"])
    across = row["across_folds"]["val_auc"]
    np.testing.assert_allclose(
        [across["mean"], across["sd"]], [np.mean(val_aucs), np.std(val_aucs, ddof=1)]
    )
    with open(os.path.join(workdir, "summary.md")) as f:
        assert "## Cross-validation" in f.read()
