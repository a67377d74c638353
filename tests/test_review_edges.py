"""Edge and wavelet feature channels (sobel, laplacian, canny, dwt) against scikit-image,
scipy and PyWavelets; the two_branch late-fusion model; the review's fusion experiments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt
import scipy.ndimage as ndi
from skimage import feature, filters

from medjax.configs import get_base_config, load_config
from medjax.errors import ConfigError
from medjax.models import build_model
from medjax.ops import build_preprocess
from medjax.ops.edges import canny, hysteresis, laplacian, sobel
from medjax.ops.wavelets import dwt, idwt2, wavedec2, waverec2
from medjax.train import validate

RNG = np.random.default_rng(0)


def _blobs(shape, seed):
    """Smooth random blobs with noise on [0, 1]: edges of every orientation, and weak ones."""
    rng = np.random.default_rng(seed)
    x = ndi.gaussian_filter(rng.random(shape), 2.0)
    x = (x - x.min()) / (x.max() - x.min())
    return (x + 0.03 * rng.standard_normal(shape)).astype(np.float32)


def _op(op, x):
    return np.asarray(jax.jit(op)(jnp.asarray(x)))


# --- sobel, laplacian -------------------------------------------------------------------------


def test_sobel_magnitude_and_directions_equal_skimage():
    x = _blobs((20, 24), 1)
    out = _op(sobel(), x[..., None])
    np.testing.assert_array_equal(out[..., 0], x)  # the image first, unchanged
    np.testing.assert_allclose(out[..., 1], filters.sobel(x), atol=1e-6)
    both = _op(sobel(output="directional", keep_image=False), x[..., None])
    np.testing.assert_allclose(both[..., 0], filters.sobel_h(x), atol=1e-6)
    np.testing.assert_allclose(both[..., 1], filters.sobel_v(x), atol=1e-6)


def test_sobel_and_laplacian_of_a_volume_equal_skimage_and_scipy():
    v = _blobs((6, 8, 10), 2)
    np.testing.assert_allclose(
        _op(sobel(keep_image=False), v[..., None])[..., 0], filters.sobel(v), atol=1e-6
    )
    np.testing.assert_allclose(
        _op(laplacian(keep_image=False), v[..., None])[..., 0], ndi.laplace(v), atol=1e-6
    )


def test_laplacian_equals_scipy_per_channel_and_channels_picks_the_source():
    x = _blobs((16, 16, 2), 3)
    out = _op(laplacian(), x)
    assert out.shape == (16, 16, 4)
    for c in range(2):
        np.testing.assert_allclose(out[..., 2 + c], ndi.laplace(x[..., c]), atol=1e-6)
    first = _op(laplacian(channels=1), x)
    assert first.shape == (16, 16, 3)
    np.testing.assert_allclose(first[..., 2], ndi.laplace(x[..., 0]), atol=1e-6)


# --- canny ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma, low, high", [(1.0, 0.1, 0.2), (2.0, 0.05, 0.15)])
def test_canny_agrees_with_skimage_on_edge_pixels(sigma, low, high):
    # Not bit-exact: both smooth and differentiate in float32, but in other summation orders, so
    # a pixel whose magnitude ties its interpolated neighbour or a threshold to ~1e-7 can fall
    # on either side. On these images they agree exactly; the bound leaves room for such ties.
    agree = union = 0
    for seed in range(3):
        x = _blobs((32, 32), 10 + seed)
        ref = feature.canny(x, sigma=sigma, low_threshold=low, high_threshold=high)
        ours = _op(canny(sigma=sigma, low=low, high=high, keep_image=False), x[..., None])
        assert set(np.unique(ours)) <= {0.0, 1.0}
        ours = ours[..., 0] > 0
        agree, union = agree + (ours & ref).sum(), union + (ours | ref).sum()
    assert union > 100  # there are edges to agree on
    assert agree / union >= 0.98


def test_hysteresis_keeps_exactly_the_weak_components_touching_a_strong_pixel():
    weak = RNG.random((24, 24)) < 0.45
    strong = weak & (RNG.random((24, 24)) < 0.05)
    labels, _ = ndi.label(weak, np.ones((3, 3)))
    expected = np.isin(labels, np.unique(labels[strong])) & weak
    got = np.asarray(hysteresis(jnp.asarray(weak[..., None]), jnp.asarray(strong[..., None])))
    np.testing.assert_array_equal(got[..., 0], expected)


# --- dwt --------------------------------------------------------------------------------------


@pytest.mark.parametrize("wavelet", ["haar", "db2", "db4"])
@pytest.mark.parametrize("level", [1, 2])
def test_wavedec2_equals_pywavelets_and_reconstructs_perfectly(wavelet, level):
    x = RNG.random((28, 28, 2)).astype(np.float32)
    ours = wavedec2(jnp.asarray(x), wavelet, level)
    ref = pywt.wavedec2(x, wavelet, mode="periodization", level=level, axes=(0, 1))
    np.testing.assert_allclose(ours[0], ref[0], atol=1e-5)
    for got, want in zip(ours[1:], ref[1:], strict=True):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, atol=1e-5)
    np.testing.assert_allclose(waverec2(ours, wavelet), x, atol=1e-5)
    np.testing.assert_allclose(
        idwt2(wavedec2(jnp.asarray(x), wavelet, 1)[:2], wavelet),
        pywt.idwt2(
            pywt.dwt2(x, wavelet, mode="periodization", axes=(0, 1)),
            wavelet,
            mode="periodization",
            axes=(0, 1),
        ),
        atol=1e-5,
    )


def test_dwt_op_channels_are_the_pywt_bands_repeated_to_the_image_size():
    x = RNG.random((16, 16, 1)).astype(np.float32)
    out = _op(dwt("db2", level=2), x)
    # image, LL2, LH2, LH1, HL2, HL1, HH2, HH1
    assert out.shape == (16, 16, 8)
    ll2, (h2, v2, d2), (h1, v1, d1) = pywt.wavedec2(x[..., 0], "db2", mode="periodization", level=2)

    def up(band, f):
        return np.repeat(np.repeat(band, f, 0), f, 1)

    expected = [
        x[..., 0],
        up(ll2, 4),
        up(h2, 4),
        up(h1, 2),
        up(v2, 4),
        up(v1, 2),
        up(d2, 4),
        up(d1, 2),
    ]
    for c, want in enumerate(expected):
        np.testing.assert_allclose(out[..., c], want, atol=1e-5)
    only = _op(dwt(bands="HH", keep_image=False), x)
    np.testing.assert_allclose(only[..., 0], up(pywt.dwt2(x[..., 0], "haar")[1][2], 2), atol=1e-5)


# --- bad input --------------------------------------------------------------------------------


def test_unknown_wavelet_and_bad_bands_are_config_errors_listing_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown wavelet 'db99'; valid: haar, db1, .*db4"):
        build_preprocess(["dwt(wavelet='db99')"])
    with pytest.raises(ConfigError, match="LL, LH, HL, HH"):
        build_preprocess(["dwt(bands='LL,XY')"])
    with pytest.raises(ConfigError, match="output must be one of magnitude, directional"):
        build_preprocess(["sobel(output='angle')"])


def _data_config(preprocess, **data):
    c = get_base_config()
    c.data.preprocess = preprocess
    for k, v in data.items():
        c.data[k] = v
    return c


def test_a_level_too_deep_for_the_image_fails_at_config_time_naming_the_deepest():
    c = _data_config(("value_range()", "dwt(level=3)"), image_size=28)
    with pytest.raises(
        ConfigError, match=r"divisible by 8, but the image is 28x28 px; use level <= 2"
    ):
        validate.validate(c)
    validate.validate(_data_config(("value_range()", "dwt(level=2)"), image_size=28))


@pytest.mark.parametrize("op", ["canny()", "dwt()"])
def test_image_only_ops_on_volumes_fail_at_config_time(op):
    c = _data_config(("value_range()", op), source="phantom3d", depth=8, image_size=16)
    with pytest.raises(ConfigError, match="for volumes use sobel or laplacian"):
        validate.validate(c)


# --- late fusion ------------------------------------------------------------------------------


def _two_branch(**changes):
    c = get_base_config().model
    c.name, c.widths, c.branch_channels = "two_branch", (4, 8), 1
    for k, v in changes.items():
        c[k] = v
    return c


def test_two_branch_splits_the_channels_and_concatenates_the_branch_features():
    model = build_model(_two_branch(), 3, 8)
    x = jnp.asarray(RNG.random((1, 8, 8, 5)), jnp.float32)
    # The same image twice, the second without its features: only the feature branch differs.
    x = jnp.concatenate([x, x.at[..., 1:].set(0.0)])
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)
    params = variables["params"]
    # The image branch sees 1 channel, the feature branch 4; one head on 8 + 8 features.
    assert params["image"]["conv0_0"]["kernel"].shape[-2:] == (1, 4)
    assert params["features"]["conv0_0"]["kernel"].shape[-2:] == (4, 4)
    assert "head" not in params["image"] and params["head"]["kernel"].shape == (16, 3)
    logits, state = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]))(
        variables, x
    )
    assert logits.shape == (2, 3)
    stages = state["intermediates"]
    pooled = stages["pooled"][0]
    assert pooled.shape == (2, 16)
    assert "stage1" in stages["image"] and "stage1" in stages["features"]
    np.testing.assert_allclose(pooled[0, :8], pooled[1, :8], atol=1e-6)  # the image branch
    assert not np.allclose(pooled[0, 8:], pooled[1, 8:])  # the feature branch


def test_two_branch_refuses_bad_branches_and_an_input_without_features():
    with pytest.raises(ConfigError, match="must name two backbones"):
        build_model(_two_branch(branches=("cnn",)), 2, 16)
    with pytest.raises(ConfigError, match="'two_branch' cannot be a branch.*Valid names: .*cnn"):
        build_model(_two_branch(branches=("cnn", "two_branch")), 2, 16)
    with pytest.raises(ConfigError, match="branch_channels must be"):
        build_model(_two_branch(branch_channels=0), 2, 16)
    model = build_model(_two_branch(), 2, 16)
    with pytest.raises(ConfigError, match="input has only 1; add feature channels"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 1)))


# --- the review's experiments -----------------------------------------------------------------


@pytest.mark.parametrize(
    "arg, channels, model",
    [
        ("edges=sobel", 2, "cnn"),
        ("edges=all", 4, "cnn"),
        ("edges=canny,fusion=late", 2, "two_branch"),
        ("fusion=early", 5, "cnn"),
        ("fusion=late,wavelet=db2,level=2", 8, "two_branch"),
        ("fusion=twin", 1, "ensemble"),  # late fusion's capacity control: no bands
    ],
)
def test_fusion_configs_validate_and_give_the_model_its_channels(arg, channels, model):
    name = "dwt_fusion" if "edges" not in arg else "edge_fusion"
    c = load_config(f"experiments/review/{name}.py:runlocal,data=phantom,{arg}")
    validate.validate(c)
    assert c.model.name == model
    fn = build_preprocess(c.data.preprocess)
    out = jax.eval_shape(fn, jax.ShapeDtypeStruct((28, 28, 1), jnp.uint8))
    assert out.shape == (28, 28, channels)


def test_edge_fusion_refuses_an_unknown_edge_map():
    with pytest.raises(ConfigError, match="valid: sobel, laplacian, canny, all"):
        load_config("experiments/review/edge_fusion.py:edges=prewitt")
