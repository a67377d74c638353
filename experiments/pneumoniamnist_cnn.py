"""Does a small CNN, trained on a 2-core CPU in 15 minutes, reach the MedMNIST v2 ResNet-18
(28) baseline on PneumoniaMNIST (test AUC 0.944, ACC 0.854)?

Data: PneumoniaMNIST (paediatric chest X-ray, Kermany et al.), official splits 4708/524/624,
28x28 grey, 2 classes (0 normal, 1 pneumonia). Sensitivity and specificity are reported for
pneumonia. Found as $MEDJAX_DATA_DIR/pneumoniamnist.npz or --config.data.path. No flips:
chest X-rays are not left-right symmetric.
Command:
    python -m medjax.run --config experiments/pneumoniamnist_cnn.py --workdir runs/pneu
    python -m medjax.run --config experiments/pneumoniamnist_cnn.py --workdir runs/pneu \
        --config.optimizer.name=sgd --config.model.activation=leaky_relu
Result (seed 0, 2-core AMD EPYC CPU, jax 0.12.0.1, 3.0 min): test AUC 0.983 [0.974, 0.991],
ACC 0.912 [0.888, 0.933], balanced accuracy 0.883, above the baseline (0.944 / 0.854); no
train/eval gap (validation accuracy 0.973 as evaluated, 0.975 through the augmentation).
With the earlier linear resampling and running BN statistics, on a 2-core Xeon: 0.981 / 0.905
in 2.2 min.
"""

from medjax.configs import apply_runlocal, get_base_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, runlocal=False)
    c = get_base_config()
    c.data.source = "medmnist"
    c.data.name = "pneumoniamnist"
    c.data.image_size = 28
    c.data.preprocess = ("value_range(min=-1.0, max=1.0)",)
    c.data.augment = ("random_affine(rotate=10, zoom=0.1, shift=0.08)",)
    c.model.name = "cnn"
    c.model.widths = (32, 64, 128)
    c.model.dropout = 0.2
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "cosine"
    c.train.batch_size = 64
    c.train.num_epochs = 12.0
    c.train.log_every_steps = 25
    c.train.eval_every_epochs = 1.0
    c.eval.positive_class = 1  # pneumonia
    if arg.runlocal:
        apply_runlocal(c)
    return c.lock()
