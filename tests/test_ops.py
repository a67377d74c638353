import jax
import jax.numpy as jnp
import numpy as np

from medjax.ops import build_augment, build_preprocess


def test_value_range_maps_uint8_to_minus_one_one():
    fn = build_preprocess(["value_range(min=-1.0, max=1.0)"])
    out = fn(jnp.array([[[0], [255]]], jnp.uint8))
    np.testing.assert_allclose(np.asarray(out).ravel(), [-1.0, 1.0])


def test_augment_is_pure_and_keyed():
    fn = jax.jit(
        build_augment(
            [
                "random_flip(axis='both')",
                "random_affine(rotate=20, zoom=0.1, shift=0.1, shear=5)",
                "gaussian_noise(std=0.1, p=1.0)",
            ]
        )
    )
    image = jax.random.uniform(jax.random.key(0), (28, 28, 1))
    a, b = fn(jax.random.key(1), image), fn(jax.random.key(1), image)
    c = fn(jax.random.key(2), image)
    assert a.shape == image.shape and a.dtype == image.dtype
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_affine_at_zero_strength_is_identity():
    fn = build_augment(["random_affine()"])
    image = jax.random.uniform(jax.random.key(0), (16, 12, 3))
    np.testing.assert_allclose(fn(jax.random.key(3), image), image, atol=1e-5)


def test_flip_with_probability_one_is_an_involution():
    fn = build_augment(["random_flip(axis='lr', p=1.0)"])
    image = jax.random.uniform(jax.random.key(0), (8, 8, 1))
    np.testing.assert_array_equal(fn(jax.random.key(0), image), image[:, ::-1])
    np.testing.assert_array_equal(fn(jax.random.key(5), fn(jax.random.key(4), image)), image)
