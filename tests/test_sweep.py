import csv
import json
import os
import shlex
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
from scipy import stats as sps

from medjax.cli import config_from_args, split_overrides
from medjax.configs import config_diff
from medjax.errors import ConfigError, TrainingError, WorkdirError
from medjax.sweep import grid, load_sweep, modes, product, runner, stats
from medjax.sweep.__main__ import main
from medjax.sweep.summary import write_summary
from medjax.train import loop
from medjax.train import workdir as wd

from .conftest import ROOT, interrupt_at

ABLATIONS = sorted((ROOT / "experiments" / "ablations").glob("*.py"))
SMOKE = f"{ROOT / 'experiments/ablations/breastmnist_optimizer_activation.py'}:smoke"

# A sweep of runs of a second or two: phantom data, a 2-stage CNN of 4 and 8 channels.
SWEEP_FILE = textwrap.dedent(
    """
    from medjax.configs import get_base_config, parse_arg
    from medjax.sweep import product

    REFERENCE = {"optimizer.name": "adam"}

    def get_config(arg=None):
        parse_arg(arg, runs=4, bad="")
        c = get_base_config()
        c.data.num_train, c.data.num_val, c.data.num_test = 64, 32, 32
        c.model.widths = (4, 8)
        c.train.batch_size = 16
        c.train.num_steps = 6
        c.train.log_every_steps = 2
        c.train.eval_every_epochs = 0.5
        c.eval.batch_size = 32
        c.eval.bootstrap_samples = 10
        return c.lock()

    def sweep(arg=None):
        arg = parse_arg(arg, runs=4, bad="")
        runs = product(optimizer__name=["adam", "sgd"], seed=range(2))[: arg.runs]
        if arg.bad == "key":
            runs.append({"optimiser.name": "sgd", "seed": 0})
        elif arg.bad == "name":
            runs.append({"optimizer.name": "adamm", "seed": 0})
        return runs
    """
)


@pytest.fixture
def sweep_file(tmp_path):
    path = tmp_path / "tiny_sweep.py"
    path.write_text(SWEEP_FILE)
    return str(path)


def _fake_train(fail=()):
    """Stands in for train_and_evaluate: claims the workdir as it does, writes made-up results
    (adam better than sgd, seed adds a little), or raises what `fail` maps the run to."""
    calls = []

    def train(config, workdir, overwrite=False, hooks=(), experiment=None):
        name = os.path.basename(workdir)
        calls.append(name)
        wd.make(workdir)
        wd.claim(workdir, config, overwrite)
        if name in dict(fail):
            raise dict(fail)[name]
        auc = 0.7 + 0.1 * (config.optimizer.name == "adam") + 0.01 * config.seed
        _write_run(workdir, auc, auc - 0.05, 0.6 + 0.01 * config.seed)
        return {}

    return train, calls


