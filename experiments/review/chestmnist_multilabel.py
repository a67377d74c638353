"""Multi-label chest X-ray findings (ChestMNIST-style): 14 findings per image, each present or
absent, learned with one sigmoid per finding.

Question: how well does the review's plain CNN rank each of ChestMNIST's 14 findings (NIH
ChestX-ray14), reported per finding and as the macro AUC with bootstrap intervals, with a
threshold per finding chosen on validation? The review found almost every study binary; this
is the multi-label design its chest X-ray studies call for.
Data: ChestMNIST (MedMNIST v2, 78,468/11,219/22,433 images at 28 px, labels (N, 14));
`python -m medjax.data.fetch medmnist chestmnist --dir DATA`, then MEDJAX_DATA_DIR=DATA or
`--config.data.path`. Published baseline: MedMNIST v2 ResNet-18 (28) test AUC 0.768, ACC
0.947. `:balanced` weighs each finding's positives by its negatives / positives.
Command:
    python -m medjax.run --config experiments/review/chestmnist_multilabel.py --workdir runs/chest
    python -m medjax.run --config experiments/review/chestmnist_multilabel.py:runlocal --workdir /tmp/x
Result: not run on the full set in this repository's CI machine (ChestMNIST is not among its
files); tests/test_multilabel.py trains it on a generated 14-finding set.
"""

from medjax.configs.review import review_config


def get_config(arg=None):
    c, arg = review_config(arg, balanced=False)
    c.data.source, c.data.name = "medmnist", "chestmnist"
    c.data.augment = ("random_affine(rotate=10, shift=0.05)",)  # no flips: chests are not symmetric
    c.loss.name = "sigmoid_bce"
    c.loss.class_weights = "balanced" if arg.balanced else "none"
    if not arg.runlocal:
        c.train.num_epochs = 3.0  # 78k images: 7,300 steps
        c.eval.batch_size = 512
    return c.lock()
