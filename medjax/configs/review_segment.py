"""The review recipe with a segmentation prior (config.segment), shared by
experiments/review/*_classify.py: the plain CNN of medjax.configs.review, trained on images
that a segmenter, trained first on the lesion masks, has cropped or given a mask channel.

The review recipe's default data, BreastMNIST, has no masks: these configs default to the
phantom source, whose generator draws each lesion's mask."""

from medjax.configs.review import review_config


def segment_review_config(arg, model: str, use: str):
    """(locked ConfigDict) of the review recipe on `:data=...` (default phantom) with a
    `model` segmenter whose masks are used as `use` (crop or channel); `:runlocal` shrinks
    both stages to a smoke run."""
    c, arg = review_config(_default_phantom(arg))
    c.segment.model = model
    c.segment.use = use
    c.segment.widths = (16, 32, 64)
    c.segment.atrous_rates = (2, 4, 6)  # the paper's (6, 12, 18) scaled to a 14 px feature map
    c.segment.steps = 400
    c.segment.eval_every_steps = 50
    c.segment.margin = 0.25
    if arg.runlocal:
        c.segment.widths = (8, 16)
        c.segment.steps, c.segment.eval_every_steps = 12, 6
    return c.lock()


def _default_phantom(arg):
    items = [a for a in (arg or "").split(",") if a]
    if not any(a.split("=")[0].strip() == "data" for a in items):
        items.append("data=phantom")
    return ",".join(items)
