"""Segment, then classify with the mask as a channel: a DeepLabV3+ finds the lesion and the
plain review CNN sees the image with the predicted mask beside it.

Question: does telling the classifier where a segmenter (DeepLabV3+, Chen et al. 2018: ASPP
over a dilated backbone plus a low-level decoder; Dice + cross-entropy) found the lesion, as
an extra input channel, beat classifying the image alone with the same CNN?
Design: the review's "segmentation prior" family, two-stage: segmentation network -> mask as
an input channel (-1 background, 1 lesion) -> the review recipe's plain CNN
(medjax.configs.review). The crop variant is experiments/review/unet_crop_classify.py.
Data: the phantom source by default (`:data=phantom`; the generator draws each lesion's
mask): BreastMNIST and PneumoniaMNIST have no masks, so they are refused.
Command:
    python -m medjax.run --config experiments/review/deeplabv3plus_channel_classify.py:seed=0 --workdir runs/review/dlv3p_channel0
    python -m medjax.run --config experiments/review/deeplabv3plus_channel_classify.py:runlocal --workdir /tmp/x
Result (phantom, 2048/512/512 ultrasound images, 28 px, seeds 0-2; 2 shared CPU cores):
DeepLabV3+ reaches test Dice 0.723 +- 0.006, IoU 0.566 +- 0.008; the classifier with the mask
channel test AUC 0.947 +- 0.007 (balanced accuracy 0.887 +- 0.013; seeds 0.938, 0.951, 0.951),
against 0.951 +- 0.003 (0.885 +- 0.008) for the plain CNN on whole images
(experiments/review/plain_cnn.py:data=phantom): no gain within the seeds' spread.
"""

from medjax.configs.review_segment import segment_review_config


def get_config(arg=None):
    return segment_review_config(arg, "deeplabv3plus", "channel")
