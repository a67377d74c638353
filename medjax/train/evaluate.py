"""Run a compiled eval step over a whole split, each example exactly once."""

import numpy as np
from tqdm.auto import tqdm

from medjax.data.pipeline import eval_batches
from medjax.errors import TrainingError
from medjax.eval import classification_metrics
from medjax.train.sharding import to_global


def predict(eval_step, state, split, batch_size: int, sharding, desc: str = "eval") -> np.ndarray:
    """Class probabilities (N, K) for every example of `split`, padding masked out."""
    out = []
    total = -(-len(split) // batch_size)
    for images, _, mask in tqdm(
        eval_batches(split, batch_size),
        total=total,
        desc=desc,
        leave=False,
        dynamic_ncols=True,
        disable=total < 4,  # a bar for a split that takes a moment only clutters the log
    ):
        probs = eval_step(state, to_global(images, sharding))
        out.append(np.asarray(probs)[mask])
    return np.concatenate(out)


def evaluate(eval_step, state, split, config, num_classes, sharding, desc="eval", bootstrap=0):
    probs = predict(eval_step, state, split, config.eval.batch_size, sharding, desc)
    if not np.isfinite(probs).all():
        raise TrainingError(
            f"the model's {desc} predictions are not finite (training diverged; the last good "
            f"checkpoint is kept); lower "
            f"config.optimizer.learning_rate or set config.optimizer.grad_clip_norm"
        )
    return classification_metrics(
        split.labels,
        probs,
        num_classes,
        config.eval.positive_class,
        bootstrap=bootstrap,
        seed=config.seed,
    )
