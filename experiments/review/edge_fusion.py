"""Edge maps fused with the image: does a CNN gain from hand-crafted edge channels?

Question: on BreastMNIST, do Sobel (default), Laplacian or Canny edge channels added to the
ultrasound image change what the review's plain CNN reaches (test AUC, accuracy, malignant
sensitivity)? Lesion margins (spiculated, angular, indistinct) are the main sign of malignancy
in breast ultrasound, which is why the reviewed studies feed edge maps to the network.
Design (scoping review, hand-crafted + deep feature fusion): the edge maps are computed once
in preprocessing and appended to the image channels. `:fusion=early` (default) gives the
plain CNN all channels (1 + 1 for sobel, laplacian or canny; 1 + 3 for `:edges=all`);
`:fusion=late` gives the image to one CNN and the edges to another (model `two_branch`) and
concatenates their pooled features before the classifier. Everything else is the plain recipe
(medjax.configs.review); augmentation (random_affine) then moves the image and its edge maps
together, so the edge channels of a training image are the transformed edges of the original.
Canny thresholds are on images in [-1, 1], twice skimage's defaults for [0, 1] images.
Data: BreastMNIST (546/78/156 at 28 px) by default; `:data=phantom` needs no files.
Command:
    python -m medjax.run --config experiments/review/edge_fusion.py:edges=sobel,seed=0 --workdir runs/review/edge_sobel0
    python -m medjax.run --config experiments/review/edge_fusion.py:runlocal,data=phantom --workdir /tmp/x
Result (BreastMNIST test set, seeds 0-2, mean +- SD; 2-core AMD EPYC CPU shared with other jobs):
`:edges=sobel` (early) AUC 0.911 +- 0.010, accuracy 0.855 +- 0.013, malignant sensitivity
0.619 +- 0.048, against the plain CNN's 0.903 +- 0.007, 0.865 +- 0.019, 0.643 +- 0.041: no
difference beyond the seeds' spread. Laplacian, Canny and late fusion were not run on real data.
"""

from medjax.configs.review import review_config
from medjax.errors import ConfigError

EDGES = {
    "sobel": ("sobel(channels=1)",),
    "laplacian": ("laplacian(channels=1)",),
    "canny": ("canny(sigma=1.0, low=0.2, high=0.4, channels=1)",),
    "all": (
        "sobel(channels=1)",
        "laplacian(channels=1)",
        "canny(sigma=1.0, low=0.2, high=0.4, channels=1)",
    ),
}
FUSIONS = ("early", "late")


def get_config(arg=None):
    c, arg = review_config(arg, edges="sobel", fusion="early")
    if arg.edges not in EDGES:
        raise ConfigError(
            f"config argument edges={arg.edges!r} is not an edge map; valid: {', '.join(EDGES)}"
        )
    if arg.fusion not in FUSIONS:
        raise ConfigError(f"config argument fusion={arg.fusion!r}; valid: {', '.join(FUSIONS)}")
    c.data.preprocess = (*c.data.preprocess, *EDGES[arg.edges])
    if arg.fusion == "late":
        c.model.name = "two_branch"
        c.model.branches = ("cnn", "cnn")
        c.model.branch_channels = c.data.channels
    return c.lock()
