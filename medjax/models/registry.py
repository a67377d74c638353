"""The model registry and the config -> module builder."""

from medjax.errors import ConfigError
from medjax.models.layers import ACTIVATIONS, DTYPES, NORMS
from medjax.registry import Registry

MODELS = Registry("model", "config.model.name")


def build_model(model_config, num_classes: int, image_size: int):
    """Instantiate `config.model.name` with its activation, norm and dtype looked up by name."""
    factory = MODELS.get(model_config.name)
    keras_layout(model_config)  # a misspelt layout fails for every model, not only those using it
    if model_config.dtype not in DTYPES:
        raise ConfigError(
            f"unknown dtype {model_config.dtype!r} in config.model.dtype; valid: {', '.join(DTYPES)}"
        )
    model = factory(
        model_config,
        num_classes=num_classes,
        image_size=image_size,
        act=ACTIVATIONS.get(model_config.activation),
        norm=NORMS.get(model_config.norm),
        dtype=DTYPES[model_config.dtype],
    )
    return with_head_hidden(model, model_config)


def with_head_hidden(model, model_config):
    """`model` with the MLP head's hidden layers of config.model.head_hidden (every
    classifier's pooled_head or its own head adds them; see medjax.models.layers)."""
    hidden = tuple(model_config.get("head_hidden", ()))
    if any(not isinstance(w, int) or w < 1 for w in hidden):
        raise ConfigError(
            f"config.model.head_hidden={hidden!r} must be positive layer widths, e.g. (512, 256)"
        )
    if not hidden:
        return model
    if "head_hidden" not in getattr(type(model), "__dataclass_fields__", {}):
        raise ConfigError(
            f"model {model_config.name!r} has no MLP head: config.model.head_hidden must be () "
            f"for it"
        )
    return model.clone(head_hidden=hidden)


STEMS = ("auto", "small", "imagenet")


def small_stem(cfg, image_size: int) -> bool:
    """Whether `config.model.stem` asks for the small-image stem ("auto": at <= 64 px)."""
    if cfg.stem not in STEMS:
        raise ConfigError(f"config.model.stem must be one of {', '.join(STEMS)}, not {cfg.stem!r}")
    return cfg.stem == "small" or (cfg.stem == "auto" and image_size <= 64)


def check_input_size(name: str, image_size: int, downsampling: int, min_final: int = 1) -> None:
    """Refuse an input a model would shrink to nothing, before any convolution sees it."""
    if image_size // downsampling < min_final:
        raise ConfigError(
            f"model {name!r} downsamples by {downsampling}x, so {image_size} px inputs shrink to "
            f"nothing; use a larger config.data.image_size (>= {downsampling * min_final}) or a "
            f"small-image stem (config.model.stem='small')"
        )


LAYOUTS = ("torchvision", "keras")


def keras_layout(cfg) -> bool:
    """Whether `config.model.layout` asks for keras.applications' variant of the architecture
    (ResNet v1 strides, TF "SAME" padding, Keras' batch-norm epsilons, VGG's channel-last
    flatten) instead of torchvision's, the default. Only weights imported from Keras need it."""
    layout = cfg.get("layout", "torchvision")
    if layout not in LAYOUTS:
        raise ConfigError(
            f"config.model.layout must be one of {', '.join(LAYOUTS)}, not {layout!r}"
        )
    return layout == "keras"
