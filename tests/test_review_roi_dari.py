"""Issue 15, items 6 and 8: foreground crop / skull stripping ops (checked against scipy.ndimage
and scikit-image, in 2D and 3D) and per-class (DARI-style) augmentation (ops touch only their
class's examples), their config errors, and smoke runs of their review experiments."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.morphology import ball, disk

from medjax.configs.loader import load_config
from medjax.errors import ConfigError
from medjax.ops import build_augment, build_preprocess, morphology
from medjax.ops.per_class import build_labelled_augment, parse_per_class
from medjax.train import consistency, validate

from .conftest import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHAPES = [(28, 28), (8, 14, 14)]


def _blobs(shape, seed=0, level=0.5):
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.random(shape), 1.0) > level


def _element(radius, ndim):
    return disk(radius) if ndim == 2 else ball(radius)


def _head(shape, seed=0):
    """A 'head': noisy brain with a dark ventricle, a gap, a bright skull ring, then a speck."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape, float) - 1).reshape(-1, *([1] * len(shape))) / 2
    r = np.sqrt((((grid - centre) / (np.array(shape) / 2).reshape(centre.shape)) ** 2).sum(0))
    image = np.where(r < 0.55, 0.6, 0.05) + np.where((r > 0.7) & (r < 0.85), 0.9, 0.0)
    image[(r < 0.12)] = 0.1  # ventricle: a hole in the brain mask
    image = image + rng.normal(0, 0.03, shape)
    image[(0,) * len(shape)] = 1.0
    return image.astype(np.float32)


def _largest(mask):
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()


