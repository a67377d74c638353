"""Run a compiled eval step over a whole split, each example exactly once."""

import numpy as np
from tqdm.auto import tqdm

from medjax.data.pipeline import eval_batches
from medjax.errors import TrainingError
from medjax.eval import classification_metrics
from medjax.eval.multilabel import multilabel_metrics
from medjax.train.sharding import to_global


def predict(eval_step, state, split, batch_size: int, sharding, desc: str = "eval") -> np.ndarray:
    """Class probabilities (N, classes) for every example of `split`, padding masked out; with a
    vectorized eval step (K runs stacked), (K, N, classes)."""
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
        out.append(np.asarray(probs)[..., mask, :])
    return np.concatenate(out, axis=-2)


def predict_runs(eval_step, state, split, configs, sharding, desc="eval") -> np.ndarray:
    """Class probabilities (K, N, classes) of each run in `state` (one per config: a single
    state, or K stacked ones), checked finite."""
    probs = predict(eval_step, state, split, configs[0].eval.batch_size, sharding, desc)
    probs = probs.reshape(len(configs), *probs.shape[-2:])
    if not np.isfinite(probs).all():
        raise TrainingError(
            f"the model's {desc} predictions are not finite (training diverged; the last good "
            f"checkpoint is kept); lower "
            f"config.optimizer.learning_rate or set config.optimizer.grad_clip_norm"
        )
    return probs


def evaluate_runs(
    eval_step, state, split, configs, num_classes, sharding, desc="eval", bootstrap=0
) -> list[dict]:
    """Metrics of each run in `state` (one per config: a single state, or K stacked ones)."""
    probs = predict_runs(eval_step, state, split, configs, sharding, desc)
    return metrics_of_runs(probs, split.labels, configs, num_classes, bootstrap)


def metrics_of_runs(probs, labels, configs, num_classes, bootstrap=0) -> list[dict]:
    """classification_metrics of each run's probabilities (K, N, classes); for multi-label
    labels (N, L), medjax.eval.multilabel's metrics at 0.5."""
    if np.asarray(labels).ndim == 2:
        return [
            multilabel_metrics(labels, p, bootstrap=bootstrap, seed=config.seed)
            for config, p in zip(configs, probs, strict=True)
        ]
    return [
        classification_metrics(
            labels,
            p,
            num_classes,
            config.eval.positive_class,
            bootstrap=bootstrap,
            seed=config.seed,
            ece_bins=config.eval.ece_bins,
        )
        for config, p in zip(configs, probs, strict=True)
    ]


def evaluate(eval_step, state, split, config, num_classes, sharding, desc="eval", bootstrap=0):
    return evaluate_runs(eval_step, state, split, [config], num_classes, sharding, desc, bootstrap)[
        0
    ]