def _write_run(path, val_auc, test_auc, test_acc, steps=(2, 4, 6)):
    os.makedirs(path, exist_ok=True)
    wd.write_json(
        os.path.join(path, "results.json"),
        {
            "selected_step": steps[-1],
            "val": {"auc": val_auc, "accuracy": 0.5, "confusion_matrix": [[1, 0], [0, 1]]},
            "test": {"auc": test_auc, "accuracy": test_acc, "ci95": {"auc": [0, 1]}},
        },
    )
    wd.write_json(
        os.path.join(path, "run_card.json"),
        {"timings": {"wall_s": 1.5, "train_images_per_s": 900.0}},
    )
    for i, step in enumerate(steps):
        wd.append_jsonl(os.path.join(path, "metrics.jsonl"), {"step": step, "loss": 1.0 / (i + 1)})
        wd.append_jsonl(
            os.path.join(path, "metrics.jsonl"),
            {"step": step, "split": "val", "auc": val_auc * (i + 1) / len(steps)},
        )


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_product_names_and_factors():
    assert product({"a.b": [1, 2]}, c__d=["x"]) == [{"a.b": 1, "c.d": "x"}, {"a.b": 2, "c.d": "x"}]
    linked = product({"opt": [{"o.name": "sgd", "o.lr": 0.01}, {"o.name": "adam", "o.lr": 1e-3}]})
    assert linked == [{"o.name": "sgd", "o.lr": 0.01}, {"o.name": "adam", "o.lr": 0.001}]
    texts = {
        k: grid.as_text(v) for k, v in {"seed": 1, "m.w": (8, 16), "d.aug": "flip(p=1)"}.items()
    }
    assert texts["m.w"] == "(8, 16)" and grid.run_name(texts) == "m.w=8_16,d.aug=flip_p_1,seed=1"
    long = grid.run_name({"k": "x" * 300})
    assert len(long) == grid._MAX_NAME and long != grid.run_name({"k": "x" * 301})
    runs = product({"opt": linked, "act": ["relu", "tanh"], "seed": range(2)})
    settings = [
        grid.PlannedRun("", {k: grid.as_text(v) for k, v in r.items()}).setting for r in runs
    ]
    # o.lr follows from o.name: one factor, so optimizer x activation stays two-dimensional
    assert grid.factors(list(dict.fromkeys(settings))) == ["o.name", "act"]


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.name)
def test_shipped_ablations_expand_and_check(path):
    full, smoke = load_sweep(str(path)), load_sweep(f"{path}:smoke")
    assert len(full.runs) == 7 * 6 * 3 and len(smoke.runs) == 8
    optimizers = ["adam", "sgd", "nesterov", "rmsprop", "adadelta", "adamax", "adagrad"]
    assert {r.config.optimizer.name for r in full.runs} == set(optimizers)
    activations = {"relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid"}
    assert {r.config.model.activation for r in full.runs} == activations
    adadelta = next(r for r in full.runs if r.config.optimizer.name == "adadelta")
    assert adadelta.config.optimizer.learning_rate == 1.0
    reference = {"optimizer.name": "adam", "optimizer.learning_rate": "0.001"}
    assert dict(full.reference) == {**reference, "model.activation": "relu"}
    assert smoke.runs[0].config.data.source == "phantom"
    assert "Command:" in path.read_text() and "Result" in path.read_text()


@pytest.mark.parametrize(
    "bad, message",
    [
        ("key", "'optimiser.name', which is not a config key. Did you mean 'optimizer.name'"),
        ("name", "run optimizer.name=adamm,seed=0: unknown optimizer 'adamm'"),
    ],
)
def test_a_bad_run_fails_before_any_run_starts(sweep_file, tmp_path, monkeypatch, bad, message):
    train, calls = _fake_train()
    monkeypatch.setattr(loop, "train_and_evaluate", train)
    with pytest.raises(ConfigError, match=message):
        main(["--config", f"{sweep_file}:bad={bad}", "--workdir", str(tmp_path / "w")])
    assert calls == [] and not (tmp_path / "w").exists()


