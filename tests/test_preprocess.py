"""Deterministic preprocessing ops against PIL and NumPy references, 2D and 3D, and the
dataset-fitted ops (statistics from the training split only)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from PIL import Image

from medjax.errors import ConfigError
from medjax.ops import build_preprocess

RNG = np.random.default_rng(0)
IMAGE = RNG.random((30, 40, 1), np.float32)
VOLUME = RNG.random((10, 12, 14, 1), np.float32)


def run(spec, x):
    return np.asarray(jax.jit(build_preprocess([spec]))(jnp.asarray(x)))


def pil_resize(x, size_wh, resample):
    return np.asarray(Image.fromarray(x[..., 0], mode="F").resize(size_wh, resample))[..., None]


class GeometryMatchesReferences(chex.TestCase):
    """Output shapes, interpolation weights and channel handling are worked out from the input's
    shape while tracing: each check runs jitted (as preprocessing runs) and not."""

    def preprocess(self, spec, x):
        return np.asarray(self.variant(build_preprocess([spec]))(jnp.asarray(x)))

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("bilinear_up", "resize(size=(60, 80), method='bilinear')", (80, 60), Image.BILINEAR),
        ("bilinear_half", "resize(size=(15, 20), method='bilinear')", (20, 15), Image.BILINEAR),
        ("bilinear_odd", "resize(size=(12, 17), method='bilinear')", (17, 12), Image.BILINEAR),
        ("bicubic_up", "resize(size=(60, 80), method='bicubic')", (80, 60), Image.BICUBIC),
        ("area_half", "resize(size=(15, 20), method='area')", (20, 15), Image.BOX),
    )
    def test_resize_matches_pil(self, spec, size, resample):
        # PIL antialiases when it shrinks, as resize(antialias=True) does.
        ref = pil_resize(IMAGE, size, resample)
        np.testing.assert_allclose(self.preprocess(spec, IMAGE), ref, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_area_resize_averages_covered_fractions_at_any_scale(self):
        # Reference: repeat every pixel 13 (resp. 17) times, then average blocks of 30 (resp.
        # 40): exactly the fractional-overlap mean (OpenCV's INTER_AREA).
        fine = np.repeat(np.repeat(IMAGE[..., 0], 13, 0), 17, 1)
        ref = fine.reshape(13, 30, 17, 40).mean((1, 3))
        out = self.preprocess("resize(size=(13, 17), method='area')", IMAGE)
        np.testing.assert_allclose(out[..., 0], ref, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_resize_3d_and_short_side(self):
        assert self.preprocess("resize(size=8)", VOLUME).shape == (8, 8, 8, 1)
        assert self.preprocess("resize(size=(5, 6, 7), method='area')", VOLUME).shape == (
            5,
            6,
            7,
            1,
        )
        assert self.preprocess("resize_short_side(size=15)", IMAGE).shape == (15, 20, 1)
        constant = np.full((9, 9, 9, 1), 3.0, np.float32)
        out = self.preprocess("resize(size=4, method='area')", constant)
        np.testing.assert_allclose(out, 3.0, rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_pad_and_crop(self):
        out = self.preprocess("pad_to_square(value=-1.0)", IMAGE)
        assert out.shape == (40, 40, 1)
        np.testing.assert_array_equal(out[5:35], IMAGE)
        assert (out[:5] == -1).all() and (out[35:] == -1).all()
        out = self.preprocess("center_crop(size=(20, 30))", IMAGE)
        np.testing.assert_array_equal(out, IMAGE[5:25, 5:35])
        assert self.preprocess("crop_or_pad(size=(12, 8, 20))", VOLUME).shape == (12, 8, 20, 1)
        assert self.preprocess("pad_to_square()", VOLUME).shape == (14, 14, 14, 1)
        with pytest.raises(ValueError, match="use crop_or_pad"):
            self.preprocess("center_crop(size=50)", IMAGE)

    @chex.variants(with_jit=True, without_jit=True)
    def test_grayscale_matches_pil_and_to_rgb_repeats(self):
        rgb = (RNG.random((16, 16, 3)) * 255).astype(np.uint8)
        ref = np.asarray(Image.fromarray(rgb).convert("L"), np.float32)
        gray = self.preprocess("grayscale()", rgb.astype(np.float32))
        np.testing.assert_allclose(gray[..., 0], ref, atol=0.51)
        assert self.preprocess("to_rgb()", VOLUME).shape == (10, 12, 14, 3)
        np.testing.assert_array_equal(self.preprocess("grayscale()", IMAGE), IMAGE)


@pytest.mark.parametrize("x", [IMAGE, VOLUME], ids=["2d", "3d"])
def test_intensity_ops(x):
    z = run("zscore()", x)
    np.testing.assert_allclose([z.mean(), z.std()], [0, 1], atol=1e-4)
    m = run("minmax(min=-1.0, max=1.0)", x)
    np.testing.assert_allclose([m.min(), m.max()], [-1, 1], atol=1e-6)
    c = run("clip_percentile(lower=5.0, upper=95.0)", x)
    np.testing.assert_allclose([c.min(), c.max()], np.percentile(x, [5, 95]), rtol=1e-5)
    r = run("clip_percentile(lower=5.0, upper=95.0, rescale=True)", x)
    np.testing.assert_allclose([r.min(), r.max()], [0, 1], atol=1e-6)
    g = run("gamma(gamma=2.0)", x)
    np.testing.assert_allclose(g, x**2, rtol=1e-5)


def test_window_maps_hounsfield_range():
    hu = np.array([-2000.0, -1350.0, -600.0, 150.0, 3000.0]).reshape(5, 1, 1)
    out = run("window(center=-600, width=1500)", hu).ravel()
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_foreground_zscore_leaves_background_and_normalises_the_rest():
    x = np.zeros((8, 8, 8, 1), np.float32)
    x[2:6, 2:6, 2:6] = RNG.random((4, 4, 4, 1)) * 100 + 50
    out = run("zscore(scope='foreground')", x)
    fg = x != 0
    assert (out[~fg] == 0).all()
    np.testing.assert_allclose([out[fg].mean(), out[fg].std()], [0, 1], atol=1e-4)


def test_dataset_statistics_come_from_the_training_images_after_earlier_ops():
    pre = build_preprocess(["value_range(min=0.0, max=1.0)", "zscore(scope='dataset')"])
    train = (RNG.random((50, 8, 8, 1)) * 255).astype(np.float32)
    fn, stats = pre.fit(train)
    (fitted,) = stats.values()
    np.testing.assert_allclose(fitted["mean"], [(train / 255).mean()], rtol=1e-5)
    out = jax.vmap(fn)(jnp.asarray(train))
    np.testing.assert_allclose([out.mean(), out.std()], [0, 1], atol=1e-4)
    other = jnp.full((8, 8, 1), 255.0)  # a test image is scaled by the training statistics
    np.testing.assert_allclose(fn(other), (1 - fitted["mean"][0]) / fitted["std"][0], rtol=1e-4)
    with pytest.raises(RuntimeError, match="call fit"):
        pre(other)
    mm, stats = build_preprocess(["minmax(scope='dataset')"]).fit(train)
    np.testing.assert_allclose(mm(jnp.asarray(train)).max(), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "spec,error",
    [
        ("resize(size=0)", "size must be a positive int"),
        ("resize(method='magic')", "method must be one of"),
        ("zscore(scope='patient')", "scope must be one of"),
        ("window(width=0)", "width must be positive"),
        ("clip_percentile(lower=50, upper=10)", "lower < upper"),
        ("resise(size=32)", "Did you mean 'resize'"),
    ],
)
def test_bad_preprocess_specs_fail_at_config_time(spec, error):
    with pytest.raises(ConfigError, match=error):
        build_preprocess([spec])
