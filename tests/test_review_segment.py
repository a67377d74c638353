"""The segmentation prior (medjax.segment): segmenters, Dice/IoU, masks aligned with their
images, the crop and channel transforms, the two-stage run and its resumption, bad input."""

import json

import jax
import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation
from sklearn.metrics import f1_score, jaccard_score

from medjax.configs import as_plain, get_base_config, load_config
from medjax.data import load_dataset
from medjax.data.source import Split
from medjax.errors import ConfigError, DataError
from medjax.segment import build_segmenter
from medjax.segment import train as stage1
from medjax.segment.masks import check_aligned, load_masks
from medjax.segment.metrics import segmentation_metrics
from medjax.segment.transform import add_mask_channel, box, crop_to_masks
from medjax.train.validate import validate


def _segment_config(model="unet", widths=(4, 8), **segment):
    c = get_base_config()
    c.data.num_train, c.data.num_val, c.data.num_test = 64, 32, 32
    c.data.cache = False
    c.segment.update(dict(model=model, widths=widths, atrous_rates=(1, 2), **segment))
    return c


def _param_count(model, size, channels):
    x = jax.ShapeDtypeStruct((1, size, size, channels), np.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))


def test_dice_and_iou_match_sklearn_on_pooled_pixels():
    rng = np.random.default_rng(0)
    true = rng.random((20, 8, 8)) < 0.3
    pred = true ^ (rng.random((20, 8, 8)) < 0.2)
    m = segmentation_metrics(pred, true, bootstrap=50)
    assert m["dice"] == pytest.approx(f1_score(true.ravel(), pred.ravel()))
    assert m["iou"] == pytest.approx(jaccard_score(true.ravel(), pred.ravel()))
    per = [f1_score(t.ravel(), p.ravel()) for p, t in zip(pred, true, strict=True) if t.any()]
    assert m["mean_dice_lesion_images"] == pytest.approx(np.mean(per))
    assert m["ci95"]["dice"][0] < m["dice"] < m["ci95"]["dice"][1]
    empty = np.zeros((3, 4, 4), bool)
    assert segmentation_metrics(empty, empty)["dice"] == 1.0


def test_unet_parameter_counts_match_published_ones():
    """The 2015 U-Net (widths 64..1024, 1 input channel, 2 classes, conv biases, no norm):
    31,030,658 trainable parameters, as jakeret/tf_unet (layers=5, features_root=64) and
    Keras model summaries of the paper's network report; with batch norm and 3 input
    channels (milesial/Pytorch-UNet, UNet(3, 2, bilinear=False)): 31,037,698."""
    cfg = _segment_config(widths=(64, 128, 256, 512, 1024), norm="none").segment
    assert _param_count(build_segmenter(cfg, 32), 32, 1) == 31_030_658
    cfg.norm = "batch"
    assert _param_count(build_segmenter(cfg, 32), 32, 3) == 31_037_698


@pytest.mark.parametrize("model", ["unet", "fcn", "deeplabv3", "deeplabv3plus"])
def test_segmenters_give_per_pixel_logits(model):
    seg = build_segmenter(_segment_config(model, widths=(4, 8, 8)).segment, 28)
    x = np.zeros((2, 28, 28, 1), np.float32)
    variables = seg.init(jax.random.key(0), x)
    assert seg.apply(variables, x).shape == (2, 28, 28, 2)


def test_masks_follow_images_through_resize_and_splits():
    """Resized and k-fold split, each mask still lies on its own image's bright lesion, and
    no longer on another image's: masks move with images, not after them."""
    c = _segment_config()
    c.data.update(dict(num_folds=3, fold=1, max_examples_per_split=40, modality="mri"))
    c.data.preprocess = ("resize(size=20)", "value_range(min=-1.0, max=1.0)")
    from medjax.data.pipeline import preprocess_dataset
    from medjax.ops import build_preprocess

    dataset, _ = preprocess_dataset(load_dataset(c.data), build_preprocess(c.data.preprocess))
    masks = load_masks(c.data)
    check_aligned(dataset.splits, masks, "phantom")
    split, m = dataset.splits["train"], masks["train"]
    assert m.shape == (40, 20, 20)
    np.testing.assert_array_equal(m.any((1, 2)), split.labels > 0)
    lesion = np.flatnonzero(split.labels == 1)

    def contrast(image_idx, mask_idx):  # inside the mask minus the band just outside it
        img, inside = split.images[image_idx, ..., 0], m[mask_idx]
        band = binary_dilation(inside, iterations=2) & ~inside
        return img[inside].mean() - img[band].mean()

    own = np.array([contrast(i, i) for i in lesion])
    other = np.array([contrast(i, j) for i, j in zip(lesion, np.roll(lesion, 1), strict=True)])
    assert np.mean(own > 0.25) > 0.9 and own.mean() > other.mean() + 0.25


