"""Preprocessing, augmentation and mixing ops: references where one exists, properties
everywhere, 2D images and 3D volumes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
from PIL import Image

from medjax.errors import ConfigError
from medjax.ops import AUGMENT_OPS, build_augment, build_mix
from medjax.ops.spatial_augment import affine

IMAGE = jax.random.uniform(jax.random.key(0), (28, 24, 1))
VOLUME = jax.random.uniform(jax.random.key(1), (12, 14, 16, 1))

# Every augmentation op at full probability: (spec, spec at zero strength).
AUGMENTS = [
    ("random_flip(axis='all')", None),
    ("random_affine(rotate=20, zoom=0.1, shift=0.1, shear=8)", "random_affine()"),
    ("elastic(alpha=8.0, sigma=3.0, p=1.0)", "elastic(alpha=0.0, p=1.0)"),
    ("brightness(delta=0.2, p=1.0)", "brightness(delta=0.0, p=1.0)"),
    ("contrast(factor=0.3, p=1.0)", "contrast(factor=0.0, p=1.0)"),
    ("gamma_jitter(gamma=0.5, p=1.0)", "gamma_jitter(gamma=0.0, p=1.0)"),
    ("gaussian_noise(std=0.1, p=1.0)", "gaussian_noise(std=0.0, p=1.0)"),
    ("speckle_noise(std=0.2, p=1.0)", "speckle_noise(std=0.0, p=1.0)"),
    ("rician_noise(std=0.1, p=1.0)", "rician_noise(std=0.0, p=1.0)"),
    ("bias_field(strength=0.4, p=1.0)", "bias_field(strength=0.0, p=1.0)"),
    ("random_blur(sigma=1.5, p=1.0)", "random_blur(sigma=0.0, p=1.0)"),
    ("random_crop(padding=3)", "random_crop(padding=0)"),
    ("cutout(size=0.3, count=2, p=1.0)", "cutout(size=0.0, p=1.0)"),
]


def test_every_registered_augment_op_is_tested():
    tested = {spec.split("(")[0] for spec, _ in AUGMENTS}
    assert tested == set(AUGMENT_OPS.names())


@pytest.mark.parametrize("spec,identity", AUGMENTS)
@pytest.mark.parametrize("x", [IMAGE, VOLUME], ids=["2d", "3d"])
def test_augment_op_properties(spec, identity, x):
    fn = jax.jit(build_augment([spec]))
    a, b = fn(jax.random.key(1), x), fn(jax.random.key(1), x)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert np.isfinite(np.asarray(a)).all()
    np.testing.assert_array_equal(a, b)  # same key, same output
    assert any(not np.allclose(a, fn(jax.random.key(k), x)) for k in range(2, 6))
    if identity:
        out = build_augment([identity])(jax.random.key(3), x)
        np.testing.assert_allclose(out, x, atol=1e-5)
    # vmapped over a batch with per-example keys, as in the train step
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(1), i))(jnp.arange(3))
    batch = jax.vmap(build_augment([spec]))(keys, jnp.stack([x] * 3))
    np.testing.assert_allclose(batch[1], build_augment([spec])(keys[1], x), atol=1e-5)


def test_probability_zero_is_identity():
    fn = build_augment([s.replace("p=1.0", "p=0.0") for s, _ in AUGMENTS if "p=1.0" in s])
    np.testing.assert_array_equal(fn(jax.random.key(0), IMAGE), IMAGE)


@pytest.mark.parametrize("x", [IMAGE, VOLUME], ids=["2d", "3d"])
def test_flips_are_involutions(x):
    fn = build_augment(["random_flip(axis='all', p=1.0)"])
    np.testing.assert_array_equal(fn(jax.random.key(4), fn(jax.random.key(5), x)), x)
    lr = build_augment(["random_flip(axis='lr', p=1.0)"])(jax.random.key(0), x)
    np.testing.assert_array_equal(lr, jnp.flip(x, -2))


class AffineMatchesReferences(chex.TestCase):
    """`affine` runs jitted inside the train step but is also a plain function: each reference
    check runs both ways (its 2D/3D rotation is chosen by the angles' shape)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_rotation_matches_scipy_and_pil(self):
        x = np.asarray(jax.random.uniform(jax.random.key(0), (29, 29, 1)))
        rotate = self.variant(lambda x, a: affine(x, a, order=1))
        np.testing.assert_allclose(rotate(jnp.asarray(x), 90.0), np.rot90(x), atol=1e-5)
        ref = ndi.rotate(x, 30, axes=(1, 0), reshape=False, order=1, mode="nearest")
        out = np.asarray(rotate(jnp.asarray(x), 30.0))
        np.testing.assert_allclose(out, ref, atol=1e-5)
        pil = np.asarray(Image.fromarray(x[..., 0], mode="F").rotate(30, resample=Image.BILINEAR))
        np.testing.assert_allclose(out[6:23, 6:23, 0], pil[6:23, 6:23], atol=1e-4)  # PIL pads 0

    @chex.variants(with_jit=True, without_jit=True)
    def test_affine_matches_scipy_affine_transform_2d_and_3d_linear_and_cubic(self):
        cases = [
            (x, angles, order)
            for x, angles in ((IMAGE, 17.0), (VOLUME, jnp.array([17.0, 0.0, 0.0])))
            for order in (1, 3)
        ]
        for x, angles, order in cases:
            transform = self.variant(
                lambda x, angles, order=order: affine(x, angles, scale=1.1, shear=5.0, order=order)
            )
            out = transform(x, angles)
            n = x.ndim - 1
            size = np.array(x.shape[:-1], np.float64)
            a, sh = np.deg2rad(-17.0), np.tan(np.deg2rad(5.0))
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            linear = np.eye(n)
            linear[n - 2 :, n - 2 :] = rot @ np.array([[1, sh], [0, 1]])
            linear /= 1.1
            centre = (size - 1) / 2
            ref = ndi.affine_transform(
                np.asarray(x)[..., 0], linear, centre - linear @ centre, order=order, mode="nearest"
            )
            np.testing.assert_allclose(out[..., 0], ref, atol=1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_volume_rotation_by_90_about_depth_is_rot90_of_each_slice(self):
        v = jax.random.uniform(jax.random.key(0), (5, 9, 9, 1))
        out = self.variant(lambda v, a: affine(v, a, order=1))(v, jnp.array([90.0, 0.0, 0.0]))
        np.testing.assert_allclose(out, np.rot90(np.asarray(v), axes=(1, 2)), atol=1e-5)


def test_mixup_and_cutmix_mix_labels_by_what_they_mix():
    images = jax.random.uniform(jax.random.key(0), (8, 16, 16, 1))
    targets = jax.nn.one_hot(jnp.arange(8) % 2, 2)
    for spec in ("mixup(alpha=0.4)", "cutmix(alpha=1.0, p=1.0)"):
        mixed, soft = jax.jit(build_mix(spec))(jax.random.key(1), images, targets)
        assert mixed.shape == images.shape
        np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-6)
        # Each output is a combination of the example and its partner (the batch reversed).
        own = np.asarray(jnp.where(targets[:, 0] == 1, soft[:, 0], soft[:, 1]))
        if spec.startswith("mixup"):
            np.testing.assert_allclose(
                mixed,
                own[:, None, None, None] * images + (1 - own[:, None, None, None]) * images[::-1],
                atol=1e-5,
            )
        else:
            from_own = np.isclose(mixed, images).mean((1, 2, 3))
            np.testing.assert_allclose(from_own, own, atol=1e-6)
    same, t = build_mix("mixup(p=0.0)")(jax.random.key(1), images, targets)
    np.testing.assert_array_equal(same, images)
    np.testing.assert_array_equal(t, targets)


def test_cutmix_on_volumes():
    vol = jax.random.uniform(jax.random.key(0), (4, 8, 8, 8, 1))
    mixed, soft = build_mix("cutmix(p=1.0)")(
        jax.random.key(2), vol, jax.nn.one_hot(jnp.arange(4), 4)
    )
    assert mixed.shape == vol.shape and np.allclose(soft.sum(1), 1)


@pytest.mark.parametrize(
    "spec,error",
    [
        ("no_such_op()", "unknown augmentation op 'no_such_op'"),
        ("random_flip(axes='lr')", "has no argument 'axes'"),
        ("random_flip(axis='diagonal')", "axis must be one of"),
        ("random_affine(zoom=1.5)", "zoom must be < 1"),
        ("gaussian_noise(p=2.0)", "p must be in [0, 1]"),
        ("random_affine(rotate=", "cannot parse op"),
    ],
)
def test_bad_augment_specs_fail_at_config_time(spec, error):
    with pytest.raises(ConfigError, match=r".*" + error.replace("[", r"\[").replace("]", r"\]")):
        build_augment([spec])
