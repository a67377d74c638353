"""torchvision state-dict names -> medjax variable paths, one converter per model family.

Each converter walks the file's own structure (so a file of a deeper or shallower variant
converts too, and the mismatch is reported against the model afterwards) and returns the
variables {'params': ..., 'batch_stats': ...} in medjax's naming plus the file keys it used.
Layouts: conv weights OIHW -> HWIO kernels, Linear (out, in) -> (in, out) kernels, BatchNorm
weight/bias/running_mean/running_var -> BatchNorm_0 scale/bias and batch_stats mean/var.
"""

import math
import re
from dataclasses import dataclass

import numpy as np

from medjax.errors import ConfigError
from medjax.models.efficientnet import B0_STAGES, SCALING, V2_S_STAGES
from medjax.models.mobilenet import STAGES as MOBILENET_STAGES
from medjax.models.mobilenet import make_divisible

BN = "BatchNorm_0"  # the nn.BatchNorm inside medjax's BatchNorm wrapper


class Converter:
    """Takes file tensors by key (each at most once) and places them at medjax paths."""

    def __init__(self, sd: dict[str, np.ndarray], model_name: str):
        self.sd, self.model_name, self.used = sd, model_name, set()
        self.out = {"params": {}, "batch_stats": {}}

    def take(self, key: str) -> np.ndarray:
        if key not in self.sd:
            raise ConfigError(
                f"the weights file lacks {key!r}, which torchvision's {self.model_name} has; "
                f"does the file hold another model's weights?{hint(self.sd, self.model_name)}"
            )
        if key in self.used:  # a converter bug, not a user error
            raise AssertionError(f"file key {key} used twice")
        self.used.add(key)
        return self.sd[key]

    def put(self, collection: str, path: tuple, value) -> None:
        node = self.out[collection]
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = value

    def conv(self, path: tuple, key: str, bias: bool = False) -> None:
        weight = self.take(f"{key}.weight")
        if np.ndim(weight) != 4:
            raise ConfigError(
                f"the weights file's {key}.weight has shape {np.shape(weight)}, not the 4 "
                f"dimensions of torchvision's {self.model_name} convolution kernels"
            )
        self.put("params", (*path, "kernel"), weight.transpose(2, 3, 1, 0))
        if bias:
            self.put("params", (*path, "bias"), self.take(f"{key}.bias"))

    def linear(self, path: tuple, key: str) -> None:
        self.put("params", (*path, "kernel"), self.take(f"{key}.weight").T)
        self.put("params", (*path, "bias"), self.take(f"{key}.bias"))

    def bn(self, path: tuple, key: str) -> None:
        self.put("params", (*path, BN, "scale"), self.take(f"{key}.weight"))
        self.put("params", (*path, BN, "bias"), self.take(f"{key}.bias"))
        self.put("batch_stats", (*path, BN, "mean"), self.take(f"{key}.running_mean"))
        self.put("batch_stats", (*path, BN, "var"), self.take(f"{key}.running_var"))

    def indices(self, pattern: str) -> list[tuple[int, ...]]:
        """The distinct integer groups of `pattern` (a regex matched at key starts), sorted."""
        found = {tuple(map(int, m.groups())) for k in self.sd if (m := re.match(pattern, k))}
        return sorted(found)


def resnet(c: Converter) -> None:
    c.conv(("stem_conv",), "conv1")
    c.bn(("stem_norm",), "bn1")
    for i, j in c.indices(r"layer(\d+)\.(\d+)\."):
        key, path = f"layer{i}.{j}", f"stage{i}_block{j}"
        for n in (1, 2, 3):
            if n < 3 or f"{key}.conv3.weight" in c.sd:  # conv3: a bottleneck block
                c.conv((path, f"conv{n}"), f"{key}.conv{n}")
                c.bn((path, f"norm{n}"), f"{key}.bn{n}")
        if f"{key}.downsample.0.weight" in c.sd:
            c.conv((path, "proj"), f"{key}.downsample.0")
            c.bn((path, "proj_norm"), f"{key}.downsample.1")
    c.linear(("head",), "fc")


def densenet(c: Converter) -> None:
    c.conv(("stem_conv",), "features.conv0")
    c.bn(("stem_norm",), "features.norm0")
    for i, j in c.indices(r"features\.denseblock(\d+)\.denselayer(\d+)\."):
        key, path = f"features.denseblock{i}.denselayer{j}", f"block{i}_layer{j}"
        for n in (1, 2):
            c.bn((path, f"norm{n}"), f"{key}.norm{n}")
            c.conv((path, f"conv{n}"), f"{key}.conv{n}")
    for (i,) in c.indices(r"features\.transition(\d+)\."):
        c.bn((f"transition{i}", "norm"), f"features.transition{i}.norm")
        c.conv((f"transition{i}", "conv"), f"features.transition{i}.conv")
    c.bn(("final_norm",), "features.norm5")
    c.linear(("head",), "classifier")