def test_dry_run_lists_runs_and_writes_nothing(tmp_path, capsys):
    main(["--config", SMOKE, "--workdir", str(tmp_path / "w"), "--dry-run"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("8 runs (4 settings)")
    name = "optimizer.name=adam,optimizer.learning_rate=0.001,model.activation=relu,seed=0"
    assert out[1].split() == ["pending", str(tmp_path / "w/runs" / name)]
    assert len(out) == 9 and not (tmp_path / "w").exists()


def test_interrupted_sweep_resumes_where_it_stopped(sweep_file, tmp_path, monkeypatch):
    real, calls = loop.train_and_evaluate, []

    def interrupt_second_run(config, workdir, overwrite=False, hooks=(), experiment=None):
        calls.append(os.path.basename(workdir))
        hooks = [interrupt_at(3)] if len(calls) == 2 else []
        return real(config, workdir, overwrite, hooks, experiment=experiment)

    monkeypatch.setattr(loop, "train_and_evaluate", interrupt_second_run)
    argv = ["--config", f"{sweep_file}:runs=3", "--workdir", str(tmp_path / "w")]
    with pytest.raises(
        TrainingError, match="sweep interrupted during run optimizer.name=adam,seed=1"
    ):
        main(argv)
    runs = [r.name for r in load_sweep(f"{sweep_file}:runs=3").runs]
    status = [runner.status_of(runner.run_dir(str(tmp_path / "w"), n)) for n in runs]
    assert status == ["finished", "interrupted", "pending"]
    assert [r["status"] for r in _rows(tmp_path / "w/summary.csv")] == status

    calls.clear()
    monkeypatch.setattr(
        loop, "train_and_evaluate", lambda *a, **k: calls.append(a[1]) or real(*a, **k)
    )
    main(argv)
    assert [os.path.basename(c) for c in calls] == runs[1:]  # the finished run is skipped
    card = json.loads((tmp_path / "w/runs" / runs[1] / "run_card.json").read_text())
    assert card["resumed_from_step"] == 3
    assert [r["status"] for r in _rows(tmp_path / "w/summary.csv")] == ["finished"] * 3
    manifest = json.loads((tmp_path / "w/sweep.json").read_text())
    assert len(manifest["restarted"]) == 1 and len(manifest["runs"]) == 3
    record = json.loads((tmp_path / "w/runs" / runs[2] / "experiment.json").read_text())
    assert record["file"] == os.path.abspath(sweep_file) and record["arg"] == "runs=3"
    assert record["overrides"][-1] == ["seed", "0"]  # the run's own overrides, seed last


def test_failed_runs_are_recorded_and_the_others_go_on(sweep_file, tmp_path, monkeypatch):
    fail = {
        "optimizer.name=sgd,seed=0": TrainingError("the loss stopped being finite by step 4"),
        "optimizer.name=sgd,seed=1": RuntimeError("boom"),
    }
    train, calls = _fake_train(fail)
    monkeypatch.setattr(loop, "train_and_evaluate", train)
    argv = ["--config", sweep_file, "--workdir", str(tmp_path / "w")]
    with pytest.raises(TrainingError, match="2 of 4 runs failed"):
        main(argv)
    assert len(calls) == 4
    rows = {r["run"]: r for r in _rows(tmp_path / "w/summary.csv")}
    assert rows["optimizer.name=sgd,seed=0"]["status"] == "failed"
    assert rows["optimizer.name=sgd,seed=1"]["error"] == "RuntimeError: boom"
    assert rows["optimizer.name=adam,seed=1"]["status"] == "finished"
    md = (tmp_path / "w/summary.md").read_text()
    assert "## Failed runs" in md and "loss stopped being finite by step 4" in md

    train, calls = _fake_train()
    monkeypatch.setattr(loop, "train_and_evaluate", train)
    main(argv)  # the next start retries only the failed ones, and now they succeed
    assert sorted(calls) == sorted(fail)
    assert {r["status"] for r in _rows(tmp_path / "w/summary.csv")} == {"finished"}


def test_a_changed_config_is_refused_unless_overwrite(sweep_file, tmp_path, monkeypatch):
    train, calls = _fake_train()
    monkeypatch.setattr(loop, "train_and_evaluate", train)
    argv = ["--config", f"{sweep_file}:runs=2", "--workdir", str(tmp_path / "w")]
    main(argv)
    with pytest.raises(WorkdirError, match="2 run.*train.num_steps: 6 -> 7.*--overwrite"):
        main([*argv, "--config.train.num_steps=7"])
    calls.clear()
    main([*argv, "--config.train.num_steps=7", "--overwrite"])
    assert len(calls) == 2


def test_statistics_match_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0.8, 0.02, 6), rng.normal(0.78, 0.02, 6)
    d = stats.describe(x)
    lo, hi = sps.t.interval(0.95, 5, loc=x.mean(), scale=sps.sem(x))
    assert d["n"] == 6 and np.allclose(d["ci95"], (lo, hi)) and np.isclose(d["sd"], x.std(ddof=1))
    p = stats.paired(x, y)
    assert np.isclose(p["t_p"], sps.ttest_rel(x, y).pvalue)
    assert np.isclose(p["wilcoxon_p"], sps.wilcoxon(x, y).pvalue)
    assert stats.paired(x[:3], y[:3])["wilcoxon_note"] == "n=3 too small (needs 6)"
    assert stats.describe([0.9])["n"] == 1 and np.isnan(stats.describe([0.9])["sd"])
    assert stats.holm([0.01, 0.04, float("nan"), 0.03]) == pytest.approx(
        [0.03, 0.06, float("nan"), 0.06], nan_ok=True
    )


def _fabricate(workdir, values):
    """A finished 2 x 2 sweep on disk: values[(optimizer, activation)] = (val, test) per seed."""
    runs = []
    for (opt, act), (val, test) in values.items():
        for seed, (v, t) in enumerate(zip(val, test, strict=True)):
            texts = {"optimizer.name": opt, "model.activation": act, "seed": str(seed)}
            name = grid.run_name(texts)
            runs.append({"name": name, "overrides": texts})
            _write_run(runner.run_dir(workdir, name), v, t, 0.8)
    wd.write_json(
        os.path.join(workdir, runner.MANIFEST),
        {
            "config": "x.py",
            "command": "python -m medjax.sweep",
            "started": "today",
            "select": {"metric": "auc", "mode": "max"},
            "reference": {"optimizer.name": "adam", "model.activation": "relu"},
            "runs": runs,
        },
    )


def test_summary_tables_intervals_paired_tests_and_plots(tmp_path):
    rng = np.random.default_rng(1)
    values = {
        ("adam", "relu"): (rng.normal(0.85, 0.01, 6), rng.normal(0.85, 0.02, 6)),
        ("adam", "tanh"): (rng.normal(0.80, 0.01, 6), rng.normal(0.95, 0.02, 6)),  # best test
        ("sgd", "relu"): (rng.normal(0.90, 0.01, 6), rng.normal(0.83, 0.02, 6)),  # best val
        ("sgd", "tanh"): (rng.normal(0.70, 0.01, 3), rng.normal(0.70, 0.02, 3)),
    }
    _fabricate(str(tmp_path), values)
    info = write_summary(str(tmp_path))
    assert info["best"] == "sgd / relu" and info["finished"] == 21  # by validation, not test
    rows = _rows(tmp_path / "summary.csv")
    assert len(rows) == 21 and {"test_auc", "val_accuracy", "wall_s"} <= set(rows[0])
    assert "val_confusion_matrix" not in rows[0]
    md = (tmp_path / "summary.md").read_text()
    test = values[("adam", "tanh")][1]
    lo, hi = sps.t.interval(0.95, 5, loc=test.mean(), scale=sps.sem(test))
    assert f"{test.mean():.3f} ± {test.std(ddof=1):.3f} [{lo:.3f}, {hi:.3f}]" in md
    assert "| **best** | sgd | relu | 6 |" in md and "| reference | adam | relu | 6 |" in md
    ref = values[("adam", "relu")][1]
    t_p = sps.ttest_rel(test, ref).pvalue
    w_p = sps.wilcoxon(test, ref).pvalue
    assert f"| adam / tanh | 6 | {(test - ref).mean():+.3f} | {t_p:.3g} |" in md
    assert f"| {w_p:.3g} |" in md
    assert "| sgd / tanh | 3 |" in md and "n=3 too small (needs 6)" in md
    for image in ("bars.png", "heatmap.png", "curves_val.png", "curves_loss.png"):
        assert (tmp_path / image).stat().st_size > 5000 and f"]({image})" in md


def test_emitted_commands_rebuild_each_runs_config(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")  # the tests' own: a user's would be kept
    workdir = str(tmp_path / "w")
    sweep = load_sweep(SMOKE)
    _write_run(runner.run_dir(workdir, sweep.runs[0].name), 0.9, 0.9, 0.9)  # finished: left out
    main(
        ["--config", SMOKE, "--workdir", workdir, "--emit-commands", "--config.eval.batch_size=32"]
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7
    for line, run in zip(lines, sweep.runs[1:], strict=True):
        argv = shlex.split(line)
        env = dict(a.split("=", 1) for a in argv[:2])
        assert env["JAX_COMPILATION_CACHE_DIR"] == os.path.join(workdir, "jax_cache")
        assert argv[2:5] == [sys.executable, "-m", "medjax.run"]
        rest, overrides = split_overrides(argv[5:])
        assert rest[rest.index("--workdir") + 1] == runner.run_dir(workdir, run.name)
        config = config_from_args(types.SimpleNamespace(config=rest[1]), overrides)
        assert config.eval.batch_size == 32
        with config.unlocked():
            config.eval.batch_size = run.config.eval.batch_size
        assert not config_diff(config, run.config)


def test_submitit_missing_is_one_clear_error_and_a_stub_gets_one_job_per_run(tmp_path, monkeypatch):
    argv = ["--config", SMOKE, "--workdir", str(tmp_path / "w"), "--submitit"]
    monkeypatch.setitem(sys.modules, "submitit", None)  # import fails, installed or not
    with pytest.raises(ConfigError, match="pip install submitit.*--emit-commands"):
        main(argv)
    jobs, params = [], {}

    class Executor:
        def __init__(self, folder):
            params["folder"] = folder

        def update_parameters(self, **kw):
            params.update(kw)

        def batch(self):
            import contextlib

            return contextlib.nullcontext()

        def submit(self, fn, *args):
            jobs.append((fn, args))
            return types.SimpleNamespace(job_id=str(100 + len(jobs)))

    monkeypatch.setitem(sys.modules, "submitit", types.SimpleNamespace(AutoExecutor=Executor))
    main([*argv, "--submitit-param", "timeout_min=30", "--submitit-param", "slurm_partition=gpu"])
    assert params["timeout_min"] == 30 and params["slurm_partition"] == "gpu"
    sweep = load_sweep(SMOKE)
    assert len(jobs) == 8 and all(fn is modes.run_command for fn, _ in jobs)
    assert jobs[0][1][0] == runner.command(sweep, str(tmp_path / "w"), sweep.runs[0])
    manifest = json.loads((tmp_path / "w/sweep.json").read_text())
    assert [s["job_id"] for s in manifest["submitted"]] == [str(i) for i in range(101, 109)]


def test_parallel_slots_get_gpus_round_robin(sweep_file, tmp_path, monkeypatch):
    started = []

    class Proc:  # finishes at once, having written its results
        def __init__(self, argv, env, **kw):
            started.append(env)
            self.returncode = 0 if len(started) != 3 else 2
            if self.returncode == 0:
                _write_run(argv[argv.index("--workdir") + 1], 0.8, 0.8, 0.8)
            else:
                kw["stdout"].write("medjax: error: the loss stopped being finite\n")

        def poll(self):
            return self.returncode

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(modes.subprocess, "Popen", Proc)
    with pytest.raises(TrainingError, match="1 of 4 runs failed"):
        main(["--config", sweep_file, "--workdir", str(tmp_path / "w"), "--parallel", "4"])
    assert [e["CUDA_VISIBLE_DEVICES"] for e in started] == ["0", "1", "0", "1"]
    assert {e["XLA_PYTHON_CLIENT_MEM_FRACTION"] for e in started} == {"0.45"}
    rows = _rows(tmp_path / "w/summary.csv")
    assert [r["error"] for r in rows if r["status"] == "failed"] == [
        "the loss stopped being finite"
    ]


def test_parallel_two_processes_for_real(sweep_file, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-m", "medjax.sweep", "--config", f"{sweep_file}:runs=2"]
        + ["--workdir", str(tmp_path / "w"), "--parallel", "2"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _rows(tmp_path / "w/summary.csv")
    assert [r["status"] for r in rows] == ["finished", "finished"]
    assert all((tmp_path / "w/runs" / r["run"] / "log.txt").exists() for r in rows)
