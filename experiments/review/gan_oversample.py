"""GAN over-sampling of the minority class, against SMOTE, class weights and nothing.

Question: does filling the minority class of the training split with images from a
class-conditional GAN find more of the minority class (malignant on BreastMNIST) than SMOTE's
pixel blends, class-weighted loss, or the plain imbalanced recipe, with the same network,
budget and seeds?
Design: the reviewed studies that over-sample with a GAN (DCGAN/conditional GAN-generated
minority images added to the training set until balanced, the classifier then trained on real +
synthetic, evaluated on real test images only). Here a small conditional DCGAN (hinge loss,
projection discriminator; medjax.data.generative) is trained on the training split only, then
fills the minority class; data_summary.json records the counts and the generator's quality
(C2ST and 1-NN accuracy of real vs generated minority images, 0.5 = indistinguishable).
Everything else is the review's plain CNN (medjax.configs.review).
Arguments: `:method=gan|smote|weights|none` (default gan), `:steps=N` the generator's updates
(default 1000), plus the review's `:data=`, `:seed=`, `:runlocal`.
Data: BreastMNIST (546/78/156, malignant 27% of train) by default.
Command:
    python -m medjax.run --config experiments/review/gan_oversample.py:method=gan,seed=0 \
        --workdir runs/review/gan0
    python -m medjax.run --config experiments/review/gan_oversample.py:runlocal,data=phantom \
        --workdir /tmp/x
Result (BreastMNIST test, malignant positive, mean +- SD over seeds 0-2; 2-core CPU shared with
other jobs; generator 1000 steps, width 16, ~5 min of it each):
    method   sensitivity     AUC             accuracy        specificity
    gan      0.944 +- 0.036  0.909 +- 0.016  0.726 +- 0.010  0.646 +- 0.005
    smote    0.889 +- 0.050  0.891 +- 0.021  0.752 +- 0.010  0.702 +- 0.023
    weights  0.786 +- 0.000  0.905 +- 0.005  0.865 +- 0.006  0.895 +- 0.009
    none     0.643 +- 0.041  0.903 +- 0.007  0.865 +- 0.019  (experiments/review/plain_cnn.py)
The generated malignant images are easy to tell from real ones (C2ST accuracy 0.997 +- 0.006,
1-NN 0.872 +- 0.054; 0.5 = indistinguishable). GAN and SMOTE images move the classifier's
operating point far toward malignant (sensitivity up, specificity down) with AUC unchanged:
ranking is no better than the plain CNN's, and balanced accuracy (0.795 for gan, smote and none)
is below class weights' 0.840.
"""

from medjax.configs.review import review_config
from medjax.errors import ConfigError

METHODS = ("gan", "smote", "weights", "none")


def get_config(arg=None):
    c, arg = review_config(arg, method="gan", steps=1000)
    if arg.method not in METHODS:
        raise ConfigError(
            f"config argument method={arg.method!r} is not one of {', '.join(METHODS)}"
        )
    if arg.method == "gan":
        steps = 20 if arg.runlocal else arg.steps
        width = 8 if arg.runlocal else 16
        c.data.oversample = f"gan(steps={steps}, width={width}, batch_size=64, loss='hinge')"
    elif arg.method == "smote":
        c.data.oversample = "smote(k=5)"
    elif arg.method == "weights":
        c.loss.class_weights = "balanced"
    if arg.runlocal and arg.data == "phantom":
        # the phantom's classes are balanced; three classes of 256 images leave two to fill
        c.data.num_classes = 3
    return c.lock()
