"""Shared fixtures. Real-data tests need MEDJAX_DATA_DIR: without it they skip; with it set and
a file missing they fail, so CI (which sets it) can never pass by silently skipping them."""

import os
import pathlib
import signal
import subprocess

import pytest

from medjax.configs import get_base_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _cache_in_tmp(tmp_path_factory):
    """Tests (and the commands they start) cache data in a temporary folder, never ~/.cache."""
    old = os.environ.get("MEDJAX_CACHE_DIR")
    os.environ["MEDJAX_CACHE_DIR"] = str(tmp_path_factory.mktemp("medjax-cache"))
    yield
    if old is None:
        os.environ.pop("MEDJAX_CACHE_DIR", None)
    else:
        os.environ["MEDJAX_CACHE_DIR"] = old


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory):
    """One persistent JAX compilation cache for the session (and the commands tests start):
    most tests train the same tiny programs, which then compile once, not once per test.
    Cached executables are XLA's own serialised output, so results do not change."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    folder = str(tmp_path_factory.mktemp("jax-cache"))
    env = {"JAX_COMPILATION_CACHE_DIR": folder, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    cc.set_cache_dir(folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    cc.reset_cache()  # JAX opens the cache once per process: make it open this one
    yield
    jax.config.update("jax_compilation_cache_dir", None)
    cc.reset_cache()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def uncached_compilation():
    """For tests that compare compiled programs' text: compile them, rather than load them from
    the session's cache (a loaded program prints with other debug metadata)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    folder = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    cc.reset_cache()
    yield
    jax.config.update("jax_compilation_cache_dir", folder)
    cc.reset_cache()


@pytest.fixture
def medmnist_file():
    def find(name: str) -> str:
        data_dir = os.environ.get("MEDJAX_DATA_DIR")
        if not data_dir:
            pytest.skip("MEDJAX_DATA_DIR is not set")
        path = os.path.join(data_dir, f"{name}.npz")
        if not os.path.isfile(path):
            pytest.fail(f"MEDJAX_DATA_DIR={data_dir} is set but {path} is missing")
        return path

    return find


@pytest.fixture(scope="session")
def torch_python():
    python = os.environ.get("MEDJAX_TORCH_PYTHON")
    if not python:
        pytest.skip(
            "set MEDJAX_TORCH_PYTHON to a Python with torch and torchvision to compare "
            "imported weights with torchvision's own outputs"
        )
    try:
        check = subprocess.run([python, "-c", "import torchvision"], capture_output=True, text=True)
    except OSError as e:
        pytest.fail(f"MEDJAX_TORCH_PYTHON={python} cannot be run: {e}")
    if check.returncode:
        pytest.fail(f"MEDJAX_TORCH_PYTHON={python} cannot import torchvision:\n{check.stderr}")
    return python


def tiny_config(**changes):
    """A phantom CNN run of a few seconds; `changes` maps 'a.b' keys to values."""
    c = get_base_config()
    c.data.num_train, c.data.num_val, c.data.num_test = 128, 64, 64
    c.model.widths = (8, 16)
    c.train.batch_size = 16
    c.train.num_steps = 12
    c.train.log_every_steps = 4
    c.train.eval_every_epochs = 0.25  # every 2 steps
    c.eval.batch_size = 48  # 64 examples: the last batch is padded
    c.eval.bootstrap_samples = 50
    c.log.plots = False  # ~0.7 s a run; the tests of plots turn them on
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = c
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c.lock()


def interrupt_at(step: int, sig=signal.SIGINT):
    """A training hook that sends this process `sig` after `step`, as Ctrl-C or a scheduler's
    SIGTERM would: the loop then saves a checkpoint and raises medjax.errors.Interrupted."""

    def hook(at, state):
        if at == step:
            os.kill(os.getpid(), sig)

    return hook


@pytest.fixture(scope="session")
def folder_run(tmp_path_factory):
    """A finished run trained on a folder of PNG files (40 px phantom images resized to 28,
    dataset-fitted z-scoring, tested with flip TTA), shared by the prediction and export
    tests: (workdir, config, data folder)."""
    from medjax.data.phantom_folder import write_phantom_folder
    from medjax.train.loop import train_and_evaluate

    root = tmp_path_factory.mktemp("folder_run")
    data = write_phantom_folder(
        str(root / "data"), 40, 2, "ultrasound", {"train": 64, "val": 16, "test": 24}
    )
    config = tiny_config(
        **{
            "data.source": "image_folder",
            "data.path": data,
            "data.preprocess": ("value_range(min=0.0, max=1.0)", "zscore(scope='dataset')"),
            "train.num_steps": 4,
            "eval.flip_tta": True,
        }
    )
    train_and_evaluate(config, str(root / "run"))
    return str(root / "run"), config, data


QUESTION = "Do faint lesions show?"


@pytest.fixture(scope="session")
def phantom_run(tmp_path_factory):
    """A finished tiny phantom run shared by the tests of what reads a finished run (load_run,
    evaluate, explain, report); dataset-fitted z-scoring, EMA weights, plots and an experiment
    record make each of them meaningful. Tests that change a workdir change a copy (copytree).
    A SimpleNamespace: workdir, config, results."""
    import types

    from medjax.report.experiment import describe
    from medjax.train.loop import train_and_evaluate

    root = tmp_path_factory.mktemp("phantom_run")
    experiment = root / "lesions.py"
    experiment.write_text(f'"""{QUESTION}\n\nData: the phantom."""\n')
    record = describe(f"{experiment}:runlocal", [("seed", "0")])
    config = tiny_config(
        **{
            "data.preprocess": ("value_range(min=0.0, max=1.0)", "zscore(scope='dataset')"),
            "train.ema_decay": 0.9,
            "log.plots": True,
        }
    )
    workdir = str(root / "run")
    results = train_and_evaluate(config, workdir, experiment=record)
    return types.SimpleNamespace(workdir=workdir, config=config, results=results)
