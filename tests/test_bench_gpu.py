"""What medjax.bench reports for GPU runs, checked on the CPU: the FLOP count behind MFU against a
hand count, the largest-batch search against injected out-of-memory failures (one a real XLA
RESOURCE_EXHAUSTED), the input path's timing, and the fields of the JSON line."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax import bench
from medjax.errors import ConfigError
from medjax.perf import input_pipeline, mfu
from medjax.perf.max_batch import find_max_batch, is_out_of_memory, predict_from_memory
from medjax.train import sharding

M, K, N = 128, 256, 64  # batch, inputs, outputs of one dense layer


def test_compiled_flops_of_a_dense_layer_train_step_match_a_hand_count():
    def step(w, x, y):
        loss = lambda w: jnp.mean((x @ w - y) ** 2)
        return w - 0.1 * jax.grad(loss)(w)

    args = (np.ones((K, N), np.float32), np.ones((M, K), np.float32), np.ones((M, N), np.float32))
    compiled = jax.jit(step).lower(*args).compile()
    # Forward x @ w and the weight gradient x.T @ g: 2 M N K each (multiply and add); the
    # input gradient is not needed. The rest is elementwise: a few per output or weight.
    matmuls = 2 * (2 * M * N * K)
    elementwise_most = 8 * M * N + 4 * K * N
    flops = mfu.compiled_flops(compiled)
    assert matmuls <= flops <= matmuls + elementwise_most


def test_utilisation_is_achieved_rate_over_the_tabled_peak():
    peak = mfu.peak_flops("NVIDIA H200", "bfloat16")
    assert peak == 989e12
    assert mfu.peak_flops("NVIDIA H100 PCIe", "bfloat16") == 756e12  # not the SXM part's
    assert mfu.peak_flops("NVIDIA A100-SXM4-80GB", "bfloat16") == 312e12
    assert mfu.peak_flops("cpu", "bfloat16") is None
    assert mfu.peak_flops("NVIDIA H200", "float32") is None  # TF32 or not: not tabled
    assert mfu.peak_flops("cpu", "float32", override=2e12) == 2e12
    # 494.5 TFLOP in 1 s on a 989 TFLOP/s device is half of its peak.
    assert mfu.utilisation(494.5e12, 1.0, peak) == pytest.approx(0.5)
    assert mfu.utilisation(1e12, 1.0, None) is None


def _xla_out_of_memory():
    """A real XLA allocation failure: 64 TiB on the CPU."""
    jax.block_until_ready(jax.jit(lambda: jnp.zeros((2**44,), jnp.float32))())


def test_max_batch_search_keeps_the_last_batch_before_xla_runs_out_of_memory():
    def try_batch(b):
        if b > 16:
            _xla_out_of_memory()
        return f"compiled at {b}"

    best, kept, tried = find_max_batch(try_batch, 2, 1024, log=lambda m: None)
    assert (best, kept) == (16, "compiled at 16")
    assert tried == [(2, "fits"), (4, "fits"), (8, "fits"), (16, "fits"), (32, "out of memory")]
    # The cap ends the search too, and a failure other than memory is never swallowed.
    assert find_max_batch(lambda b: b, 3, 12, log=lambda m: None)[:2] == (12, 12)
    with pytest.raises(ValueError, match="shape"):
        find_max_batch(lambda b: (_ for _ in ()).throw(ValueError("bad shape")), 2, 8)
    with pytest.raises(ConfigError, match="even batch 2 ran out of device memory"):
        find_max_batch(lambda b: _xla_out_of_memory(), 2, 8, log=lambda m: None)
    assert is_out_of_memory(MemoryError()) and not is_out_of_memory(RuntimeError("shape"))


def test_max_batch_search_jumps_to_the_predicted_batch_and_falls_back_when_it_does_not_fit():
    fits_up_to = {"limit": 64}

    def try_batch(b):
        if b > fits_up_to["limit"]:
            _xla_out_of_memory()
        return b

    # The first step's memory predicts 100 fit: 2 -> 64 (the largest doubling under 100) -> 128.
    quiet = {"log": lambda m: None, "predict": lambda b, result: 100}
    best, _, tried = find_max_batch(try_batch, 2, 1024, **quiet)
    assert best == 64 and tried == [(2, "fits"), (64, "fits"), (128, "out of memory")]
    # A prediction too high: the jump runs out, and plain doubling from 2 finds 16.
    fits_up_to["limit"] = 16
    best, _, tried = find_max_batch(try_batch, 2, 1024, **quiet)
    assert best == 16
    assert tried == [(2, "fits"), (64, "out of memory")] + [(4, "fits"), (8, "fits")] + [
        (16, "fits"),
        (32, "out of memory"),
    ]


def test_memory_prediction_extrapolates_the_batch_dependent_part():
    # 1 GiB of state, 3 GiB more at batch 8: 0.375 GiB per example; 85% of 40 GiB leaves
    # 33 GiB for examples: 88 of them.
    gib = 2**30
    assert predict_from_memory(40 * gib, 1 * gib, 4 * gib, 8) == 88
    assert predict_from_memory(None, gib, 4 * gib, 8) is None  # the CPU reports no limit


def test_input_path_times_each_part_of_a_batch():
    split = input_pipeline.synthetic_split((8, 8, 3), 64, "uint8")
    mesh = sharding.make_mesh()
    row = input_pipeline.time_input(split, 16, mesh, steps=3, warmup=1)
    parts = [row[f"input_{p}_ms"] for p in ("index", "gather", "transfer")]
    assert all(p >= 0 for p in parts)
    assert row["input_batch_ms"] == pytest.approx(sum(parts), abs=2e-3)
    assert row["input_images_per_s"] == pytest.approx(16e3 / row["input_batch_ms"], rel=0.01)
    assert row["input_mb_per_batch"] == round(16 * 8 * 8 * 3 / 2**20, 2)


def test_input_pipeline_cli_says_whether_it_outpaces_a_step(capsys):
    argv = ["--input-pipeline", "--image-size", "8", "--channels", "3", "--batch-size", "4"]
    argv += ["--steps", "2", "--warmup", "1"]
    slow = bench.main([*argv, "--step-images-per-s", "1e-3"])
    fast = bench.main([*argv, "--step-images-per-s", "1e12", "--input-dtype", "float32"])
    assert slow["input_outpaces_step"] and not fast["input_outpaces_step"]
    assert (slow["input_dtype"], fast["input_dtype"]) == ("uint8", "float32")
    assert slow["images_in_memory"] == 256 and slow["input_shape"] == [8, 8, 3]
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["input_images_per_s"] > 0 for x in lines] == [True, True]


def test_bench_max_batch_json_line_has_mfu_and_the_step_breakdown(monkeypatch, capsys):
    real_prepare = bench.prepare

    def prepare(exp):  # the device "runs out of memory" above batch 2
        if exp.config.train.batch_size > 2:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")
        return real_prepare(exp)

    monkeypatch.setattr(bench, "prepare", prepare)
    argv = ["--model", "cnn", "--model-arg", "widths=(4,)", "--image-size", "8"]
    argv += ["--batch-size", "max", "--batch-start", "2", "--batch-cap", "8", "--skip-eval"]
    argv += ["--steps", "2", "--warmup", "1", "--dtype", "bfloat16", "--peak-flops", "1e12"]
    bench.main(argv)
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["batch_search"] == [[2, "fits"], [4, "out of memory"]]
    assert row["batch_size"] == 2 and row["peak_tflops"] == 1.0
    achieved = row["step_gflops"] * 1e9 / (row["train_step_ms"] / 1e3)
    assert row["step_gflops"] > 0
    assert row["step_tflops_per_s"] == pytest.approx(achieved / 1e12, rel=0.01)
    assert row["mfu"] == pytest.approx(achieved / 1e12, rel=0.01)  # over the 1 TFLOP/s peak
    for key in ("train_images_per_s", "loop_step_ms", "input_gather_ms", "input_transfer_ms"):
        assert row[key] > 0
    assert isinstance(row["input_outpaces_step"], bool)
    assert "eval_images_per_s" not in row  # --skip-eval
