"""Denoising and contrast ops: agreement with scipy / scikit-image, plus properties every op keeps."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
from absl.testing import parameterized
from skimage import exposure, filters, restoration

import medjax.ops
import medjax.ops.filters  # noqa: F401  (registers the ops, whether or not medjax.ops does)
import medjax.ops.histogram  # noqa: F401
from medjax.errors import ConfigError
from medjax.ops.pipeline import PREPROCESS_OPS

OPS = {
    "gaussian_blur": {"sigma": 1.0},
    "median": {"size": 3},
    "bilateral": {"sigma_color": 0.1, "sigma_spatial": 1.0},
    "unsharp_mask": {"sigma": 1.0, "amount": 1.0},
    "equalize": {"nbins": 256},
    "clahe": {"clip_limit": 0.02},
}


def op(name, **kwargs):
    return PREPROCESS_OPS.get(name)(**kwargs)


def phantom(shape, seed=0, quantise=False):
    """Smooth structure plus noise in [0, 1], float32; optionally on uint8 levels."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(0, 1, s) for s in shape], indexing="ij")
    x = 0.5 + 0.3 * np.sin(6 * grid[0]) * np.cos(4 * grid[-1]) + 0.1 * rng.standard_normal(shape)
    x = np.clip(x, 0, 1)
    if quantise:
        x = np.round(x * 255) / 255
    return x.astype(np.float32)


def run(fn, x, jit=True):
    """Jitted by default: eager dispatch of clahe's many small ops is what makes tests slow."""
    return np.asarray((jax.jit(fn) if jit else fn)(jnp.asarray(x)))


# --- reference implementations ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(20, 17, 3), (9, 12, 10, 1)])
@pytest.mark.parametrize("sigma,kernel_size", [(0.5, 0), (1.0, 0), (2.0, 0), (1.0, 5)])
def test_gaussian_blur_matches_scipy(shape, sigma, kernel_size):
    x = phantom(shape)
    radius = kernel_size // 2 if kernel_size else int(4 * sigma + 0.5)  # scipy's truncate=4
    sigmas = (sigma,) * (len(shape) - 1) + (0,)
    ref = ndi.gaussian_filter(x, sigmas, mode="reflect", radius=radius)
    out = run(op("gaussian_blur", sigma=sigma, kernel_size=kernel_size), x)
    np.testing.assert_allclose(out, ref, atol=1e-6)


