"""After preprocessing: NaN or inf blamed on the op (or data) that made it, and training values
far from the range the preprocessing promises fail with the probable cause."""

import warnings

import numpy as np
import pytest

from medjax.data import load_dataset
from medjax.data.pipeline import preprocess_dataset
from medjax.data.preprocess_check import RangeWarning, promised_range
from medjax.data.source import Dataset, Split
from medjax.errors import DataError
from medjax.ops import build_preprocess

from .test_data_bounds import good_arrays, medmnist_config
from .test_data_values import load_quietly, mixed_folder

DEFAULT = ("value_range(min=-1.0, max=1.0)",)


def dataset(images) -> Dataset:
    images = np.asarray(images)
    labels = np.arange(len(images)) % 2
    return Dataset("t", {"train": Split(images, labels)}, 2, ["a", "b"])


def preprocess(images, specs=DEFAULT, range_check="raise"):
    return preprocess_dataset(dataset(images), build_preprocess(specs), range_check)[0]


def test_16_bit_pixels_through_the_default_value_range_fail_naming_cause_and_fix(tmp_path):
    images = load_quietly(mixed_folder(tmp_path), bit_depth="16")[..., None]  # up to 189 x 257
    with pytest.raises(
        DataError,
        match=r"span -1..379.965 after preprocessing, far outside the -1..1 that "
        r"'value_range\(min=-1.0, max=1.0\)' promises; the raw training pixels span 0..48573 "
        r"\(uint16\) but .* assumes 0..255: 16-bit data\? Set in_max=65535 .*bit_depth='auto'"
        r".*range_check='warn'",
    ):
        preprocess(images)


def test_a_float_npz_scaled_x1000_fails_after_preprocessing(tmp_path):
    arrays = good_arrays()
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = (
            np.random.default_rng(0)
            .random((len(arrays[f"{split}_labels"]), 28, 28))
            .astype(np.float32)
            * 1000
        )
    np.savez(tmp_path / "x1000.npz", **arrays)
    raw = load_dataset(medmnist_config(tmp_path / "x1000.npz"))
    with pytest.raises(
        DataError, match=r"raw training pixels span 0.* \(float32\) but .* assumes 0..255"
    ):
        preprocess_dataset(raw, build_preprocess(DEFAULT))


def test_range_check_warn_and_off(tmp_path):
    images = np.full((4, 8, 8, 1), 65535, np.uint16)
    with pytest.warns(RangeWarning, match="far outside"):
        done = preprocess(images, range_check="warn")
    assert done.splits["train"].images.max() == pytest.approx(513, rel=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RangeWarning)
        preprocess(images, range_check="off")


def test_8_bit_data_through_the_default_preprocessing_passes_silently():
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RangeWarning)
        done = preprocess(images)
    values = done.splits["train"].images
    assert -1 - 1e-6 <= values.min() <= values.max() <= 1 + 1e-6


def test_a_range_far_inside_the_promise_warns_with_the_bit_depth_hint():
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype(np.float32)
    with pytest.warns(
        RangeWarning, match=r"under 1/100 .*config.data.bit_depth='16' to keep 0-65535"
    ):
        preprocess(images, ("value_range(min=-1.0, max=1.0, in_max=65535)",))


HUGE = np.full((4, 8, 8, 1), 3e38, np.float32) * np.linspace(0.5, 1, 64, dtype=np.float32).reshape(
    1, 8, 8, 1
)


def test_nan_made_by_an_op_names_the_op_and_its_position():
    with pytest.raises(
        DataError,
        match=r"turned 4 of 4 train images into NaN .* first at index 0: op 'zscore\(\)' \(number "
        r"2 in config.data.preprocess\) produced it from raw values 1.5e\+38",
    ):
        preprocess(HUGE, ("grayscale()", "zscore()"))


def test_nan_already_in_the_raw_data_is_blamed_on_the_data():
    images = np.ones((4, 8, 8, 1), np.float32)
    images[2, 0, 0] = np.nan
    with pytest.raises(DataError, match="first at index 2: it is already in the raw data"):
        preprocess(images)


@pytest.mark.parametrize(
    "specs, expected",
    [
        (DEFAULT, (-1.0, 1.0)),
        (("value_range(min=0.0, max=1.0)", "resize(size=4)", "to_rgb()"), (0.0, 1.0)),
        (("value_range(min=0.0, max=1.0)", "zscore()"), None),
        (("zscore()", "minmax()"), (0.0, 1.0)),
        (("normalize()",), (-1.0, 1.0)),
        (("minmax()", "pad_to_square(value=-5.0)"), (-5.0, 1.0)),
        (("minmax()", "clip_percentile()"), (0.0, 1.0)),
        (("window(center=40.0, width=400.0, min=-1.0, max=1.0)", "gamma(gamma=2.0)"), (0.0, 1.0)),
        ((), None),
    ],
)
def test_promised_range_follows_the_ops(specs, expected):
    promise = promised_range(specs)
    assert (promise and (promise.low, promise.high)) == expected or (
        promise is None and expected is None
    )