def _classifier(c: Converter) -> None:
    """VGG/AlexNet classifier: its three Linears, in order, are fc1, fc2, head."""
    linears = [i for (i,) in c.indices(r"classifier\.(\d+)\.weight")]
    if len(linears) != 3:
        raise ConfigError(f"the weights file has {len(linears)} classifier Linears, not 3")
    for name, i in zip(("fc1", "fc2", "head"), linears, strict=True):
        c.linear(("Classifier_0", name), f"classifier.{i}")


def vgg(c: Converter) -> None:
    # features.k: conv, [bn], relu per conv and a max-pool ending each stage, so a gap wider
    # than one conv's slots between two convs is a stage boundary.
    layers = [i for (i,) in c.indices(r"features\.(\d+)\.weight")]
    convs = [i for i in layers if c.sd[f"features.{i}.weight"].ndim == 4]
    slots = 3 if len(layers) > len(convs) else 2
    stage, index = 1, 0
    for n, i in enumerate(convs):
        if n and i - convs[n - 1] > slots:
            stage, index = stage + 1, 0
        c.conv((f"stage{stage}_conv{index}",), f"features.{i}", bias=True)
        if slots == 3:
            c.bn((f"stage{stage}_norm{index}",), f"features.{i + 1}")
        index += 1
    _classifier(c)


def alexnet(c: Converter) -> None:
    for n, (i,) in enumerate(c.indices(r"features\.(\d+)\.weight"), start=1):
        c.conv((f"conv{n}",), f"features.{i}", bias=True)
    _classifier(c)


def mobilenet_v2(c: Converter) -> None:
    c.conv(("stem_conv",), "features.0.0")
    c.bn(("stem_norm",), "features.0.1")
    last = max(i for (i,) in c.indices(r"features\.(\d+)\."))
    names = [
        f"stage{s}_block{j}" for s, row in enumerate(MOBILENET_STAGES, 1) for j in range(row[2])
    ]
    if last != len(names) + 1:
        raise ConfigError(f"the weights file has {last - 1} inverted residual blocks, not 17")
    for k, path in enumerate(names, start=1):
        key = f"features.{k}.conv"
        parts = ["expand", "dw"] if f"{key}.3.weight" in c.sd else ["dw"]
        for n, part in enumerate(parts):
            c.conv((path, f"{part}_conv"), f"{key}.{n}.0")
            c.bn((path, f"{part}_norm"), f"{key}.{n}.1")
        c.conv((path, "project_conv"), f"{key}.{len(parts)}")
        c.bn((path, "project_norm"), f"{key}.{len(parts) + 1}")
    c.conv(("top_conv",), f"features.{last}.0")
    c.bn(("top_norm",), f"features.{last}.1")
    c.linear(("head",), "classifier.1")


def efficientnet(c: Converter) -> None:
    c.conv(("stem_conv",), "features.0.0")
    c.bn(("stem_norm",), "features.0.1")
    last = max(i for (i,) in c.indices(r"features\.(\d+)\."))
    for s, j in c.indices(r"features\.(\d+)\.(\d+)\.block\."):
        key, path = f"features.{s}.{j}.block", f"stage{s}_block{j}"
        parts = [i for (i,) in c.indices(rf"{re.escape(key)}\.(\d+)\.")]
        se = [i for i in parts if f"{key}.{i}.fc1.weight" in c.sd]
        if se:  # MBConv: [expand], depthwise, squeeze-excite, project
            names = ["expand", "dw"][-se[0] :] + ["se", "project"]
        else:  # Fused-MBConv: fused, [project]
            names = ["fused", "project"][: len(parts)]
        if len(names) != len(parts) or (se and se[0] not in (1, 2)):
            raise ConfigError(f"the weights file's block {key} has an unknown layout")
        for i, name in zip(parts, names, strict=True):
            if name == "se":
                c.conv((path, "se", "reduce"), f"{key}.{i}.fc1", bias=True)
                c.conv((path, "se", "expand"), f"{key}.{i}.fc2", bias=True)
            else:
                c.conv((path, f"{name}_conv"), f"{key}.{i}.0")
                c.bn((path, f"{name}_norm"), f"{key}.{i}.1")
    c.conv(("top_conv",), f"features.{last}.0")
    c.bn(("top_norm",), f"features.{last}.1")
    c.linear(("head",), "classifier.1")


@dataclass(frozen=True)
class Family:
    convert: object  # Converter -> None
    stem: tuple  # params path of the first convolution (the one an RGB image meets)
    head: tuple  # params path of the classifier Linear
    note: str = ""  # what else the model's config needs to reproduce torchvision's outputs