class MedianEqualsScipy(chex.TestCase):
    """Jitted and not: the window size picks the algorithm at trace time (3D size 5, 125
    elements, takes the jnp.sort path, the others the sorting network), and only size 3 is in
    the jit-vs-eager property test below."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("2d_3", (20, 17, 3), 3),
        ("2d_5", (20, 17, 3), 5),
        ("3d_3", (9, 12, 10, 1), 3),
        ("3d_5", (9, 12, 10, 1), 5),
    )
    def test_median_equals_scipy(self, shape, size):
        x = phantom(shape, quantise=True)  # ties, as in uint8 data
        ref = ndi.median_filter(x, size=(size,) * (len(shape) - 1) + (1,), mode="reflect")
        np.testing.assert_array_equal(self.variant(op("median", size=size))(jnp.asarray(x)), ref)


def test_bilateral_colour_weighting_matches_skimage():
    # skimage 0.26 reads its spatial lookup table with the wrong row stride (the table is
    # (win+1)^2 long but indexed as win^2), so its spatial weights are scrambled. With a huge
    # sigma_spatial every spatial weight is ~1 and the scrambling is moot: this checks the colour
    # weighting, window and border. skimage's 'symmetric' mode is scipy's 'reflect'.
    rng = np.random.default_rng(0)
    blocks = np.kron(rng.random((4, 4)), np.ones((8, 8)))  # edges to preserve
    x = np.clip(blocks + 0.05 * rng.standard_normal(blocks.shape), 0, 1).astype(np.float32)
    ref = restoration.denoise_bilateral(
        x, win_size=5, sigma_color=0.1, sigma_spatial=1e3, mode="symmetric"
    )
    out = run(op("bilateral", sigma_color=0.1, sigma_spatial=1e3, win_size=5), x[..., None])[..., 0]
    # skimage quantises colour distances into 10000 bins: measured mean 6e-6, max 4e-5.
    assert np.abs(out - ref).mean() < 1e-4
    assert np.abs(out - ref).max() < 5e-4


def bilateral_reference(x, sigma_color, sigma_spatial, win):
    """The textbook bilateral filter on a 2D float64 image, border as numpy 'symmetric'."""
    r = win // 2
    padded = np.pad(x, r, mode="symmetric")
    total, norm = np.zeros_like(x), np.zeros_like(x)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            s = padded[r + dy : r + dy + x.shape[0], r + dx : r + dx + x.shape[1]]
            w = np.exp(
                -(dy * dy + dx * dx) / (2 * sigma_spatial**2) - (s - x) ** 2 / (2 * sigma_color**2)
            )
            total, norm = total + w * s, norm + w
    return total / norm


@pytest.mark.parametrize(
    "sigma_color,sigma_spatial,win_size,win",
    [(0.1, 1.0, 0, 7), (0.05, 2.0, 0, 13), (0.1, 0.5, 0, 5), (0.2, 0.8, 5, 5)],  # win: the default
)
def test_bilateral_matches_textbook_formula(sigma_color, sigma_spatial, win_size, win):
    x = phantom((24, 19))
    ref = bilateral_reference(x.astype(np.float64), sigma_color, sigma_spatial, win)
    bilateral = op(
        "bilateral", sigma_color=sigma_color, sigma_spatial=sigma_spatial, win_size=win_size
    )
    out = run(bilateral, x[..., None])
    np.testing.assert_allclose(out[..., 0], ref, atol=1e-5)


@pytest.mark.parametrize("sigma,amount", [(1.0, 1.0), (2.0, 0.5), (0.7, 3.0)])
def test_unsharp_mask_matches_skimage(sigma, amount):
    x = phantom((26, 21))
    ref = filters.unsharp_mask(x, radius=sigma, amount=amount, preserve_range=True)
    out = run(op("unsharp_mask", sigma=sigma, amount=amount), x[..., None])[..., 0]
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_unsharp_mask_is_not_clipped():
    # Unlike skimage's default (preserve_range=False clips to [0, 1]), the op keeps the overshoot,
    # which matters for images already normalised to other ranges.
    x = np.zeros((16, 16, 1), np.float32)
    x[:, 8:] = 1.0
    out = run(op("unsharp_mask", sigma=1.0, amount=2.0), x)
    assert out.max() > 1.0 and out.min() < 0.0


@pytest.mark.parametrize("shape", [(28, 28), (64, 48), (12, 14, 16)])
@pytest.mark.parametrize("nbins", [256, 64])
@pytest.mark.parametrize("quantise", [False, True])
def test_equalize_matches_skimage(shape, nbins, quantise):
    x = phantom(shape, quantise=quantise)
    ref = exposure.equalize_hist(x, nbins=nbins)
    out = run(op("equalize", nbins=nbins), x[..., None])[..., 0]
    np.testing.assert_allclose(out, ref, atol=1e-5)  # measured max 1.2e-7


@pytest.mark.parametrize(
    "shape,kernel_size",
    [((28, 28), 0), ((64, 48), 0), ((33, 17), 0), ((40, 40), 8), ((64, 48), 12), ((12, 14, 16), 0)],
)
@pytest.mark.parametrize(
    "clip_limit,quantise", [(0.01, True), (0.1, True), (0.0, False), (0.03, False)]
)
def test_clahe_matches_skimage(shape, kernel_size, clip_limit, quantise):
    x = phantom(shape, seed=1, quantise=quantise)
    ref = exposure.equalize_adapthist(x, kernel_size=kernel_size or None, clip_limit=clip_limit)
    out = run(op("clahe", clip_limit=clip_limit, kernel_size=kernel_size), x[..., None])[..., 0]
    # The steps are replicated in integer arithmetic; only float32-vs-float64 rounding of the
    # interpolation can move a pixel (or the min/max of the final stretch) by one 14-bit grey
    # level. Measured: mean <= 5e-5, max 6.4e-5.
    diff = np.abs(out - ref)
    assert diff.mean() < 1e-4 and diff.max() < 2e-4, (diff.mean(), diff.max())


def test_clahe_on_dark_background_matches_skimage():
    # Mostly-black images give huge histogram peaks, exercising the clip-and-redistribute loop.
    x = np.zeros((48, 48), np.float32)
    x[12:36, 10:40] = phantom((24, 30), quantise=True)
    for clip_limit in (0.01, 0.1):
        ref = exposure.equalize_adapthist(x, clip_limit=clip_limit)
        out = run(op("clahe", clip_limit=clip_limit), x[..., None])[..., 0]
        assert np.abs(out - ref).max() < 2e-4


# --- properties of every op ------------------------------------------------------------------


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("shape", [(16, 20, 3), (8, 10, 12, 1)])
def test_jit_and_vmap_agree_with_single_call(name, shape):
    fn = op(name, **OPS[name])
    batch = np.stack([phantom(shape, seed=s) for s in range(3)])
    single = np.stack([run(fn, b, jit=False) for b in batch])
    np.testing.assert_allclose(run(fn, batch[0]), single[0], atol=1e-5)
    np.testing.assert_allclose(run(jax.vmap(fn), batch), single, atol=1e-5)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("shape", [(12, 10, 1), (12, 10, 3), (6, 8, 7, 1)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16])
def test_shape_and_dtype_preserved(name, shape, dtype):
    out = jax.jit(op(name, **OPS[name]))(jnp.asarray(phantom(shape), dtype))
    assert out.shape == shape and out.dtype == dtype


@pytest.mark.parametrize("name", OPS)
def test_channels_are_independent(name):
    fn = op(name, **OPS[name])
    x = np.stack([phantom((16, 16), seed=s) * (s + 1) / 3 for s in range(3)], -1)
    per_channel = np.concatenate([run(fn, x[..., c : c + 1]) for c in range(3)], -1)
    np.testing.assert_allclose(run(fn, x), per_channel, atol=1e-6)


@pytest.mark.parametrize("shape", [(12, 10, 2), (6, 8, 7, 1)])
@pytest.mark.parametrize(
    "name,expected",
    [
        ("gaussian_blur", None),
        ("median", None),
        ("bilateral", None),
        ("unsharp_mask", None),
        ("equalize", 0.5),  # the whole (widened) histogram sits in the middle bin, as in skimage
        ("clahe", 1.0),  # skimage's final stretch of a flat result clips its level to [0, 1]
    ],
)
def test_constant_image_stays_constant(name, expected, shape):
    x = np.full(shape, 0.3, np.float32)
    out = run(op(name, **OPS[name]), x)
    np.testing.assert_allclose(out, x if expected is None else np.full(shape, expected), atol=1e-6)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("unsharp_mask", {"amount": 0.0}),
        ("gaussian_blur", {"sigma": 1e-3}),
        ("median", {"size": 1}),
        ("bilateral", {"sigma_color": 1e-4}),
    ],
)
@pytest.mark.parametrize("shape", [(14, 11, 3), (6, 7, 8, 1)])
def test_identity_at_zero_strength(name, kwargs, shape):
    x = phantom(shape, quantise=True)  # neighbours are equal or >= 1/255 apart
    np.testing.assert_allclose(run(op(name, **kwargs), x), x, atol=1e-6)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("gaussian_blur", {"sigma": 0.0}),
        ("gaussian_blur", {"kernel_size": 4}),
        ("gaussian_blur", {"kernel_size": -3}),
        ("median", {"size": 0}),
        ("median", {"size": 4}),
        ("median", {"size": 3.0}),
        ("bilateral", {"sigma_color": 0.0}),
        ("bilateral", {"sigma_spatial": -1.0}),
        ("bilateral", {"win_size": 6}),
        ("unsharp_mask", {"sigma": 0.0}),
        ("unsharp_mask", {"amount": -1.0}),
        ("equalize", {"nbins": 0}),
        ("clahe", {"clip_limit": -0.1}),
        ("clahe", {"kernel_size": -1}),
        ("clahe", {"nbins": 1}),
    ],
)
def test_bad_arguments_raise(name, kwargs):
    with pytest.raises(ValueError):
        op(name, **kwargs)


@pytest.mark.parametrize("name", OPS)
def test_image_without_channel_axis_is_rejected(name):
    with pytest.raises(ValueError, match="expected an image"):
        op(name, **OPS[name])(jnp.zeros((8, 8)))


def test_ops_are_reachable_by_name():
    assert set(OPS) <= set(PREPROCESS_OPS.names())
    preprocess = medjax.ops.build_preprocess(
        ["value_range(min=0.0, max=1.0)", "clahe(clip_limit=0.02)"]
    )
    fn = jax.jit(lambda image: preprocess(image))
    image = jnp.asarray(np.round(phantom((28, 28, 1)) * 255), jnp.uint8)
    out = fn(image)
    assert out.shape == (28, 28, 1) and out.dtype == jnp.float32
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0


def test_bad_argument_through_the_pipeline_names_the_op():
    with pytest.raises(ConfigError, match="median"):
        medjax.ops.build_preprocess(["median(size=4)"])
