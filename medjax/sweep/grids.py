"""Ready-made grids for the questions studies ask most, shared by the shipped ablations."""

from medjax.sweep.grid import product

# Each optimizer at its usual framework default rather than a tuned rate ("out of the box"):
# adamax 2e-3 (its paper), rmsprop without momentum (Keras), adagrad 1e-2 and adadelta 1.0
# (PyTorch; adadelta's step is nearly scale-free), sgd and nesterov 1e-2 with momentum 0.9.
OPTIMIZERS = {
    "adam": {"optimizer.learning_rate": 1e-3},
    "sgd": {"optimizer.learning_rate": 1e-2},
    "nesterov": {"optimizer.learning_rate": 1e-2},
    "rmsprop": {"optimizer.learning_rate": 1e-3, "optimizer.momentum": 0.0},
    "adadelta": {"optimizer.learning_rate": 1.0},
    "adamax": {"optimizer.learning_rate": 2e-3},
    "adagrad": {"optimizer.learning_rate": 1e-2},
}
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid")


def optimizer_activation(seeds: int, smoke: bool = False) -> list[dict]:
    """Every optimizer (with its learning rate) x every activation x `seeds` seeds; `smoke`:
    adam and sgd x relu and tanh x 2 seeds."""
    optimizers, activations, seed_range = list(OPTIMIZERS), ACTIVATIONS, range(seeds)
    if smoke:
        optimizers, activations, seed_range = ["adam", "sgd"], ("relu", "tanh"), range(2)
    return product(
        {
            "optimizer": [{"optimizer.name": o, **OPTIMIZERS[o]} for o in optimizers],
            "model.activation": activations,
            "seed": seed_range,
        }
    )
