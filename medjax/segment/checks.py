"""config.segment checked before anything runs (called by medjax.train.validate)."""

from medjax.errors import ConfigError
from medjax.models.layers import ACTIVATIONS, NORMS
from medjax.ops.pipeline import PREPROCESS_OPS, op_name, parse_op
from medjax.segment.masks import check_source
from medjax.segment.models import SEGMENTERS
from medjax.segment.transform import USES


def _crops_by_content(spec: str) -> bool:
    """Whether a preprocessing op crops where the image's content says (medjax.ops.roi:
    foreground_crop, skull_strip(crop=True)); the fixed-geometry spatial ops (resize, pad,
    center crop) the masks do follow (medjax.segment.masks)."""
    _, _, kwargs = parse_op(spec, PREPROCESS_OPS)
    name = op_name(spec)
    return name == "foreground_crop" or (name == "skull_strip" and kwargs.get("crop", False))


def _range(name, value, low, high=None, low_open=False):
    bad = value <= low if low_open else value < low
    if bad or (high is not None and value >= high):
        span = f"({low}, {high})" if high is not None else f"{'>' if low_open else '>='} {low}"
        raise ConfigError(f"config.segment.{name}={value!r} must be {span}")


def check_segment(config) -> None:
    """ConfigError naming the first config.segment key that cannot work (nothing is checked
    when config.segment.model is "", the default: no prior)."""
    cfg = config.segment
    if not cfg.model:
        return
    SEGMENTERS.get(cfg.model)
    for key, registry in (("activation", ACTIVATIONS), ("norm", NORMS)):
        if cfg[key] not in registry:
            raise ConfigError(
                f"unknown config.segment.{key} {cfg[key]!r}; valid: {', '.join(registry.names())}"
            )
    if cfg.use not in USES:
        raise ConfigError(f"config.segment.use must be one of {', '.join(USES)}, not {cfg.use!r}")
    for key in ("steps", "batch_size", "eval_every_steps"):
        _range(key, cfg[key], 0, low_open=True)
    _range("learning_rate", cfg.learning_rate, 0, low_open=True)
    _range("dice_weight", cfg.dice_weight, 0)
    _range("threshold", cfg.threshold, 0, 1, low_open=True)
    _range("margin", cfg.margin, 0)
    if config.data.depth:
        raise ConfigError("config.segment.model segments 2D images; set config.data.depth=0")
    check_source(config.data)
    content_crops = [s for s in config.data.preprocess if _crops_by_content(s)]
    if content_crops:
        raise ConfigError(
            f"config.segment.model with {content_crops[0]!r} in config.data.preprocess: it "
            f"crops each image where its own pixels say, which its mask cannot follow; remove "
            f"it (the segment prior's crop, config.segment.use='crop', does that job)"
        )
    if config.data.oversample.startswith("gan"):
        raise ConfigError(
            "config.segment.model with config.data.oversample='gan(...)': the generator kept "
            "beside the data cache was trained on images the prior has not rewritten; use "
            "smote() or class weights"
        )
