"""Segmentation as a prior for classification (config.segment): segmenters by name
(`SEGMENTERS`: unet, fcn, deeplabv3, deeplabv3plus), their Dice + cross-entropy training on
the data's lesion masks (medjax.segment.train), and the stage that rewrites the classifier's
images with the predicted masks (medjax.segment.prior)."""

from medjax.segment.models import SEGMENTERS, build_segmenter

__all__ = ["SEGMENTERS", "build_segmenter"]
