"""Pixel values: one common scale for image files of mixed bit depth (config.data.bit_depth)."""

import warnings

import numpy as np
import pytest

from medjax.data.files import MixedDepthWarning
from medjax.errors import ConfigError
from medjax.train.validate import validate

from .conftest import tiny_config
from .test_sources_files import load, ramp, save

SCENE = ramp()  # 0..189, the same scene at both depths below


def mixed_folder(root):
    save(root / "a" / "eight.png", SCENE)
    save(root / "b" / "sixteen.png", SCENE.astype(np.uint16) * 257)
    save(root / "b" / "odd.png", np.full((8, 8), 1000, np.uint16))  # 1000 / 257 = 3.89
    return root


def load_quietly(root, **changes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixedDepthWarning)
        return load("image_folder", root, **changes).splits["all"].images[..., 0]


def test_bit_depth_auto_gives_one_scene_the_same_values_at_8_and_16_bits(tmp_path):
    images = load_quietly(mixed_folder(tmp_path))
    assert images.dtype == np.float32
    np.testing.assert_array_equal(images[0], SCENE)  # the 8-bit file is not rescaled
    np.testing.assert_array_equal(images[2], SCENE)  # b/sixteen.png: its own scale onto 0-255
    np.testing.assert_allclose(images[1], 1000 / 257, rtol=1e-6)  # b/odd.png: precision kept


def test_bit_depth_8_rounds_16_bit_files_into_uint8(tmp_path):
    images = load_quietly(mixed_folder(tmp_path), bit_depth="8")
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(images[0], SCENE)
    np.testing.assert_array_equal(images[1], 4)
    np.testing.assert_array_equal(images[2], SCENE)


def test_bit_depth_16_scales_8_bit_files_by_257(tmp_path):
    images = load_quietly(mixed_folder(tmp_path), bit_depth="16")
    assert images.dtype == np.uint16
    np.testing.assert_array_equal(images[0], SCENE.astype(np.uint16) * 257)
    np.testing.assert_array_equal(images[1], 1000)


@pytest.mark.parametrize("bit_depth", ["auto", "8", "16"])
def test_a_folder_mixing_depths_gets_one_warning_with_counts(tmp_path, bit_depth):
    with pytest.warns(MixedDepthWarning) as caught:
        load("image_folder", mixed_folder(tmp_path), bit_depth=bit_depth)
    messages = [str(w.message) for w in caught if w.category is MixedDepthWarning]
    assert len(messages) == 1
    assert "1 8-bit (first: a/eight.png), 2 16-bit (first: b/odd.png)" in messages[0]
    assert f"bit_depth={bit_depth!r}" in messages[0]


def test_a_folder_of_one_depth_gets_no_warning_and_16_bit_alone_maps_to_0_255(tmp_path):
    save(tmp_path / "a" / "x.png", SCENE.astype(np.uint16) * 257)
    save(tmp_path / "b" / "y.tif", np.full((8, 8), 65535, np.uint16))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MixedDepthWarning)
        images = load("image_folder", tmp_path).splits["all"].images[..., 0]
        sixteen = load("image_folder", tmp_path, bit_depth="16").splits["all"].images
    np.testing.assert_array_equal(images[0], SCENE)
    np.testing.assert_array_equal(images[1], 255)
    assert sixteen.dtype == np.uint16 and sixteen.max() == 65535


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("bit_depth", "12", "='12' must be one of auto, 8, 16"),
        ("range_check", "maybe", "='maybe' must be one of raise, warn, off"),
        ("max_examples_per_split", -1, "=-1 must be at least 0"),
    ],
)
def test_validate_value_keys(key, value, message):
    with pytest.raises(ConfigError, match=f"config.data.{key}{message}"):
        validate(tiny_config(**{f"data.{key}": value}))
