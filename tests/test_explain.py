"""medjax.explain without torch: shapes, Grad-CAM's range, integrated gradients' completeness,
occlusion against a brute-force loop, the error messages and the CLI on a tiny finished run.
(The comparisons with pytorch-grad-cam and captum: tests/test_explain_reference.py.)"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.configs import get_base_config
from medjax.errors import ConfigError
from medjax.explain import EXPLAINERS, choose_stage, model_fn
from medjax.explain.__main__ import main
from medjax.explain.batched import resolve_options
from medjax.explain.occlusion import window_starts
from medjax.models import build_model

OPTIONS = {
    "smoothgrad": {"key": jax.random.key(0), "samples": 3},
    "integrated_gradients": {"steps": 4},
    "occlusion": {"window": 4, "stride": 4},
}


def tiny(name, shape, widths=(4, 8), seed=0):
    cfg = get_base_config().model
    cfg.name, cfg.widths = name, widths
    model = build_model(cfg, 3, shape[1])
    x = jax.random.normal(jax.random.key(seed + 1), shape)
    variables = model.init(jax.random.key(seed), x, train=False)
    return model_fn(model), variables, x


def explain(method, fn, variables, x, targets, **options):
    if method in ("gradcam", "gradcam_pp", "guided_gradcam"):
        options.setdefault("stage", choose_stage(fn, variables, x, None))
    options = {**OPTIONS.get(method, {}), **options}
    return np.asarray(
        jax.jit(functools.partial(EXPLAINERS.get(method), fn, **options))(variables, x, targets)
    )


@pytest.mark.parametrize("name,shape", [("cnn", (2, 16, 16, 1)), ("cnn3d", (2, 8, 8, 8, 1))])
def test_every_method_maps_the_input_spatial_shape(name, shape):
    fn, variables, x = tiny(name, shape)
    targets = jnp.array([0, 2])
    for method in EXPLAINERS.names():
        maps = explain(method, fn, variables, x, targets)
        assert maps.shape == shape[:-1], method
        assert np.isfinite(maps).all(), method


def test_gradcam_is_nonnegative_normalised_and_follows_the_target():
    fn, variables, x = tiny("cnn", (3, 16, 16, 2))
    for method in ("gradcam", "gradcam_pp"):
        maps = explain(method, fn, variables, x, jnp.array([0, 1, 2]))
        assert maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2)), 1, atol=1e-5)
    a = explain("gradcam", fn, variables, x, jnp.array([0, 0, 0]))
    b = explain("gradcam", fn, variables, x, jnp.array([1, 1, 1]))
    assert np.abs(a - b).max() > 1e-3  # another class, another map


def test_integrated_gradients_complete_the_logit_difference():
    fn, variables, x = tiny("cnn", (2, 16, 16, 1), widths=(8, 16))
    targets = jnp.array([1, 2])
    # the path is unrolled, so its compile time grows with the points; 16 meet the tolerance
    maps = explain("integrated_gradients", fn, variables, x, targets, steps=16, baseline=0.0)
    logits = np.asarray(fn.logits(variables, x))[[0, 1], [1, 2]]
    base = np.asarray(fn.logits(variables, jnp.zeros_like(x)))[[0, 1], [1, 2]]
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), logits - base, rtol=0.02, atol=1e-3)


def test_occlusion_matches_a_brute_force_loop():
    fn, variables, x = tiny("cnn", (2, 12, 10, 1))
    targets = np.array([2, 0])
    window, stride, baseline = (4, 3), (3, 2), -0.5
    got = explain(
        "occlusion", fn, variables, x, targets, window=window, stride=stride, baseline=baseline
    )
    x = np.asarray(x)
    score = lambda im: np.asarray(fn.logits(variables, im))[[0, 1], targets]  # noqa: E731
    full, total, count = score(x), np.zeros(x.shape[:3]), np.zeros(x.shape[1:3])
    for r in window_starts(12, window[0], stride[0]):
        for c in window_starts(10, window[1], stride[1]):
            occluded = x.copy()
            occluded[:, r : r + window[0], c : c + window[1]] = baseline
            total[:, r : r + window[0], c : c + window[1]] += (full - score(occluded))[
                :, None, None
            ]
            count[r : r + window[0], c : c + window[1]] += 1
    np.testing.assert_allclose(got, total / count, rtol=1e-4, atol=1e-5)


def test_guided_backprop_zeroes_negative_gradients():
    fn, variables, x = tiny("cnn", (2, 16, 16, 1))
    t = jnp.array([0, 1])
    guided = explain("guided_backprop", fn, variables, x, t)
    plain = explain("saliency", fn, variables, x, t)
    assert guided.shape == plain.shape and np.abs(guided - plain).max() > 1e-6


def test_errors_name_the_valid_choices():
    fn, variables, x = tiny("cnn", (2, 16, 16, 1))
    with pytest.raises(ConfigError, match="unknown explainer 'gradcan' in --method.*gradcam"):
        EXPLAINERS.get("gradcan")
    with pytest.raises(ConfigError, match="unknown stage 'stage9'.*stage0, stage1"):
        choose_stage(fn, variables, x, "stage9")
    with pytest.raises(ConfigError, match="stage 'pooled' has no spatial map"):
        choose_stage(fn, variables, x, "pooled")
    fn1, v1, x1 = tiny("cnn", (2, 2, 2, 1))  # stage1 is 1x1
    with pytest.raises(ConfigError, match="stage 'stage1' has no spatial map.*stage0"):
        choose_stage(fn1, v1, x1, "stage1")
    with pytest.raises(ConfigError, match="has no option steps"):
        resolve_options("gradcam", fn, variables, x, None, None, {"steps": 3})
    cfg = get_base_config().model
    cfg.name = "vit_ti"
    vit = model_fn(build_model(cfg, 2, 32))
    vx = jnp.zeros((1, 32, 32, 3))
    variables_vit = jax.eval_shape(
        lambda: build_model(cfg, 2, 32).init(jax.random.key(0), vx, train=False)
    )
    with pytest.raises(ConfigError, match="'block11' has no spatial map.*--stage patches"):
        choose_stage(vit, variables_vit, vx, None)


@pytest.fixture(scope="module")
def finished_run(phantom_run):
    return phantom_run.workdir  # the CLI writes to --out, never into the shared workdir


def test_cli_writes_overlays_maps_and_gallery(finished_run, tmp_path):
    out = str(tmp_path / "explain")
    main(
        [
            "--workdir",
            finished_run,
            "--method",
            "gradcam",
            "--out",
            out,
            "--limit",
            "2",
            "--batch-size",
            "32",
        ]
    )
    files = sorted(os.listdir(os.path.join(out, "test")))
    assert "maps.npz" in files and "gallery.png" in files
    assert len([f for f in files if f[0].isdigit()]) == 2
    saved = np.load(os.path.join(out, "test", "maps.npz"))
    assert saved["maps"].shape == (64, 28, 28) and saved["probs"].shape == (64, 2)
    np.testing.assert_array_equal(saved["indices"], np.arange(64))


@pytest.mark.parametrize(
    "args,message",
    [
        (["--method", "gradcan"], "unknown explainer 'gradcan'"),
        (["--stage", "stage7"], "unknown stage 'stage7'"),
        (["--method", "saliency", "--stage", "stage1"], "--stage applies to"),
    ],
)
def test_cli_errors_write_nothing(finished_run, tmp_path, capsys, args, message):
    from medjax.cli import main_guard

    out = str(tmp_path / "explain")
    with pytest.raises(SystemExit) as exit:
        main_guard(main, ["--workdir", finished_run, "--out", out, *args])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(out)


def test_cli_refuses_a_workdir_without_a_finished_run(tmp_path, capsys):
    from medjax.cli import main_guard

    with pytest.raises(SystemExit):
        main_guard(main, ["--workdir", str(tmp_path), "--out", str(tmp_path / "x")])
    assert "has no finished run" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")
