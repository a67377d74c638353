"""medjax.explain against pytorch-grad-cam and captum on the same random torchvision weights
(tools/explain_reference.py, run with MEDJAX_TORCH_PYTHON; skipped without it, failing if it
is set and broken, as tests/test_weights.py).

Maps are compared after per-map min-max normalisation: the smallest Pearson correlation over
the batch and the largest absolute difference. Measured with torch 2.14.1, grad-cam 1.5.7,
captum 0.9.0 (README, "## Explanations"): Grad-CAM, Grad-CAM++, occlusion and guided backprop
agree to <= 1e-5 (correlation 1.000000); saliency to 9e-3 and integrated gradients to 3e-3
(correlation >= 0.99997), where a ReLU or a channel maximum flips on float32 rounding.
"""

import functools
import pathlib
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.configs import get_base_config
from medjax.explain import EXPLAINERS, model_fn
from medjax.models import build_model
from medjax.weights import load_pretrained

ROOT = pathlib.Path(__file__).resolve().parents[1]

# model -> (image size, reference arguments, Grad-CAM stage matching the reference's layer,
# methods compared). DenseNet-121 checks only the class-activation maps (its layer choice);
# the gradient methods, model-independent code, are checked on the faster ResNet-18.
CASES = {
    "resnet18": (96, ["--window", "16", "--stride", "8", "--ig-steps", "8"], "stage4", None),
    "densenet121": (64, ["--cam-only"], "stage4", ("gradcam", "gradcam_pp")),
}
# method -> (smallest Pearson r, largest |difference| of min-max normalised maps)
TOLERANCE = {
    "gradcam": (0.99999, 1e-4),
    "gradcam_pp": (0.99999, 1e-4),
    "occlusion": (0.99999, 1e-4),
    "guided_backprop": (0.99999, 1e-4),
    "saliency": (0.9999, 2e-2),
    "integrated_gradients": (0.9999, 1e-2),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def reference(request, torch_python, tmp_path_factory):
    name = request.param
    size, extra, stage, _ = CASES[name]
    out = tmp_path_factory.mktemp(name)
    script = ROOT / "tools" / "explain_reference.py"
    args = ["--model", name, "--image-size", str(size), "--out", str(out), *extra]
    subprocess.run([torch_python, str(script), *args], check=True, capture_output=True)
    cfg = get_base_config().model
    cfg.name, cfg.stem = name, "imagenet"
    model = build_model(cfg, 10, size)
    x = np.load(out / "input.npy").transpose(0, 2, 3, 1)
    init = functools.partial(model.init, jax.random.key(0), jnp.zeros_like(x[:1]), train=False)
    variables, _ = load_pretrained(str(out / "weights.pth"), name, jax.eval_shape(init))
    options = {
        "gradcam": {"stage": stage},
        "gradcam_pp": {"stage": stage},
        "integrated_gradients": {"steps": 8},
        "occlusion": {"window": 16, "stride": 8},
    }
    return name, out, model_fn(model), variables, x, np.load(out / "targets.npy"), options


def _unit(maps):
    maps = maps - maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


@pytest.mark.parametrize("method", sorted(TOLERANCE))
def test_maps_match_pytorch_grad_cam_and_captum(reference, method):
    name, out, fn, variables, x, targets, options = reference
    methods = CASES[name][3]
    if methods is not None and method not in methods:
        pytest.skip(f"{method} is compared on resnet18")
    explain = functools.partial(EXPLAINERS.get(method), fn, **options.get(method, {}))
    with jax.default_matmul_precision("highest"):
        got = _unit(np.asarray(jax.jit(explain)(variables, x, targets)))
    want = _unit(np.load(out / f"{method}.npy"))
    min_r, max_diff = TOLERANCE[method]
    r = min(np.corrcoef(g.ravel(), w.ravel())[0, 1] for g, w in zip(got, want, strict=True))
    assert r >= min_r, f"{method}: Pearson r {r:.6f} < {min_r}"
    assert np.abs(got - want).max() <= max_diff
