"""The 3D phantom: volumes of the configured shape, reproducible from the config, lesions
where its masks say (brighter or darker than their surroundings, as the kind says), and one
message for a config that cannot make volumes."""

import numpy as np
import pytest

from medjax.data import load_dataset
from medjax.data.phantom_volume import generate_volumes, lesion_masks
from medjax.errors import ConfigError

from .conftest import tiny_config


def _config(**changes):
    return tiny_config(
        **{"data.source": "phantom3d", "data.depth": 8, "data.image_size": 16, **changes}
    ).data


def test_volumes_have_the_configured_shape_and_are_reproducible():
    cfg = _config()
    a, b = load_dataset(cfg), load_dataset(cfg)
    train = a.splits["train"]
    assert train.images.shape == (128, 8, 16, 16, 1) and train.images.dtype == np.uint8
    assert np.array_equal(train.images, b.splits["train"].images)
    assert sorted(np.bincount(train.labels)) == [64, 64]
    assert a.class_names == ["no_lesion", "lesion_1"]


def test_masks_mark_the_lesions_of_the_volumes():
    cfg = _config()
    masks = lesion_masks(cfg)
    test = load_dataset(cfg).splits["test"]
    assert masks["test"].shape == test.images.shape[:-1]
    assert not masks["test"][test.labels == 0].any()
    assert masks["test"][test.labels == 1].reshape(-1, 8 * 16 * 16).any(1).all()


def test_a_bright_lesion_raises_the_mean_inside_its_mask():
    clean, labels, masks = generate_volumes(64, 8, 16, 2, "mri", 1, seed=5, noise=0.01)
    diffs = [
        clean[i][masks[i]].mean() - clean[i][~masks[i]].mean() for i in np.flatnonzero(labels == 1)
    ]
    assert np.mean(diffs) > 20  # uint8 levels: the lesion's contrast is 0.2-0.35 of 255


@pytest.mark.parametrize(
    "changes, message",
    [({"data.depth": 0}, "data.depth to at least 4"), ({"data.modality": "ct"}, "modality 'ct'")],
)
def test_configs_that_cannot_make_volumes_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset(_config(**changes))
