"""The shared recipe of experiments/review/: the plain CNN every design of the scoping review
is compared against, on the same data, budget and seeds.

A review experiment starts from `review_config(arg, ...)`, changes only what its design needs,
and returns `c.lock()`, so the side-by-side comparison in the README's "The review's designs"
differs in that one design and nothing else.
"""

from medjax.configs.base import apply_runlocal, get_base_config, parse_arg
from medjax.errors import ConfigError

# data name -> (source, the class whose sensitivity is reported)
DATASETS = {
    "breastmnist": ("medmnist", 0),  # malignant (27% of train)
    "pneumoniamnist": ("medmnist", 1),  # pneumonia
    "phantom": ("phantom", 1),  # generated: lesion present; needs no files
}


def review_config(arg=None, **extra_args):
    """(unlocked ConfigDict, parsed args) of the plain review recipe on `:data=NAME` (default
    breastmnist; phantom needs no files) with seed `:seed=N`; `:runlocal` shrinks it to a
    seconds-long smoke run. `extra_args` are the experiment's own `:key=default` arguments."""
    arg = parse_arg(arg, runlocal=False, data="breastmnist", seed=0, **extra_args)
    if arg.data not in DATASETS:
        raise ConfigError(
            f"config argument data={arg.data!r} is not a review dataset; valid: "
            f"{', '.join(DATASETS)}"
        )
    source, positive = DATASETS[arg.data]
    c = get_base_config()
    c.seed = arg.seed
    c.data.source = source
    c.data.name = arg.data
    c.data.image_size = 28
    c.data.preprocess = ("value_range(min=-1.0, max=1.0)",)
    c.data.augment = ("random_affine(rotate=10, shift=0.05)",)
    c.model.name = "cnn"
    c.model.widths = (16, 32, 64)
    c.model.dropout = 0.2
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "cosine"
    c.train.batch_size = 32
    c.train.num_epochs = 20.0
    c.train.log_every_steps = 20
    c.train.eval_every_epochs = 1.0
    c.eval.positive_class = positive
    if arg.runlocal:
        apply_runlocal(c)
    return c, arg
