"""config.vectorize: seeds, and hyperparameters, trained together in one program match separate
runs."""

import json
import os
import pathlib

import chex
import jax
import numpy as np
import pytest

from medjax.errors import ConfigError, Interrupted, TrainingError
from medjax.sweep import load_sweep, runner
from medjax.sweep.__main__ import main
from medjax.train import loop
from medjax.train.checkpoint import Checkpoints
from medjax.train.loop import train_and_evaluate, train_and_evaluate_runs
from tests.conftest import interrupt_at, tiny_config
from tests.test_sweep import SWEEP_FILE, _fake_train, _rows

# SGD: its steps are proportional to the gradients, so the rounding differences of a vmapped
# step on a GPU stay small; Adam's early, sign-like steps magnify them (see _close).
CHANGES = {
    "vectorize": ("seed",),
    "optimizer.name": "sgd",
    "optimizer.learning_rate": 0.05,
    "data.augment": ("random_flip()", "random_affine(rotate=10)"),
    "data.mix": "mixup(alpha=0.2)",
    "model.dropout": 0.2,
    "train.ema_decay": 0.9,
}


def _params(workdir):
    ckpts = Checkpoints(os.path.join(workdir, "checkpoints"), 2, "auc", "max")
    state = ckpts.saved_state(ckpts.latest_step())
    ckpts.close()
    return state["params"]


def _close(a, b):
    if jax.default_backend() == "cpu":  # K unrolled copies of the step: the same arithmetic
        chex.assert_trees_all_equal(a, b)
    else:
        # vmap makes K convolutions one grouped convolution, rounded otherwise (TF32 by
        # default on recent NVIDIA GPUs): on an H200 these 12 steps ended up to 1.3e-3
        # apart; even two plain runs differ there (by 0.2% of a weight's scale), as GPUs
        # do not repeat runs bit for bit by default.
        chex.assert_trees_all_close(a, b, rtol=1e-2, atol=2e-3)


def test_vectorized_seeds_match_separate_runs_and_resume_exactly(tmp_path):
    """Two seeds trained together, interrupted and resumed, end where each seed alone ends."""
    configs = [tiny_config(seed=s, **CHANGES) for s in (0, 1)]
    dirs = [str(tmp_path / f"seed{s}") for s in (0, 1)]
    with pytest.raises(Interrupted):
        train_and_evaluate_runs(configs, dirs, hooks=[interrupt_at(5)])
    together = train_and_evaluate_runs(configs, dirs)
    alone = train_and_evaluate(configs[1], str(tmp_path / "alone1"))
    assert together[1]["selected_step"] == alone["selected_step"]
    for split in ("val", "test"):
        assert together[1][split]["auc"] == pytest.approx(alone[split]["auc"], abs=2e-3)
    _close(_params(dirs[1]), _params(str(tmp_path / "alone1")))
    # The seeds really differ, and each run's workdir is a complete run of its own.
    p0, p1 = jax.tree.leaves(_params(dirs[0])), jax.tree.leaves(_params(dirs[1]))
    assert not all(np.allclose(a, b) for a, b in zip(p0, p1, strict=True))
    for d, s in zip(dirs, (0, 1), strict=True):
        card = json.loads(pathlib.Path(d, "run_card.json").read_text())
        assert card["seed"] == s and card["trained_together"] == 2
        assert card["resumed_from_step"] == 5
        assert json.loads(pathlib.Path(d, "config.json").read_text())["seed"] == s


HPARAMS = ("optimizer.learning_rate", "optimizer.weight_decay", "loss.label_smoothing")
GRID = [  # with SGD, as CHANGES says why
    {"optimizer.learning_rate": 0.03, "optimizer.weight_decay": 0.0, "loss.label_smoothing": 0.0},
    {"optimizer.learning_rate": 0.1, "optimizer.weight_decay": 1e-3, "loss.label_smoothing": 0.1},
]


