"""`explain_images`: one method over many images of a finished run, in fixed-size jitted
batches (one compilation for any number of images)."""

import functools
import inspect

import jax
import numpy as np
from tqdm.auto import tqdm

from medjax.data.pipeline import eval_batches
from medjax.data.source import Split
from medjax.errors import ConfigError
from medjax.explain.model_fn import choose_stage, model_fn
from medjax.explain.registry import EXPLAINERS

STAGE_METHODS = ("gradcam", "gradcam_pp", "guided_gradcam")


def resolve_options(method: str, fn, variables, images, stage, key, options) -> dict:
    """The method's keyword options, checked against its signature, with the stage chosen
    and a PRNG key for the methods that draw noise."""
    explainer = EXPLAINERS.get(method)
    params = inspect.signature(explainer).parameters
    valid = [p for p in list(params)[4:] if p not in ("stage", "key")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"method {method!r} has no option {', '.join(unknown)}; its options: "
            f"{', '.join(valid) or 'none'}"
        )
    options = dict(options)
    if "stage" in params:
        options["stage"] = choose_stage(fn, variables, images, stage)
    elif stage is not None:
        raise ConfigError(
            f"--stage applies to {', '.join(STAGE_METHODS)}, not to --method {method}; drop it"
        )
    if "key" in params:
        options["key"] = jax.random.key(0) if key is None else key
    return options


def explain_images(
    run,
    images: np.ndarray,
    method: str = "gradcam",
    stage: str | None = None,
    targets=None,
    batch_size: int | None = None,
    key=None,
    progress: bool = False,
    **options,
) -> np.ndarray:
    """Maps (N, *spatial) of preprocessed `images` (N, *run.image_shape) explaining, for each,
    the class in `targets`: None for the predicted class, an int for one class, or (N,) ints.
    `stage`: a stage name for the CAM methods (default: the last spatial stage); `key`: the
    PRNG key of SmoothGrad (default jax.random.key(0)); `options`: the method's own."""
    images = np.asarray(images, np.float32)
    fn = model_fn(run.model)
    batch_size = min(batch_size or run.config.eval.batch_size, max(len(images), 1))
    sample = images[:batch_size]
    options = resolve_options(method, fn, run.variables, sample, stage, key, options)
    if targets is None:
        targets = run.predict(images, flip_tta=False, batch_size=batch_size).argmax(-1)
    targets = np.broadcast_to(np.asarray(targets, np.int32), (len(images),))
    if len(targets) and not (targets.min() >= 0 and targets.max() < run.num_classes):
        raise ConfigError(f"target classes must lie in 0..{run.num_classes - 1}")
    explain = jax.jit(functools.partial(EXPLAINERS.get(method), fn, **options))
    batches = eval_batches(Split(images, targets), batch_size)
    total = -(-len(images) // batch_size)
    out = [
        np.asarray(explain(run.variables, x, t))[mask]
        for x, t, mask in tqdm(batches, total=total, desc=method, disable=not progress)
    ]
    spatial = run.image_shape[:-1]
    return np.concatenate(out) if out else np.zeros((0, *spatial), np.float32)
