"""keras.applications layer names -> medjax variable paths, one converter per model family.

As torchvision.py's converters, each walks the file's own layers (so a deeper or shallower
variant converts too and is reported against the model afterwards) and returns medjax's
variables plus the layer names it used. Keras' layouts are already channel-last: Conv2D
kernels are HWIO as medjax's, Dense kernels (in, out); DepthwiseConv2D kernels (k, k, C, 1)
become (k, k, 1, C); BatchNormalization gamma/beta/moving_mean/moving_variance become
BatchNorm_0 scale/bias and batch_stats mean/var. A convolution bias in front of a batch norm
(Keras' ResNets) is folded into that norm's moving mean: BN(conv + b) with mean m equals BN(conv)
with mean m - b, exactly, and in training the batch mean cancels b anyway.

The models need `config.model.layout = "keras"` (see medjax.models.registry.keras_layout).
"""

import math
import re

import numpy as np

from medjax.errors import ConfigError
from medjax.models.efficientnet import B0_STAGES, SCALING
from medjax.models.mobilenet import STAGES as MOBILENET_STAGES
from medjax.weights.keras_file import KerasWeights
from medjax.weights.torchvision import BN, FAMILIES, Converter, Family


class KerasConverter(Converter):
    """Takes a file's layers by name (each at most once) and places them at medjax paths."""

    def __init__(self, weights: KerasWeights, model_name: str):
        super().__init__(weights.layers, model_name)
        self.weights, self.notes = weights, []

    def take(self, name: str, count: int = 0) -> list[np.ndarray]:
        if name not in self.sd:
            raise ConfigError(
                f"the weights file lacks layer {name!r}, which Keras' "
                f"{KERAS_NAMES.get(self.model_name, self.model_name)} has; does the file hold "
                f"another model's weights?{hint(self.weights, self.model_name)}"
            )
        if name in self.used:  # a converter bug, not a user error
            raise AssertionError(f"layer {name} used twice")
        arrays = self.sd[name]
        if count and len(arrays) != count:
            raise ConfigError(
                f"layer {name!r} of the weights file has {len(arrays)} variables, not the "
                f"{count} keras.applications' layer of that name has"
            )
        self.used.add(name)
        return [a.astype(np.float32, copy=False) for a in arrays]

    def conv(self, path: tuple, name: str, bias: bool = False) -> None:
        arrays = self.take(name, 2 if bias else 1)
        self.put("params", (*path, "kernel"), arrays[0])
        if bias:
            self.put("params", (*path, "bias"), arrays[1])

    def depthwise(self, path: tuple, name: str) -> None:
        (kernel,) = self.take(name, 1)
        self.put("params", (*path, "kernel"), kernel.transpose(0, 1, 3, 2))

    def bn(self, path: tuple, name: str, shift=0.0) -> None:
        gamma, beta, mean, var = self.take(name, 4)
        if np.ndim(shift) and np.shape(shift) != np.shape(mean):
            raise ConfigError(
                f"layer {name!r} of the weights file has moving mean of shape "
                f"{np.shape(mean)} but its convolution's bias has shape {np.shape(shift)}"
            )
        self.put("params", (*path, BN, "scale"), gamma)
        self.put("params", (*path, BN, "bias"), beta)
        self.put("batch_stats", (*path, BN, "mean"), mean - shift)
        self.put("batch_stats", (*path, BN, "var"), var)

    def conv_bn(self, path: tuple, conv: str, norm_path: tuple, norm: str) -> None:
        """A bias-free medjax conv and its norm from a Keras conv (with or without bias)."""
        arrays = self.take(conv)
        if len(arrays) not in (1, 2):
            raise ConfigError(f"layer {conv!r} of the weights file is not a convolution")
        self.put("params", (*path, "kernel"), arrays[0])
        self.bn(norm_path, norm, shift=arrays[1] if len(arrays) == 2 else 0.0)

    def dense(self, path: tuple, name: str) -> None:
        self.conv(path, name, bias=True)

    def head(self, path: tuple) -> None:
        """keras.applications' classifier, "predictions"; absent in include_top=False files."""
        if "predictions" in self.sd:
            self.dense(path, "predictions")


