import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from medjax.cli import main_guard
from medjax.configs import apply_overrides, load_config
from medjax.data import load_dataset
from medjax.train.loop import train_and_evaluate

from .conftest import ROOT


def _run(*args, env=None, module="medjax.run", check=False):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=check,
    )


def test_cli_bad_model_name_is_one_clear_message(tmp_path):
    out = _run(
        "--config",
        "experiments/phantom_cnn.py:runlocal",
        "--workdir",
        str(tmp_path),
        "--config.model.name=resnet_18",
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "unknown model 'resnet_18' in config.model.name. Did you mean 'resnet18'" in out.stderr
    assert not (tmp_path / "config.json").exists()  # nothing written for a config that fails


def test_cli_typo_in_key_and_bad_batch_size(tmp_path):
    out = _run(
        "--config",
        "experiments/phantom_cnn.py:runlocal",
        "--workdir",
        str(tmp_path),
        "--config.optimiser.name=sgd",
    )
    assert out.returncode == 2 and "Did you mean 'optimizer.name'" in out.stderr
    out = _run(
        "--config",
        "experiments/phantom_cnn.py:runlocal",
        "--workdir",
        str(tmp_path),
        "--config.train.batch_size=0",
    )
    assert out.returncode == 2 and "config.train.batch_size=0 must be positive" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_missing_data_file(tmp_path):
    out = _run(
        "--config",
        "experiments/breastmnist_resnet18.py:runlocal",
        "--workdir",
        str(tmp_path),
        env={"MEDJAX_DATA_DIR": str(tmp_path)},
    )
    assert out.returncode == 2 and "breastmnist.npz not found" in out.stderr
    assert "Traceback" not in out.stderr


def test_real_breastmnist_loads_with_official_splits(medmnist_file):
    config = load_config(str(ROOT / "experiments/breastmnist_resnet18.py"))
    apply_overrides(config, [("data.path", medmnist_file("breastmnist"))])
    ds = load_dataset(config.data)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 546, "val": 78, "test": 156}
    assert ds.class_names == ["malignant", "normal_or_benign"]
    assert np.bincount(ds.splits["train"].labels).tolist() == [147, 399]


def test_real_pneumoniamnist_loads(medmnist_file):
    config = load_config(str(ROOT / "experiments/pneumoniamnist_cnn.py"))
    apply_overrides(config, [("data.path", medmnist_file("pneumoniamnist"))])
    ds = load_dataset(config.data)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 4708, "val": 524, "test": 624}


def test_train_on_real_breastmnist_for_a_few_steps(medmnist_file, tmp_path):
    config = load_config(str(ROOT / "experiments/breastmnist_resnet18.py:runlocal"))
    apply_overrides(
        config,
        [
            ("data.path", medmnist_file("breastmnist")),
            ("model.name", "cnn"),
            ("model.widths", "(8, 16)"),
        ],
    )
    results = train_and_evaluate(config, str(tmp_path))
    assert results["test"]["num_examples"] == 156  # every test image, the padded batch masked
    assert 0.0 <= results["test"]["auc"] <= 1.0
    card = json.loads((tmp_path / "run_card.json").read_text())
    assert card["data"]["origin"].endswith("breastmnist.npz")
    summary = json.loads((tmp_path / "data_summary.json").read_text())
    assert summary["class_names"] == ["malignant", "normal_or_benign"]


def test_bench_prints_one_json_line():
    out = _run(
        *("--model", "cnn", "--batch-size", "8", "--steps", "2", "--warmup", "1"),
        module="medjax.bench",
        check=True,
    )
    line = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("train_images_per_s", "eval_images_per_s", "compile_s", "device_kind"):
        assert key in line


def test_bench_augment_reports_each_shape_and_op():
    out = _run(
        *("--augment", "--per-op", "--shapes", "16x16x1,8x8x8x1"),
        *("--batch-size", "4", "--steps", "1", "--warmup", "1"),
        module="medjax.bench",
        check=True,
    )
    lines = [json.loads(x) for x in out.stdout.strip().splitlines()]
    assert {tuple(x["shape"]) for x in lines} == {(16, 16, 1), (8, 8, 8, 1)}
    assert sum(x["augment"] == "pipeline" for x in lines) == 2
    assert all(x["images_per_s"] > 0 for x in lines)


def test_preview_writes_a_grid(tmp_path):
    out = tmp_path / "grid.png"
    _run(
        *("--config", "experiments/phantom_cnn.py:runlocal", "--out", str(out)),
        *("--examples", "3", "--draws", "2", "--config.data.mix=mixup()", "--with-mix"),
        module="medjax.preview",
        check=True,
    )
    from PIL import Image

    assert Image.open(out).size[0] > 200


@pytest.mark.parametrize(
    "module, argv, message",
    [
        ("preview", ["--out", "{tmp}/no/grid.png"], "no does not exist; create it first"),
        ("preview", ["--out", "{tmp}/grid.xyz"], "unknown image type 'xyz'; end the name with"),
        ("preview", ["--out", "{tmp}/g.png", "--examples", "0"], "--examples: must be at least 1"),
        ("bench", ["--steps", "0"], "argument --steps: must be at least 1, not 0"),
        ("bench", ["--augment", "--shapes", "abc"], "--shapes: 'abc' is not H x W x C"),
    ],
)
def test_cli_arguments_that_cannot_work_fail_first_with_one_message(
    module, argv, message, tmp_path, capsys
):
    main = importlib.import_module(f"medjax.{module}").main
    argv = [a.format(tmp=tmp_path) for a in argv]
    if module == "preview":
        argv = ["--config", str(ROOT / "experiments/phantom_cnn.py:runlocal"), *argv]
    with pytest.raises(SystemExit) as exit_info:
        main_guard(main, argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # failed before writing anything
