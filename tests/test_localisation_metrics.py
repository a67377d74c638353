"""Localisation and faithfulness metrics (medjax.eval.localisation) on cases with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from medjax.eval import localisation as loc


def _square_masks(n=4, size=12, top=2, side=3):
    masks = np.zeros((n, size, size), bool)
    masks[:, top : top + side, top : top + side] = True
    return masks


def test_map_peaked_in_the_mask_always_hits():
    masks = _square_masks()
    maps = np.random.default_rng(0).uniform(0, 0.5, masks.shape)
    maps[:, 3, 3] = 2.0  # inside the 2..4 square
    assert loc.pointing_hits(maps, masks).all()
    maps[:, 9, 9] = 3.0  # the peak moves outside
    assert not loc.pointing_hits(maps, masks).any()


@pytest.mark.parametrize("tolerance", [0, 1, 3, 5.5, 8])
def test_pointing_tolerance_matches_a_distance_transform(tolerance):
    rng = np.random.default_rng(1)
    masks = rng.uniform(size=(30, 16, 16)) > 0.97
    masks[:, 0, 0] = True  # every image has a lesion
    maps = rng.normal(size=masks.shape)
    hits = loc.pointing_hits(maps, masks, tolerance)
    for i in range(len(maps)):
        r, c = np.unravel_index(maps[i].argmax(), maps[i].shape)
        distance = ndimage.distance_transform_edt(~masks[i])[r, c]
        assert hits[i] == (distance <= tolerance)


def test_energy_fraction_by_hand():
    masks = np.zeros((1, 4, 4), bool)
    masks[0, :2, :2] = True
    maps = np.zeros((1, 4, 4))
    maps[0, :2, :2] = 1.0  # 4 inside
    maps[0, 3, 2:] = 3.0  # 6 outside
    maps[0, 2, :] = -5.0  # negative evidence does not count
    np.testing.assert_allclose(loc.energy_fractions(maps, masks), [4 / 10])
    assert loc.energy_fractions(-np.ones((1, 4, 4)), masks)[0] == 0.0


def test_baselines():
    masks = _square_masks(n=400, size=20, top=3, side=6)
    area = masks.mean()
    rand = loc.random_maps(masks.shape, seed=3)
    assert abs(loc.energy_fractions(rand, masks).mean() - area) < 0.01
    assert abs(loc.pointing_hits(rand, masks).mean() - area) < 0.04
    centred = np.zeros_like(masks)
    centred[:, 7:13, 7:13] = True
    assert loc.pointing_hits(loc.centre_maps(masks.shape), centred).all()
    assert not loc.pointing_hits(loc.centre_maps(masks.shape), masks).any()


def test_blur_matches_scipy():
    images = np.random.default_rng(2).uniform(size=(2, 15, 17, 3)).astype(np.float32)
    expected = ndimage.gaussian_filter(images, (0, 2, 2, 0), mode="mirror", truncate=3.0)
    np.testing.assert_allclose(loc.blur(images, 2.0), expected, atol=1e-5)


def test_auc_is_the_trapezoid():
    curve = np.random.default_rng(3).uniform(size=(5, 9))
    np.testing.assert_allclose(loc.auc(curve), np.trapezoid(curve, np.linspace(0, 1, 9)))


PIXEL = (5, 7)  # the only pixel the model looks at


@jax.jit
def _one_pixel_probs(images):
    """Class 1 probability sigmoid(10 (x[PIXEL] - 0.5))."""
    logit = 10 * (images[:, PIXEL[0], PIXEL[1], 0] - 0.5)
    return jnp.stack([jax.nn.sigmoid(-logit), jax.nn.sigmoid(logit)], 1)


def test_deletion_and_insertion_of_a_one_pixel_model():
    n, size, steps = 3, 10, 10  # 100 pixels, 10 per step
    images = np.ones((n, size, size, 1), np.float32)
    high, low = jax.nn.sigmoid(5.0), jax.nn.sigmoid(-5.0)
    first = np.zeros((n, size, size))
    first[:, PIXEL[0], PIXEL[1]] = 1.0  # the pixel goes first
    last = 1.0 - first  # the pixel goes last
    targets = np.ones(n, int)
    kw = dict(steps=steps, baseline=0.0)

    deleted = loc.curves(_one_pixel_probs, images, first, targets, mode="deletion", **kw)
    np.testing.assert_allclose(deleted, [[high] + [low] * steps] * n, rtol=1e-6)
    expect_first = (high + low) / (2 * steps) + low * (steps - 1) / steps
    np.testing.assert_allclose(loc.auc(deleted), expect_first, rtol=1e-6)
    late = loc.auc(loc.curves(_one_pixel_probs, images, last, targets, mode="deletion", **kw))
    np.testing.assert_allclose(late, high * (steps - 1) / steps + (high + low) / (2 * steps))

    inserted = loc.curves(_one_pixel_probs, images, first, targets, mode="insertion", **kw)
    np.testing.assert_allclose(inserted, [[low] + [high] * steps] * n, rtol=1e-6)

    scores = loc.deletion_insertion(
        _one_pixel_probs, images, first, targets, random_orderings=20, **kw
    )
    assert scores["deletion"] < scores["deletion_random"] < late.mean()
    assert scores["insertion"] > scores["insertion_random"]
    # a random ordering deletes the pixel at a uniform step: the mean AUC is near the middle
    assert abs(scores["deletion_random"] - (high + low) / 2) < 0.15


def test_report_uses_only_images_with_a_lesion():
    masks = _square_masks(n=6)
    masks[3:] = False
    maps = np.zeros(masks.shape)
    maps[:3, 3, 3] = 1.0  # hits on the lesion images; misses on the lesion-free ones ignored
    report = loc.localisation_report(maps, masks, np.array([1, 1, 1, 0, 0, 0]))
    assert report["images"] == 3 and report["pointing"] == 1.0
    np.testing.assert_allclose(report["area_fraction"], 9 / 144)
    with pytest.raises(ValueError, match="no image has a lesion"):
        loc.localisation_report(maps, np.zeros_like(masks), np.zeros(6, int))