def resnet(c: KerasConverter) -> None:
    c.conv_bn(("stem_conv",), "conv1_conv", ("stem_norm",), "conv1_bn")
    for s, b in c.indices(r"conv(\d+)_block(\d+)_1_conv$"):
        key, path = f"conv{s}_block{b}", f"stage{s - 1}_block{b - 1}"
        for n in (1, 2, 3):
            c.conv_bn((path, f"conv{n}"), f"{key}_{n}_conv", (path, f"norm{n}"), f"{key}_{n}_bn")
        if f"{key}_0_conv" in c.sd:
            c.conv_bn((path, "proj"), f"{key}_0_conv", (path, "proj_norm"), f"{key}_0_bn")
    c.head(("head",))


def densenet(c: KerasConverter) -> None:
    c.conv(("stem_conv",), "conv1_conv")
    c.bn(("stem_norm",), "conv1_bn")
    for b, n in c.indices(r"conv(\d+)_block(\d+)_1_conv$"):
        key, path = f"conv{b}_block{n}", f"block{b - 1}_layer{n}"
        c.bn((path, "norm1"), f"{key}_0_bn")
        c.conv((path, "conv1"), f"{key}_1_conv")
        c.bn((path, "norm2"), f"{key}_1_bn")
        c.conv((path, "conv2"), f"{key}_2_conv")
    for (p,) in c.indices(r"pool(\d+)_conv$"):
        c.bn((f"transition{p - 1}", "norm"), f"pool{p}_bn")
        c.conv((f"transition{p - 1}", "conv"), f"pool{p}_conv")
    c.bn(("final_norm",), "bn")
    c.head(("head",))


def vgg(c: KerasConverter) -> None:
    for s, i in c.indices(r"block(\d+)_conv(\d+)$"):
        c.conv((f"stage{s}_conv{i - 1}",), f"block{s}_conv{i}", bias=True)
    for name in ("fc1", "fc2"):
        c.dense(("Classifier_0", name), name)
    c.head(("Classifier_0", "head"))


def mobilenet_v2(c: KerasConverter) -> None:
    c.conv(("stem_conv",), "Conv1")
    c.bn(("stem_norm",), "bn_Conv1")
    blocks = [k for (k,) in c.indices(r"block_(\d+)_project$")]
    if blocks != list(range(1, 17)):
        raise ConfigError(
            f"the weights file has {len(blocks) + 1} inverted residual blocks, not 17"
        )
    paths = [
        f"stage{s}_block{j}" for s, row in enumerate(MOBILENET_STAGES, 1) for j in range(row[2])
    ]
    prefixes = ["expanded_conv"] + [f"block_{k}" for k in blocks]
    for prefix, path in zip(prefixes, paths, strict=True):
        if f"{prefix}_expand" in c.sd:
            c.conv((path, "expand_conv"), f"{prefix}_expand")
            c.bn((path, "expand_norm"), f"{prefix}_expand_BN")
        c.depthwise((path, "dw_conv"), f"{prefix}_depthwise")
        c.bn((path, "dw_norm"), f"{prefix}_depthwise_BN")
        c.conv((path, "project_conv"), f"{prefix}_project")
        c.bn((path, "project_norm"), f"{prefix}_project_BN")
    c.conv(("top_conv",), "Conv_1")
    c.bn(("top_norm",), "Conv_1_bn")
    c.head(("head",))


def _efficientnet_blocks(layers) -> list[tuple[int, int]]:
    """(stage, block) of every "block{stage}{letter}_project_conv", sorted."""
    found = {
        (int(m[1]), ord(m[2]) - 97)
        for k in layers
        if (m := re.match(r"block(\d+)([a-z])_project_conv$", k))
    }
    return sorted(found)


