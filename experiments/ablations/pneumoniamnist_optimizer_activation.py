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
Budget (jax 0.12.0.1, 2-core Xeon CPU): a run took 1.1x as long as one of
breastmnist_optimizer_activation.py run beside it on a busy machine (39 s and 35 s), and that
one takes 22 s alone, so about 25 s alone (16 s of it training at 890 images/s); with the
compilation cache sparing most compiles of seeds 1 and 2, the 126 runs should take about 50
minutes in one process.
Result: not run to the end yet (a first session finished a few runs: about 24 s each when the
machine was otherwise idle); summary.md in the workdir holds it.
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
    c.data.augment = ("random_affine(rotate=10, zoom=0.1, shift=0.08)",)
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
