"""Ground-truth lesion masks of the phantom source (medjax.data.phantom)."""

import hashlib

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from medjax.configs import get_base_config
from medjax.data import load_dataset
from medjax.data.phantom import generate, phantom_masks
from medjax.errors import ConfigError

# sha256 prefixes of generate()'s arrays recorded with the code before masks existed (numpy
# 2.x): asking for masks must not change a single generated pixel or label.
BEFORE = {
    (40, 28, 4, "xray", 1, 17, 1.0): ("ceaca736a656e9e7", "0db9f38fecd15741"),
    (40, 28, 2, "ultrasound", 1, 17, 1.0): ("46f3f290ece2ad3f", "3cc69cfb446ae94c"),
    (40, 28, 5, "mri", 1, 17, 1.0): ("94f7ab5e552d92e7", "2d353796a3f74d60"),
    (30, 64, 4, "mri", 3, 5, 2.5): ("32fd92884a19f6a9", "92d6d2218134f995"),
}


def _digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("args", list(BEFORE))
def test_masks_leave_images_and_labels_bit_identical(args):
    images, labels = generate(*args)
    images2, labels2, masks = generate(*args, with_masks=True)
    assert (_digest(images), _digest(labels)) == BEFORE[args]
    assert (_digest(images2), _digest(labels2)) == BEFORE[args]
    assert masks.dtype == bool and masks.shape == images.shape[:3]
    # every lesion image has a lesion, every lesion-free one an all-false mask
    np.testing.assert_array_equal(masks.any((1, 2)), labels > 0)


def test_masks_cover_the_bright_lesions():
    """With little noise, a bright solid lesion (class 1) is brighter inside its mask than in
    the band just outside it; the mask is where the generator drew the lesion."""
    images, labels, masks = generate(64, 32, 2, "mri", 1, 3, noise=0.2, with_masks=True)
    for img, m in zip(images[labels == 1, ..., 0], masks[labels == 1], strict=True):
        band = binary_dilation(m, iterations=3) & ~m
        assert img[m].mean() > img[band].mean() + 10


def _data_config(**kw):
    c = get_base_config().data
    c.update(dict(num_train=120, num_val=48, num_test=48, **kw))
    return c


@pytest.mark.parametrize(
    "kw", [{}, {"max_examples_per_split": 30}, {"num_folds": 3, "fold": 2}], ids=str
)
def test_phantom_masks_follow_the_loaded_splits(kw):
    cfg = _data_config(**kw)
    dataset, masks = load_dataset(cfg), phantom_masks(cfg)
    assert set(masks) == set(dataset.splits)
    for name, split in dataset.splits.items():
        assert masks[name].shape == split.images.shape[:3]
        np.testing.assert_array_equal(masks[name].any((1, 2)), split.labels > 0)
    if not kw:  # official splits: exactly the generator's masks for the split's seed
        np.testing.assert_array_equal(
            masks["val"], generate(48, 28, 2, "ultrasound", 1, 1017, with_masks=True)[2]
        )


def test_phantom_masks_refuse_other_sources():
    cfg = _data_config()
    cfg.source = "medmnist"
    with pytest.raises(ConfigError, match="phantom"):
        phantom_masks(cfg)


def test_phantom_folder_writes_masks_beside_unchanged_images(tmp_path):
    from PIL import Image

    from medjax.data import fetch

    root, masks_root = tmp_path / "img", tmp_path / "masks"
    sizes = ["--size", "16", "--classes", "3", "--train", "6", "--val", "3", "--test", "3"]
    fetch.main(["phantom", "--dir", str(root), "--masks", str(masks_root), *sizes])
    images, labels = generate(6, 16, 3, "mri", 1, 0, 2.5)  # train: seed 1000 * 0 + 0
    expected = generate(6, 16, 3, "mri", 1, 0, 2.5, with_masks=True)[2]
    for k, label in enumerate(labels):
        name = ["no_lesion", "lesion_1", "lesion_2"][label]
        rel = f"train/{name}/{k:05d}.png"
        np.testing.assert_array_equal(np.asarray(Image.open(root / rel)), images[k, ..., 0])
        np.testing.assert_array_equal(np.asarray(Image.open(masks_root / rel)) > 0, expected[k])
    assert len(list(masks_root.rglob("*.png"))) == len(list(root.rglob("*.png"))) == 12