def efficientnet(c: KerasConverter) -> None:
    c.conv(("stem_conv",), "stem_conv")
    c.bn(("stem_norm",), "stem_bn")
    for s, j in _efficientnet_blocks(c.sd):
        key, path = f"block{s}{chr(97 + j)}_", f"stage{s}_block{j}"
        if f"{key}expand_conv" in c.sd:
            c.conv((path, "expand_conv"), f"{key}expand_conv")
            c.bn((path, "expand_norm"), f"{key}expand_bn")
        c.depthwise((path, "dw_conv"), f"{key}dwconv")
        c.bn((path, "dw_norm"), f"{key}bn")
        c.conv((path, "se", "reduce"), f"{key}se_reduce", bias=True)
        c.conv((path, "se", "expand"), f"{key}se_expand", bias=True)
        c.conv((path, "project_conv"), f"{key}project_conv")
        c.bn((path, "project_norm"), f"{key}project_bn")
    c.conv(("top_conv",), "top_conv")
    c.bn(("top_norm",), "top_bn")
    c.head(("head",))
    c.notes.extend(input_normalisation(c))


def input_normalisation(c: KerasConverter) -> list[str]:
    """Keras' EfficientNet normalises its input in the model (Rescaling 1/255, Normalization,
    and for weights='imagenet' another Rescaling); medjax's model takes the normalised image,
    so this takes the Normalization layer and says what preprocessing reproduces the chain."""
    found = [k for k in c.sd if re.fullmatch(r"normalization(_\d+)?", k)]
    if not found:
        return []
    arrays = c.take(found[0])
    if len(arrays) < 2:
        raise ConfigError(f"layer {found[0]!r} of the weights file has no mean and variance")
    # Read before the fit check, as no model variable takes them; the reader bounds their size.
    mean, var = (np.asarray(a) for a in arrays[:2])
    # The chain before the stem as configured; a file without the architecture (.weights.h5)
    # gets keras.applications' default, Rescaling(1/255) then Normalization.
    chain, assumed = [], not c.weights.configs
    for name, layer in c.weights.configs.items():
        if name.startswith("stem_conv"):
            break
        chain.append((layer["class_name"], layer["config"]))
    if assumed:
        chain = [("Rescaling", {"scale": 1 / 255, "offset": 0.0}), ("Normalization", {})]
    a, b = np.ones_like(mean, np.float64), np.zeros_like(mean, np.float64)  # x -> a x + b
    for kind, cfg in chain:
        if kind == "Rescaling":
            scale, offset = np.asarray(cfg.get("scale", 1.0)), np.asarray(cfg.get("offset", 0.0))
            a, b = a * scale, b * scale + offset
        elif kind == "Normalization":
            std = np.maximum(np.sqrt(var), 1e-7)  # Keras' (x - mean) / max(sqrt(var), eps)
            a, b = a / std, (b - mean) / std
    m, s = -b / a, 1 / a

    def fmt(v):
        return "(" + ", ".join(f"{x:.6g}" for x in v) + ")"

    return [
        "Keras' EfficientNet normalises its input inside the model (Rescaling, Normalization "
        f"layers{', assumed keras.applications default' if assumed else ''}); medjax's model "
        "does not, so preprocess images alike: (x - mean) / std per channel on the input's "
        f"0..255 scale, mean {fmt(m)}, std {fmt(s)}, e.g. config.data.preprocess = "
        f"('normalize(mean={m.mean():.6g}, std={s.mean():.6g}, in_max=1.0)',) (channel means)"
    ]


