"""Which optimizer and which activation train a small CNN best on PneumoniaMNIST in a fixed,
short budget, and are the differences larger than the seed-to-seed spread?

Data: PneumoniaMNIST (paediatric chest X-ray, Kermany et al.), official splits 4708/524/624,
28x28 grey, 2 classes (0 normal, 1 pneumonia). Found as $MEDJAX_DATA_DIR/pneumoniamnist.npz.
Grid: 7 optimizers (adam, sgd, nesterov, rmsprop, adadelta, adamax, adagrad) x 6 activations
(relu, leaky_relu, elu, gelu, tanh, sigmoid) x 3 seeds = 126 runs of a CNN with widths
(16, 32, 64), 3 epochs (222 steps of 64), cosine schedule, small affine changes (no flips:
chest X-rays are not left-right symmetric). Each optimizer runs at its usual default learning
rate, as in breastmnist_optimizer_activation.py: adam 1e-3, adamax 2e-3, rmsprop 1e-3 without
momentum, adagrad 1e-2, adadelta 1.0, sgd and nesterov 1e-2 with momentum 0.9. Three epochs
are short: slow starters (sgd, adadelta, sigmoid) are judged at this budget, which is the
question. The reference setting is adam with relu.
Command:
    python -m medjax.sweep --config experiments/ablations/pneumoniamnist_optimizer_activation.py \
        --workdir runs/abl_pneu
    python -m medjax.sweep --config experiments/ablations/pneumoniamnist_optimizer_activation.py:smoke \
        --workdir /tmp/abl_smoke        # 2 x 2 x 2 runs on phantom data, seconds each
Budget (jax 0.12.0.1, 2-core Xeon CPU): about 20.6 s a run alone (the last 24 runs took 8.2
min), so the 126 runs take about 43 minutes in one process; the compilation cache spares most
compiles of seeds 1 and 2.
Result (126 runs, 3 seeds each; mean ± SD [95% t-interval]): validation chose adadelta / gelu,
val AUC 0.995 ± 0.001, test AUC 0.974 ± 0.003 [0.967, 0.982], test ACC 0.906 ± 0.005; the
reference adam / relu reached test AUC 0.966 ± 0.004 and ACC 0.899 ± 0.002. Averaged over
activations adadelta (0.968) and rmsprop (0.965) lead and adagrad trails (0.943); averaged over
optimizers relu, leaky_relu and gelu lead (0.962-0.963) and sigmoid trails (0.950). After
Holm's correction only sgd / gelu differs from the reference on test AUC (-0.009, p = 0.015).
README "Which optimizer and activation?".
"""

from medjax.configs import apply_runlocal, get_base_config, parse_arg
from medjax.sweep.grids import optimizer_activation

REFERENCE = {"optimizer.name": "adam", "model.activation": "relu"}


def _args(arg):
    return parse_arg(arg, smoke=False, seeds=3)


def get_config(arg=None):
    arg = _args(arg)
    c = get_base_config()
    c.data.source = "medmnist"
    c.data.name = "pneumoniamnist"
    # Linear resampling and running BN statistics, as the grid was run (before cubic resampling
    # and precise BN became the defaults), so that the result above reproduces.
    c.data.augment = ("random_affine(rotate=10, zoom=0.1, shift=0.08, order=1, antialias=False)",)
    c.train.precise_bn = "off"
    c.model.name = "cnn"
    c.model.widths = (16, 32, 64)
    c.optimizer.schedule = "cosine"
    c.train.batch_size = 64
    c.train.num_epochs = 3.0
    c.train.log_every_steps = 20
    c.train.eval_every_epochs = 1.0
    c.eval.bootstrap_samples = 200  # per-run intervals matter less here than the seed spread
    c.eval.positive_class = 1  # pneumonia
    if arg.smoke:  # generated data, no download: what the tests run
        apply_runlocal(c)
        c.data.source, c.data.name = "phantom", "phantom"
        c.model.widths = (8, 16)
        c.train.num_steps = 8
    return c.lock()


def sweep(arg=None):
    arg = _args(arg)
    return optimizer_activation(arg.seeds, smoke=arg.smoke)