def test_crop_to_a_known_mask():
    image = np.arange(16 * 16, dtype=np.float32).reshape(1, 16, 16, 1)
    mask = np.zeros((1, 16, 16), bool)
    mask[0, 4:8, 2:10] = True  # 4 rows x 8 cols
    assert box(mask[0], 0.0) == (4, 8, 2, 10)
    assert box(mask[0], 0.25) == (3, 9, 0, 12)  # 1 row and 2 columns more each side
    out, empty = crop_to_masks(image, mask, 0.0, order=0)
    # nearest-neighbour: each crop pixel repeated 4x down and 2x across
    expect = np.repeat(np.repeat(image[0, 4:8, 2:10], 4, 0), 2, 1)
    np.testing.assert_array_equal(out[0], expect)
    assert empty == 0
    kept, empty = crop_to_masks(image, np.zeros_like(mask), 0.0)
    np.testing.assert_array_equal(kept, image) and empty == 1
    channel = add_mask_channel(image, mask)
    assert channel.shape == (1, 16, 16, 2) and set(np.unique(channel[..., 1])) == {-1.0, 1.0}


def test_two_stage_run_end_to_end(tmp_path):
    from medjax.train.loop import train_and_evaluate

    c = _segment_config(steps=4, eval_every_steps=2, batch_size=16)
    c.train.num_steps, c.train.batch_size, c.train.eval_every_epochs = 4, 16, 1.0
    c.model.widths, c.eval.bootstrap_samples, c.log.plots = (4, 8), 20, False
    c.log.tensorboard = False
    results = train_and_evaluate(c, str(tmp_path))
    seg = results["segmentation"]
    assert seg["model"] == "unet" and 0 <= seg["test"]["dice"] <= 1
    assert seg["selected_by"] == "val_dice" and seg["selected_step"] in (2, 4)
    summary = json.loads((tmp_path / "data_summary.json").read_text())
    assert summary["segment_prior"]["use"] == "crop"
    assert (tmp_path / "segmenter" / "checkpoints").is_dir()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["segmentation"]["test"]["iou"] == seg["test"]["iou"]


def test_segmenter_killed_and_resumed_is_the_same(tmp_path):
    c = _segment_config(steps=5, eval_every_steps=2, batch_size=8)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(24, 12, 12, 1)).astype(np.float32)
    masks = images[..., 0] > 0.5
    pair = (images, masks)
    seg = stage1.Segmenter(c, images.shape[1:])
    whole, best = stage1.train(seg, str(tmp_path / "a"), pair, pair)

    def kill(step, state):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stage1.train(seg, str(tmp_path / "b"), pair, pair, hooks=[kill])
    resumed, best2 = stage1.train(seg, str(tmp_path / "b"), pair, pair)
    assert best2 == best
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_segment_on_data_without_masks_names_the_source():
    c = _segment_config()
    c.data.source, c.data.name = "medmnist", "breastmnist"
    with pytest.raises(ConfigError, match="'medmnist' has none.*_mask.png"):
        validate(c)


def test_unknown_segmenter_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="deeplabv3, deeplabv3plus, fcn, unet"):
        validate(_segment_config("segnet"))


def test_content_dependent_crops_are_refused_with_a_prior():
    c = _segment_config()
    c.data.preprocess = ("foreground_crop()", "value_range(min=-1.0, max=1.0)")
    with pytest.raises(ConfigError, match="foreground_crop.*its mask cannot follow"):
        validate(c)


def _folder(tmp_path, mask_size=(12, 12)):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(np.full((12, 12), 20 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
            mask = np.zeros(mask_size[::-1], np.uint8)
            mask[:4, : i + 1] = 255
            Image.fromarray(mask).save(tmp_path / cls / f"{i}_mask.png")
    c = _segment_config()
    c.data.update(dict(source="image_folder", path=str(tmp_path), image_size=12))
    return c


def test_file_masks_follow_their_images_and_are_not_images(tmp_path):
    c = _folder(tmp_path)
    dataset = load_dataset(c.data)
    masks = load_masks(c.data)
    assert sum(len(s) for s in dataset.splits.values()) == 20  # no mask taken as an image
    for name, split in dataset.splits.items():
        # image i is 20 * i everywhere; its mask covers i + 1 columns of the top 4 rows
        i = split.images[:, 0, 0, 0] // 20
        np.testing.assert_array_equal(masks[name].sum((1, 2)), 4 * (i + 1))


def test_mask_of_another_size_names_the_file(tmp_path):
    c = _folder(tmp_path, mask_size=(12, 10))
    with pytest.raises(DataError, match=r"0_mask.png: the mask is 12x10 pixels but its image"):
        load_masks(c.data)


def test_misaligned_masks_are_refused():
    split = Split(np.zeros((3, 4, 4, 1)), np.zeros(3, np.int32))
    with pytest.raises(DataError, match="'train' split has images"):
        check_aligned({"train": split}, {"train": np.zeros((3, 5, 4), bool)}, "x")


def test_tools_that_would_skip_the_prior_refuse_the_run(tmp_path):
    """predict, explain, export and evaluate would classify images the prior never prepared."""
    from medjax.errors import WorkdirError
    from medjax.inference import load_run

    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "results.json").write_text("{}")
    c = load_config("experiments/review/unet_crop_classify.py:runlocal")
    (workdir / "config.json").write_text(json.dumps(as_plain(c)))
    with pytest.raises(WorkdirError, match="segmentation prior"):
        load_run(str(workdir))