def _logged_rates(workdir) -> dict:
    lines = pathlib.Path(workdir, "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    return {r["step"]: r["learning_rate"] for r in rows if "learning_rate" in r}


def test_vectorized_hyperparameters_match_separate_runs_and_go_on_alone(tmp_path):
    """Learning rate, weight decay and label smoothing differ between runs of one program; a
    group interrupted and continued run by run (the sweep's fallback when a group fails)
    restores each run's own values from its checkpoint and ends where a plain run ends."""
    sgd = {"optimizer.name": "sgd", "optimizer.schedule": "cosine"}
    configs = [tiny_config(**{"vectorize": HPARAMS, **sgd, **g}) for g in GRID]
    dirs = [str(tmp_path / f"run{i}") for i in (0, 1)]
    with pytest.raises(Interrupted):  # stacked for half the run
        train_and_evaluate_runs(configs, dirs, hooks=[interrupt_at(6)])
    results = [train_and_evaluate(c, d) for c, d in zip(configs, dirs, strict=True)]
    plain_dir = str(tmp_path / "plain1")
    plain = train_and_evaluate(tiny_config(**sgd, **GRID[1]), plain_dir)  # no vectorize at all
    assert results[1]["selected_step"] == plain["selected_step"]
    for split in ("val", "test"):
        assert results[1][split]["auc"] == pytest.approx(plain[split]["auc"], abs=2e-3)
    _close(_params(dirs[1]), _params(plain_dir))
    # each run follows its own schedule, and logs it
    rates, plain_rates = _logged_rates(dirs[1]), _logged_rates(plain_dir)
    assert len(rates) >= 4 and all(rates[s] == pytest.approx(plain_rates[s]) for s in rates)
    assert _logged_rates(dirs[0])[2] < rates[2]


def test_vectorize_refuses_what_it_cannot_stack():
    with pytest.raises(ConfigError, match="cannot be vectorized"):
        train_and_evaluate_runs(
            [tiny_config(vectorize=("model.widths",))] * 2, ["/nonexistent/a", "/nonexistent/b"]
        )
    a = tiny_config(vectorize=("seed",), seed=0)
    b = tiny_config(**{"vectorize": ("seed",), "seed": 1, "optimizer.learning_rate": 0.1})
    with pytest.raises(ConfigError, match="optimizer.learning_rate"):
        train_and_evaluate_runs([a, b], ["/nonexistent/a", "/nonexistent/b"])


def test_vectorized_seeds_train_together_and_a_failing_group_goes_on_one_by_one(
    tmp_path, monkeypatch
):
    sweep_file = tmp_path / "tiny_sweep.py"
    sweep_file.write_text(SWEEP_FILE)
    sweep_file = str(sweep_file)
    argv = ["--config", sweep_file, "--workdir", str(tmp_path / "w"), "--config.vectorize=seed"]
    real_runs, groups_seen = loop.train_and_evaluate_runs, []

    def record(configs, workdirs, overwrite=False, hooks=(), experiments=None):
        groups_seen.append(sorted(os.path.basename(w) for w in workdirs))
        return real_runs(configs, workdirs, overwrite, hooks, experiments)

    monkeypatch.setattr(loop, "train_and_evaluate_runs", record)
    main(argv)
    assert groups_seen == [
        ["optimizer.name=adam,seed=0", "optimizer.name=adam,seed=1"],
        ["optimizer.name=sgd,seed=0", "optimizer.name=sgd,seed=1"],
    ]
    rows = _rows(tmp_path / "w/summary.csv")
    assert [r["status"] for r in rows] == ["finished"] * 4
    card = json.loads((tmp_path / "w/runs/optimizer.name=sgd,seed=1/run_card.json").read_text())
    assert card["trained_together"] == 2 and card["seed"] == 1

    # A group that fails (one seed diverges) is retried run by run: only that run fails.
    def diverge(configs, workdirs, overwrite=False, hooks=(), experiments=None):
        raise TrainingError("the loss stopped being finite")

    train, calls = _fake_train({"optimizer.name=adam,seed=1": TrainingError("not finite")})
    monkeypatch.setattr(loop, "train_and_evaluate_runs", diverge)
    monkeypatch.setattr(loop, "train_and_evaluate", train)
    with pytest.raises(TrainingError, match="1 of 4 runs failed"):
        main([*argv[:3], str(tmp_path / "w2"), argv[4]])
    assert sorted(calls) == sorted(r["run"] for r in _rows(tmp_path / "w/summary.csv"))
    status = {r["run"]: r["status"] for r in _rows(tmp_path / "w2/summary.csv")}
    assert status["optimizer.name=adam,seed=1"] == "failed"
    assert list(status.values()).count("finished") == 3


LR_BY_SEED = """
from medjax.configs import get_base_config
from medjax.sweep import product

def get_config(arg=None):
    return get_base_config().lock()

def sweep(arg=None):
    return product(
        optimizer__learning_rate=[1e-3, 1e-2], model__activation=["relu", "tanh"], seed=range(2)
    )
"""


def test_a_learning_rate_by_seed_grid_is_grouped_by_what_else_differs(tmp_path, capsys):
    """With learning rate and seed vectorized, the runs of each activation form one group."""
    path = tmp_path / "lr_sweep.py"
    path.write_text(LR_BY_SEED)
    vectorize = "('seed', 'optimizer.learning_rate')"
    sweep = load_sweep(str(path), [("vectorize", vectorize)])
    assert len(sweep.runs) == 8
    groups = runner.groups(sweep.runs, str(tmp_path))
    assert sorted(len(g) for g in groups) == [4, 4]
    for group in groups:
        assert len({r.config.model.activation for r in group}) == 1
    main(["--config", str(path), "--workdir", str(tmp_path / "w"), "--dry-run"])
    main(["--config", str(path), "--workdir", str(tmp_path / "w"), "--dry-run",
          f"--config.vectorize={vectorize}"])  # fmt: skip
    said = capsys.readouterr().out
    assert said.count("stacked groups") == 1 and "8 of them in 2 stacked groups of 4, 4" in said