@pytest.mark.parametrize("shape", SHAPES)
def test_otsu_threshold_matches_scikit_image(shape):
    x = np.random.default_rng(1).gamma(2.0, 1.0, shape).astype(np.float32)
    assert float(morphology.otsu_threshold(jnp.asarray(x))) == pytest.approx(
        threshold_otsu(x), rel=1e-5
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("radius", [1, 2])
def test_opening_and_closing_match_scipy(shape, radius):
    mask = _blobs(shape)
    element = _element(radius, len(shape))
    assert morphology.ball_offsets(radius, len(shape)).__len__() == element.sum()
    ours = morphology.opening(jnp.asarray(mask), radius)
    np.testing.assert_array_equal(ours, ndi.binary_opening(mask, element))
    ours = morphology.closing(jnp.asarray(mask), radius)
    np.testing.assert_array_equal(ours, ndi.binary_closing(mask, element))


@pytest.mark.parametrize("shape", SHAPES)
def test_components_holes_and_largest_component_match_scipy(shape):
    mask = _blobs(shape, seed=2, level=0.5 if len(shape) == 2 else 0.55)
    scipy_labels, n = ndi.label(mask)
    assert ndi.binary_fill_holes(~mask).sum() > (~mask).sum()  # ~mask has holes to fill
    ours = np.asarray(morphology.component_labels(jnp.asarray(mask)))
    assert n > 2  # several components, so the partition is a real test
    # the same partition: labels correspond one to one
    pairs = set(zip(scipy_labels.ravel(), ours.ravel(), strict=True))
    assert len(pairs) == n + 1 == len(np.unique(ours))
    np.testing.assert_array_equal(morphology.largest_component(jnp.asarray(mask)), _largest(mask))
    np.testing.assert_array_equal(
        morphology.fill_holes(jnp.asarray(~mask)), ndi.binary_fill_holes(~mask)
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_skull_strip_matches_a_scipy_pipeline(shape):
    image = _head(shape)
    mask = ndi.binary_opening(image > threshold_otsu(image), _element(1, len(shape)))
    mask = ndi.binary_fill_holes(_largest(mask))
    strip = build_preprocess(["skull_strip(radius=1)"])
    out = np.asarray(strip(image[..., None]))[..., 0]
    np.testing.assert_array_equal(out, np.where(mask, image, 0))
    assert out.max() < 0.8  # the bright skull and the speck are gone
    assert out[tuple(n // 2 for n in shape)] > 0  # the dark ventricle stays (holes filled)


@pytest.mark.parametrize("shape", SHAPES)
def test_foreground_crop_pad_keeps_the_box_unscaled_at_a_fixed_shape(shape):
    image = _head(shape)[..., None]
    image = np.concatenate([image, 2 * image], -1)  # 2 channels, cropped alike
    mask = _largest(
        ndi.binary_opening(image.mean(-1) > threshold_otsu(image.mean(-1)), _element(1, len(shape)))
    )
    box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(mask))
    out = np.asarray(build_preprocess(["foreground_crop(radius=1, margin=0.0, fit='pad')"])(image))
    assert out.shape == image.shape
    kept = out[tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(out[..., 0]))]
    np.testing.assert_array_equal(kept, image[box])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("keep_aspect", [True, False])
def test_foreground_crop_resize_fills_the_input_shape(shape, keep_aspect):
    image = np.zeros((*shape, 1), np.float32)
    inner = tuple(slice(n // 4, n // 4 + n // 2) for n in shape)
    image[inner] = 1.0
    op = f"foreground_crop(radius=0, margin=0.0, keep_aspect={keep_aspect})"
    out = np.asarray(build_preprocess([op])(image))
    assert out.shape == image.shape
    # the box (half of each side) is magnified 2x: its centre now covers 3/4 of each side
    core = tuple(slice(n // 8 + 1, n - n // 8 - 1) for n in shape)
    np.testing.assert_allclose(out[core], 1.0, atol=1e-5)


@pytest.mark.parametrize("op", ["foreground_crop()", "skull_strip(crop=True)"])
@pytest.mark.parametrize("value", [0.0, 0.4])
def test_an_image_without_foreground_passes_unchanged(op, value):
    """Nothing above the threshold (a constant image has no Otsu split): the op is the
    identity, as documented, instead of cropping to an empty box."""
    image = np.full((8, 12, 12, 1), value, np.float32)
    np.testing.assert_array_equal(build_preprocess([op])(image), image)


def test_roi_ops_run_on_phantom3d_volumes_in_a_batch():
    from medjax.data import load_dataset

    cfg = load_config(str(ROOT / "experiments/review/skull_strip_mri.py:volume,runlocal"))
    volumes = load_dataset(cfg.data).splits["train"].images[:4]
    out = jax.jit(jax.vmap(build_preprocess(cfg.data.preprocess)))(volumes)
    assert out.shape == volumes.shape and np.isfinite(np.asarray(out)).all()


def test_bad_roi_op_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="fit must be one of resize, pad"):
        build_preprocess(["foreground_crop(fit='crop')"])
    with pytest.raises(ConfigError, match="threshold must be 'otsu' or a number"):
        build_preprocess(["skull_strip(threshold='li')"])
    rgb_op = build_preprocess(["foreground_crop(channel=2)"])
    with pytest.raises(ConfigError, match=r"images have 1 channel\(s\); use channel=None"):
        rgb_op(np.zeros((28, 28, 1), np.float32))


def _per_class(specs, shared=("random_flip(axis='lr', p=0.5)",)):
    return build_labelled_augment(shared, specs, ["no_lesion", "lesion_1", "lesion_2"])


def test_per_class_ops_touch_only_their_class_inside_jit():
    images = jnp.asarray(np.random.default_rng(0).random((12, 16, 16, 1)), jnp.float32)
    labels = jnp.arange(12) % 3
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(3), i))(jnp.arange(12))
    fn = _per_class(("1: random_affine(rotate=30)", "lesion_1: gaussian_noise(std=0.1, p=1.0)"))
    out = np.asarray(jax.jit(jax.vmap(fn))(keys, images, labels))
    shared = np.asarray(
        jax.jit(jax.vmap(build_augment(["random_flip(axis='lr', p=0.5)"])))(keys, images)
    )
    others = np.asarray(labels != 1)
    np.testing.assert_array_equal(out[others], shared[others])  # bit for bit
    assert not np.isclose(out[~others], shared[~others]).all(axis=(1, 2, 3)).any()
    again = np.asarray(jax.jit(jax.vmap(fn))(keys, images, labels))
    np.testing.assert_array_equal(out, again)  # same keys, same draws
    by_index = _per_class(("1: random_affine(rotate=30)", "1: gaussian_noise(std=0.1, p=1.0)"))
    np.testing.assert_array_equal(out, jax.jit(jax.vmap(by_index))(keys, images, labels))


def test_mode_instead_replaces_the_shared_ops_for_the_class_only():
    images = jnp.asarray(np.random.default_rng(2).random((6, 16, 16, 1)), jnp.float32)
    labels = jnp.array([0, 1, 2, 0, 1, 2])
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(5), i))(jnp.arange(6))
    shared = ("cutout(size=0.5, value=7.0, p=1.0)",)
    fn = build_labelled_augment(shared, ("2: random_flip(p=1.0)",), ["a", "b", "c"], "instead")
    out = np.asarray(jax.vmap(fn)(keys, images, labels))
    np.testing.assert_array_equal(out[2::3], images[2::3, :, ::-1])  # flipped, no cutout
    np.testing.assert_array_equal(out[:2], jax.vmap(build_augment(shared))(keys[:2], images[:2]))
    with pytest.raises(ConfigError, match="augment_per_class_mode must be one of after, instead"):
        validate.validate(tiny_config(**{"data.augment_per_class_mode": "before"}))


def test_per_class_ops_on_multi_label_data_are_one_error():
    with pytest.raises(ConfigError, match="needs one class per image; this data is multi-label"):
        build_labelled_augment((), ("0: random_flip()",), ["a", "b"], multi_label=True)


def test_the_gap_check_augments_validation_images_by_their_labels():
    images = np.random.default_rng(1).random((6, 16, 16, 1)).astype(np.float32)
    labels = np.array([0, 1, 0, 1, 2, 2], np.int32)
    fn = _per_class(("2: cutout(size=0.5, value=9.0, p=1.0)",), shared=())
    out = consistency.augmenter(fn, seed=0)(images, np.arange(6), labels)
    np.testing.assert_array_equal(out[:4], images[:4])
    assert (out[4:] == 9.0).any(axis=(1, 2, 3)).all()


@pytest.mark.parametrize(
    "entry, message",
    [
        ("random_affine(rotate=30)", "names no class"),
        (
            "1: foreground_crop()",
            "is a preprocessing op, not an augmentation op; put it in config.data.preprocess",
        ),
        ("1: mixup()", "is a batch mixing op, not an augmentation op"),
        ("1: random_afine()", "unknown augmentation op 'random_afine'"),
        ("1: random_affine(spin=3)", "has no argument 'spin'"),
    ],
)
def test_bad_per_class_entries_fail_before_data_is_read(entry, message):
    with pytest.raises(ConfigError, match=message):
        parse_per_class([entry])
    with pytest.raises(ConfigError, match=message):
        validate.validate(tiny_config(**{"data.augment_per_class": (entry,)}))


@pytest.mark.parametrize("ref", ["3", "malignant"])
def test_a_class_the_data_lacks_is_one_error_listing_the_classes(ref, tmp_path):
    from medjax.train.loop import train_and_evaluate

    config = tiny_config(**{"data.augment_per_class": (f"{ref}: random_flip()",)})
    with pytest.raises(ConfigError, match=r"valid classes: 0 \(no_lesion\), 1 \(lesion_1\)"):
        train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def _smoke(spec, tmp_path):
    from medjax.train.loop import train_and_evaluate

    config = load_config(str(ROOT / spec))
    with config.unlocked():
        config.train.num_steps, config.model.widths = 4, (4, 8)
        config.data.num_train, config.data.num_val, config.data.num_test = 64, 32, 32
        config.eval.bootstrap_samples, config.log.plots = 0, False
        config.train.precise_bn = "on" if "dari" in spec else "off"
    return config, train_and_evaluate(config, str(tmp_path / "run"))


def test_dari_augment_runs_on_the_phantom(tmp_path):
    config, results = _smoke("experiments/review/dari_augment.py:runlocal,data=phantom", tmp_path)
    assert config.data.augment_per_class[0].startswith("1: random_affine")
    assert 0 <= results["test"]["auc"] <= 1
    assert "train_eval_gap" in results  # the consistency check ran with per-class ops


def test_skull_strip_mri_runs_on_the_mri_phantom(tmp_path):
    config, results = _smoke("experiments/review/skull_strip_mri.py:runlocal", tmp_path)
    assert config.data.modality == "mri" and config.data.preprocess[0].startswith("skull_strip")
    assert 0 <= results["test"]["auc"] <= 1
    plain = load_config(str(ROOT / "experiments/review/skull_strip_mri.py:strip=false"))
    assert plain.data.preprocess == ("value_range(min=-1.0, max=1.0)",)
    with pytest.raises(ConfigError, match="MRI phantom only"):
        load_config(str(ROOT / "experiments/review/skull_strip_mri.py:data=pneumoniamnist"))
