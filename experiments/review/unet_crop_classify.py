"""Segment, then classify the crop: a U-Net finds the lesion and the plain review CNN
classifies the image cropped to it.

Question: does classifying the region a segmenter found (U-Net, Ronneberger et al. 2015,
trained with Dice + cross-entropy) beat classifying the whole image with the same CNN?
Design: the review's "segmentation prior" family, two-stage: segmentation network -> ROI crop
(the predicted mask's bounding box plus a margin, resized back; an empty mask keeps the
whole image) -> the review recipe's plain CNN (medjax.configs.review).
Data: the phantom source by default (`:data=phantom`; the generator draws each lesion's
mask): BreastMNIST and PneumoniaMNIST have no masks, so they are refused.
Command:
    python -m medjax.run --config experiments/review/unet_crop_classify.py:seed=0 --workdir runs/review/unet_crop0
    python -m medjax.run --config experiments/review/unet_crop_classify.py:runlocal --workdir /tmp/x
Result (phantom, 2048/512/512 ultrasound images, 28 px, seeds 0-2; 2 shared CPU cores): the
U-Net reaches test Dice 0.713 +- 0.012, IoU 0.554 +- 0.015 (pooled pixels); the classifier on
its crops test AUC 0.938 +- 0.002 (balanced accuracy 0.877 +- 0.014), against 0.951 +- 0.003
(0.885 +- 0.008) for the plain CNN on whole images (experiments/review/plain_cnn.py:
data=phantom). The crop prior costs about 0.013 AUC here; a likely reason (not tested) is
that the phantom's lesion is already large in a 28 px image, so the crop mostly removes the
organ the lesion is seen against. About 53% of test images get a non-empty mask (50% have a
lesion).
"""

from medjax.configs.review_segment import segment_review_config


def get_config(arg=None):
    return segment_review_config(arg, "unet", "crop")
