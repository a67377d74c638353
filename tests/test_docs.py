"""The README's tables against the code: the names the config table lists are exactly the
registered ones, the model table names every registered model, and each parameter count it
quotes is the reference count that the model tests check with jax.eval_shape."""

import re

import pytest

from medjax.data import SOURCES
from medjax.heads import HEADS
from medjax.models import MODELS
from medjax.models.layers import ACTIVATIONS, NORMS
from medjax.models.registry import STEMS
from medjax.ops import MIX_OPS
from medjax.segment import SEGMENTERS
from medjax.segment.transform import USES
from medjax.train.losses import CLASS_WEIGHTS, LOSSES
from medjax.train.optimizers import OPTIMIZERS, SCHEDULES

from .conftest import ROOT
from .test_models_cnn_zoo import TORCHVISION_PARAMS as CNN_ZOO
from .test_models_deep_zoo import KERAS_XCEPTION
from .test_models_deep_zoo import TORCHVISION_PARAMS as DEEP_ZOO
from .test_models_vit_3d_ensemble import R3D_18_PARAMS_400_CLASSES, VIT_PARAMS
from .test_review_variants import EFFICIENTNET_V2_PARAMS

README = (ROOT / "README.md").read_text()

# Every README key that lists names, and where the code registers them.
REGISTERED = {
    "data.source": SOURCES.names(),
    "data.mix": MIX_OPS.names(),
    "model.stem": STEMS,
    "model.activation": ACTIVATIONS.names(),
    "model.norm": NORMS.names(),
    "model.head": HEADS.names(),
    "optimizer.name": OPTIMIZERS.names(),
    "optimizer.schedule": SCHEDULES.names(),
    "loss.name": LOSSES.names(),
    "loss.class_weights": CLASS_WEIGHTS,
    "segment.model": SEGMENTERS.names(),
    "segment.use": USES,
}

# The reference counts the model tests assert with jax.eval_shape, by model name.
REFERENCE = {
    **CNN_ZOO,
    **DEEP_ZOO,
    **VIT_PARAMS,
    **EFFICIENTNET_V2_PARAMS,
    "resnet3d_18": R3D_18_PARAMS_400_CLASSES,
}
# What each number in the model table's count column is, in order, per family.
COUNTED = {
    "AlexNet": ["alexnet"],
    "VGG": ["vgg16"],
    "ResNet": ["resnet18", "resnet34", "resnet50", "resnet101"],
    "DenseNet": ["densenet121", "densenet169", "densenet201"],
    "EfficientNet": [
        "efficientnet_b0",
        "efficientnet_b7",
        "efficientnet_v2_s",
        "efficientnet_v2_m",
        "efficientnet_v2_l",
    ],
    "MobileNetV2": ["mobilenet_v2"],
    "InceptionV3": ["inception_v3"],
    "ViT": ["vit_b"],
    "3D": ["resnet3d_18"],
}
XCEPTION = [
    KERAS_XCEPTION["params"],
    KERAS_XCEPTION["params_and_batch_stats"] - KERAS_XCEPTION["params"],
    KERAS_XCEPTION["params_and_batch_stats"],
]


def table(section: str, header: str) -> list[list[str]]:
    """The cells of the table under `section` whose header row starts with `header`."""
    body = README.split(f"\n{section}\n", 1)[1]
    lines = body.split(f"\n{header}", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def names(cell: str) -> list[str]:
    """Backticked identifiers; dotted ones are other config keys mentioned in passing."""
    return [n for n in re.findall(r"`([^`]+)`", cell) if re.fullmatch(r"[a-z0-9_]+", n)]


def counts(cell: str) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(r"\d{1,3}(?:,\d{3})+", cell)]


def model_names(cell: str) -> list[str]:
    """The model.name values in a model-table cell, with '`x_b0` ... `x_b7`' and '`_bn`
    variants' spelt out; what follows '(' is options."""
    head = re.sub(
        r"`(\w*?)(\d+)` \.\.\. `\1(\d+)`",
        lambda m: ", ".join(f"`{m[1]}{i}`" for i in range(int(m[2]), int(m[3]) + 1)),
        cell.split("(")[0],
    )
    listed = names(head)
    if "_bn" in listed:
        listed.remove("_bn")
        listed += [f"{n}_bn" for n in listed]
    return listed


def test_config_table_lists_exactly_the_registered_names():
    rows = table("## Configs", "| key | names |")
    # What a parenthesis adds is explanation, where other names may recur.
    listed = {
        re.findall(r"`([^`]+)`", key)[0]: names(re.sub(r"\([^)]*\)", "", cell))
        for key, cell in rows
    }
    listed = {key: documented for key, documented in listed.items() if documented}
    assert set(listed) == set(REGISTERED), "rows that list names vs registries in the code"
    for key, documented in listed.items():
        assert len(documented) == len(set(documented)), (key, documented)
        assert set(documented) == set(REGISTERED[key]), key


def test_model_table_names_every_registered_model():
    rows = table("## Models", "| family | `model.name` |")
    listed = [n for _, cell, _ in rows for n in model_names(cell)]
    assert sorted(listed) == MODELS.names()


def test_every_parameter_count_in_the_model_table_is_a_checked_reference():
    rows = {family: counts(cell) for family, _, cell in table("## Models", "| family |")}
    quoted = {family: c for family, c in rows.items() if c}
    assert set(quoted) == {*COUNTED, "Xception"}, "a count the test does not know"
    for family, models in COUNTED.items():
        assert quoted[family] == [REFERENCE[m] for m in models], family
    assert quoted["Xception"] == XCEPTION


@pytest.mark.parametrize(
    "cell, expected",
    [
        ("`vgg11`, `vgg16`, and `_bn` variants", ["vgg11", "vgg16", "vgg11_bn", "vgg16_bn"]),
        ("`net_b0` ... `net_b2`, `net_v2`", ["net_b0", "net_b1", "net_b2", "net_v2"]),
        ("`cnn_rnn` (`model.rnn`: `lstm`)", ["cnn_rnn"]),
    ],
)
def test_model_names_are_spelt_out(cell, expected):
    assert model_names(cell) == expected