_CAFFE = (
    "keras.applications' ImageNet weights for it expect 'caffe' preprocessing: BGR channel "
    "order, the ImageNet mean (103.939, 116.779, 123.68) subtracted, no scaling"
)
_NOTES = {
    "resnet": "Keras' convolution biases folded into the batch-norm means; " + _CAFFE,
    "densenet": "",
    "vgg": _CAFFE,
    "mobilenet_v2": "Keras' MobileNetV2 uses ReLU6: set config.model.activation = 'relu6'",
    "efficientnet": "Keras' EfficientNets use SiLU (swish): set config.model.activation = 'silu'",
}
_CONVERTERS = {
    "resnet": resnet,
    "densenet": densenet,
    "vgg": vgg,
    "mobilenet_v2": mobilenet_v2,
    "efficientnet": efficientnet,
}
# The stem and head paths are torchvision's: medjax's names are the same in both layouts.
KERAS_FAMILIES = {
    key: Family(convert, FAMILIES[key].stem, FAMILIES[key].head, _NOTES[key])
    for key, convert in _CONVERTERS.items()
}
KERAS_NAMES = {  # medjax model -> keras.applications model
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    **{f"densenet{d}": f"DenseNet{d}" for d in (121, 169, 201)},
    "mobilenet_v2": "MobileNetV2",
    **{name: f"EfficientNetB{name[-1]}" for name in SCALING},
}
MODELS = {
    "resnet50": "resnet",
    "resnet101": "resnet",
    "vgg16": "vgg",
    "vgg19": "vgg",
    **{f"densenet{d}": "densenet" for d in (121, 169, 201)},
    "mobilenet_v2": "mobilenet_v2",
    **{name: "efficientnet" for name in SCALING},
}


def family(model_name: str) -> Family:
    if model_name not in MODELS:
        raise ConfigError(
            f"no Keras weight import for model {model_name!r}; supported: {', '.join(MODELS)}"
        )
    return KERAS_FAMILIES[MODELS[model_name]]


def convert(weights: KerasWeights, model_name: str) -> tuple[dict, set[str], list[str]]:
    """(medjax variables, layer names used, notes) for a Keras file of `model_name`'s family."""
    c = KerasConverter(weights, model_name)
    family(model_name).convert(c)
    return c.out, c.used, c.notes


def guess_model(weights: KerasWeights) -> str | None:
    """The medjax model a Keras file most likely holds: from the model's configured name
    ("resnet50", "mobilenetv2_1.00_224"), else from its layers."""
    by_name = {keras.lower(): medjax for medjax, keras in KERAS_NAMES.items()}
    name = weights.model_name.lower()
    if name in by_name:
        return by_name[name]
    if name.startswith("mobilenetv2_"):  # "mobilenetv2_<alpha>_<size>"
        return "mobilenet_v2"
    layers = weights.layers

    def sizes(pattern: str) -> tuple[int, ...]:  # blocks per stage, in stage order
        last = {}
        for k in layers:
            if m := re.match(pattern, k):
                stage, block = map(int, m.groups())
                last[stage] = max(last.get(stage, 0), block)
        return tuple(last[stage] for stage in sorted(last))

    if "conv2_block1_3_conv" in layers:
        return {(3, 4, 6, 3): "resnet50", (3, 4, 23, 3): "resnet101"}.get(
            sizes(r"conv(\d+)_block(\d+)_1_conv$")
        )
    if "conv2_block1_0_bn" in layers:
        nets = {(6, 12, 24, 16): "densenet121", (6, 12, 32, 32): "densenet169"}
        nets[(6, 12, 48, 32)] = "densenet201"
        return nets.get(sizes(r"conv(\d+)_block(\d+)_1_conv$"))
    if "block_16_project" in layers:
        return "mobilenet_v2"
    if "block1_conv1" in layers:
        return {13: "vgg16", 16: "vgg19"}.get(
            sum(bool(re.match(r"block\d+_conv\d+$", k)) for k in layers)
        )
    blocks = _efficientnet_blocks(layers)
    if blocks:
        per_stage = tuple(sum(1 for t, _ in blocks if t == s) for s in range(1, 8))
        for candidate, (_, depth, *_) in SCALING.items():
            if per_stage == tuple(math.ceil(row[6] * depth) for row in B0_STAGES):
                return candidate
    return None


def hint(weights: KerasWeights, model_name: str) -> str:
    guess = guess_model(weights)
    if guess and guess != model_name:
        return f" It looks like {guess} weights: set config.model.name = {guess!r}."
    return ""
