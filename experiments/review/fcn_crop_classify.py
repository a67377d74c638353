"""Segment, then classify the crop: an FCN finds the lesion and the plain review CNN
classifies the image cropped to it.

Question: is a fully convolutional network (FCN-8s style, Long et al. 2015: score maps of
the last stages fused coarse to fine; Dice + cross-entropy) a good enough localiser for the
crop prior, against the U-Net of experiments/review/unet_crop_classify.py and against the
whole image?
Design: the review's "segmentation prior" family, two-stage: segmentation network -> ROI crop
(the predicted mask's bounding box plus a margin, resized back; an empty mask keeps the
whole image) -> the review recipe's plain CNN (medjax.configs.review).
Data: the phantom source by default (`:data=phantom`; the generator draws each lesion's
mask): BreastMNIST and PneumoniaMNIST have no masks, so they are refused.
Command:
    python -m medjax.run --config experiments/review/fcn_crop_classify.py:seed=0 --workdir runs/review/fcn_crop0
    python -m medjax.run --config experiments/review/fcn_crop_classify.py:runlocal --workdir /tmp/x
Result (phantom, 2048/512/512 ultrasound images, 28 px, seeds 0-2; 2 shared CPU cores): the
FCN reaches test Dice 0.717 +- 0.002, IoU 0.558 +- 0.002 (the U-Net of unet_crop_classify.py:
0.713 +- 0.012, 0.554 +- 0.015); the classifier on its crops test AUC 0.943 +- 0.004
(balanced accuracy 0.893 +- 0.006), against 0.951 +- 0.003 (0.885 +- 0.008) for the plain CNN
on whole images (experiments/review/plain_cnn.py:data=phantom) and 0.938 +- 0.002 with the
U-Net's crops: as good a localiser as the U-Net here, and the crop prior still does not beat
the whole image in AUC.
"""

from medjax.configs.review_segment import segment_review_config


def get_config(arg=None):
    return segment_review_config(arg, "fcn", "crop")