_SILU = "torchvision's EfficientNets use SiLU: set config.model.activation='silu'"
_EPS = "; torchvision's B5..B7 and V2 BatchNorms use eps 1e-3 (medjax's 1e-5), a small shift"
FAMILIES = {
    "resnet": Family(resnet, ("stem_conv",), ("head",)),
    "densenet": Family(densenet, ("stem_conv",), ("head",)),
    "vgg": Family(vgg, ("stage1_conv0",), ("Classifier_0", "head")),
    "alexnet": Family(alexnet, ("conv1",), ("Classifier_0", "head")),
    "mobilenet_v2": Family(
        mobilenet_v2,
        ("stem_conv",),
        ("head",),
        "torchvision's MobileNetV2 uses ReLU6, medjax's config.model.activation (ReLU by default)"
        " only matches it while activations stay below 6",
    ),
    "efficientnet": Family(efficientnet, ("stem_conv",), ("head",), _SILU + _EPS),
}
MODELS = {
    **{f"resnet{d}": "resnet" for d in (18, 34, 50, 101)},
    **{f"densenet{d}": "densenet" for d in (121, 169, 201)},
    **{f"vgg{d}{bn}": "vgg" for d in (11, 16, 19) for bn in ("", "_bn")},
    "alexnet": "alexnet",
    "mobilenet_v2": "mobilenet_v2",
    **{name: "efficientnet" for name in [*SCALING, "efficientnet_v2_s"]},
}


def family(model_name: str) -> Family:
    if model_name not in MODELS:
        raise ConfigError(
            f"no torchvision weight import for model {model_name!r}; supported: {', '.join(MODELS)}"
        )
    return FAMILIES[MODELS[model_name]]


def convert(sd: dict[str, np.ndarray], model_name: str) -> tuple[dict, set[str]]:
    """(medjax variables, file keys used) for a torchvision state dict of `model_name`'s family."""
    # Pre-0.4 torchvision DenseNets named a layer's parts "norm.1" instead of "norm1".
    sd = {
        re.sub(r"(denselayer\d+\.(?:norm|conv))\.([12])\.", r"\1\2.", k): v for k, v in sd.items()
    }
    c = Converter(sd, model_name)
    family(model_name).convert(c)
    return c.out, c.used


def guess_model(sd: dict[str, np.ndarray]) -> str | None:
    """The torchvision model a state dict most likely belongs to, when its structure says."""
    c = Converter(sd, "")

    def blocks(pattern: str) -> tuple[int, ...]:  # the number of blocks per stage 1, 2, ...
        sizes = [len(c.indices(pattern.format(i))) for i in range(1, 10)]
        return tuple(n for n in sizes if n)

    if "fc.weight" in sd:
        sizes, deep = blocks(r"layer{}\.(\d+)\."), "layer1.0.conv3.weight" in sd
        resnets = {(2, 2, 2, 2): "resnet18", (3, 4, 23, 3): "resnet101"}
        resnets[(3, 4, 6, 3)] = "resnet50" if deep else "resnet34"
        return resnets.get(sizes)
    if "features.conv0.weight" in sd:
        sizes = blocks(r"features\.denseblock{}\.denselayer(\d+)\.")
        nets = {(6, 12, 24, 16): "densenet121", (6, 12, 32, 32): "densenet169"}
        return (nets | {(6, 12, 48, 32): "densenet201"}).get(sizes)
    if "features.1.conv.0.0.weight" in sd:
        return "mobilenet_v2"
    if "features.1.0.block.0.0.weight" in sd:
        sizes = blocks(r"features\.{}\.(\d+)\.block\.")
        top = sd.get(f"features.{len(sizes) + 1}.0.weight", np.zeros((0,)))
        layout = (sizes, sd["features.0.0.weight"].shape[0], top.shape[0])
        nets = {  # blocks per stage, stem and top widths
            name: (
                tuple(math.ceil(row[6] * d) for row in B0_STAGES),
                make_divisible(32 * w),
                4 * make_divisible(320 * w),
            )
            for name, (w, d, *_) in SCALING.items()
        }
        nets["efficientnet_v2_s"] = (tuple(row[6] for row in V2_S_STAGES), 24, 1280)
        return next((name for name, want in nets.items() if want == layout), None)
    convs = [
        i for (i,) in c.indices(r"features\.(\d+)\.weight") if sd[f"features.{i}.weight"].ndim == 4
    ]
    if not convs:
        return None
    if len(convs) == 5 and sd[f"features.{convs[0]}.weight"].shape[-1] == 11:
        return "alexnet"
    name = {8: "vgg11", 13: "vgg16", 16: "vgg19"}.get(len(convs))
    return f"{name}_bn" if name and f"features.{convs[0] + 1}.running_mean" in sd else name


def hint(sd: dict[str, np.ndarray], model_name: str) -> str:
    guess = guess_model(sd)
    if guess and guess != model_name:
        return f" It looks like {guess} weights: set config.model.name = {guess!r}."
    return ""
