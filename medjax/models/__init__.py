"""Flax models selected by `config.model.name`; all return logits and sow named features.

Every model is called as `model.apply(variables, images, train=...)` with channel-last images,
and records its stage outputs with `layers.stage_features` (a `self.sow("intermediates", name,
x)` that also adds an optional "perturbations" entry), so class-activation maps can be taken
from any stage with `mutable=["intermediates"]` and gradients with respect to it.
"""

from medjax.models import (  # noqa: F401  (registers the models)
    alexnet,
    cnn,
    cnn_rnn,
    conv_lstm,
    densenet,
    efficientnet,
    efficientnet3d,
    ensemble,
    inception,
    mobilenet,
    resnet,
    resnet_bottleneck,
    two_branch,
    vgg,
    vit,
    vit_variants,
    volume,
    xception,
)
from medjax.models.registry import MODELS, build_model, check_input_size

__all__ = ["MODELS", "build_model", "check_input_size"]
