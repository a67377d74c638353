"""Per-class (DARI-style) augmentation: stronger augmentation for the minority class only, as
the review's studies that augmented rare classes more than common ones.

Question: does augmenting the malignant BreastMNIST images harder (larger rotations, zoom,
shift, elastic deformation, on top of the shared recipe's mild affine) change test AUC,
accuracy and malignant sensitivity, against the plain review CNN (experiments/review/
plain_cnn.py) with the same data, budget and seeds?
Design: class-dependent data augmentation (config.data.augment_per_class, medjax.ops.per_class):
the listed ops run after data.augment, only on examples of their class. `:balanced` also
draws classes equally (data.sampler="balanced"), so malignant images are repeated more often
and each repeat gets a fresh draw of the stronger augmentation. `:mode=instead` runs the
stronger ops in place of the shared ones for the malignant class (one resampling, as for the
other class) rather than after them (`:mode=after`, the default: resampled twice).
Data: BreastMNIST (breast ultrasound, 546/78/156, malignant 27%, class 0); `:data=phantom`
(minority: the lesion class 1) for a smoke run.
Command:
    python -m medjax.run --config experiments/review/dari_augment.py:seed=0 --workdir runs/review/dari0
    python -m medjax.run --config experiments/review/dari_augment.py:runlocal,data=phantom --workdir /tmp/x
Result (BreastMNIST test, seeds 0-2, mean +- SD; 2-core Xeon shared with other jobs):
    plain CNN (plain_cnn.py):  AUC 0.903 +- 0.007, accuracy 0.865 +- 0.019, malignant sensitivity 0.643 +- 0.041
    :mode=after (default):     AUC 0.842 +- 0.024, accuracy 0.818 +- 0.020, malignant sensitivity 0.532 +- 0.014
    :mode=instead:             AUC 0.863 +- 0.016, accuracy 0.829 +- 0.010, malignant sensitivity 0.571 +- 0.063
Both per-class policies did worse than the plain CNN on every metric. Every run's train/eval
gap check warned: validation AUC through the training augmentation was 0.05-0.08 above the
AUC as evaluated, i.e. the network partly learnt "strongly augmented means malignant", a cue
test images do not carry. Per-class augmentation needs ops whose traces do not mark the class.
"""

from medjax.configs.review import review_config

# Stronger than the shared "random_affine(rotate=10, shift=0.05)"; elastic at p=0.5 so some
# minority images stay sharp (medjax.train.consistency).
STRONG = ("random_affine(rotate=30, zoom=0.1, shift=0.1)", "elastic(alpha=8.0, sigma=3.0, p=0.5)")


def get_config(arg=None):
    c, a = review_config(arg, balanced=False, mode="after")
    minority = c.eval.positive_class  # malignant on BreastMNIST, the lesion on the phantom
    c.data.augment_per_class = tuple(f"{minority}: {op}" for op in STRONG)
    c.data.augment_per_class_mode = a.mode
    if a.balanced:
        c.data.sampler = "balanced"
    return c.lock()
