"""How far generated images are from real ones: classifier two-sample tests on pixels.

`c2st` (Lopez-Paz & Oquab 2017) trains a small classifier (a one-hidden-layer MLP on
standardised pixels, scikit-learn) to tell real images from generated ones, and reports its
held-out accuracy over stratified folds: 0.5 means the classifier cannot tell them apart, 1.0
that every generated image is recognisably fake. `nn1_accuracy` is the leave-one-out accuracy of
the 1-nearest-neighbour classifier on the same pooled set (Xu et al. 2018): about 0.5 when the
two sets are alike, near 1 when they are apart, and well under 0.5 when generated images are
near-copies of real ones (memorisation, which the C2ST alone would score as perfect).

Both use equally many real and generated images (the larger set is subsampled from the seed),
so chance is 0.5 exactly.
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import NearestNeighbors
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _pooled(real: np.ndarray, fake: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    m = min(len(real), len(fake))
    a = real[rng.permutation(len(real))[:m]].reshape(m, -1)
    b = fake[rng.permutation(len(fake))[:m]].reshape(m, -1)
    x = np.concatenate([a, b]).astype(np.float64)
    return x, np.repeat([0, 1], m)


def c2st(real: np.ndarray, fake: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """Held-out accuracy of a small classifier telling `real` from `fake` (0.5 = alike)."""
    x, y = _pooled(real, fake, seed)
    folds = max(2, min(folds, len(x) // 2 // 2))
    clf = make_pipeline(
        StandardScaler(),
        MLPClassifier((32,), alpha=1e-2, max_iter=300, random_state=seed),
    )
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a capped fit is still a test
        return float(np.mean(cross_val_score(clf, x, y, cv=cv)))


def nn1_accuracy(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> float:
    """Leave-one-out 1-NN accuracy on real vs fake pixels (0.5 = alike, << 0.5 = copies)."""
    x, y = _pooled(real, fake, seed)
    idx = NearestNeighbors(n_neighbors=2).fit(x).kneighbors(x)[1]
    # the nearest other point: column 0 is the point itself unless it has an exact duplicate
    other = np.where(idx[:, 0] == np.arange(len(x)), idx[:, 1], idx[:, 0])
    return float(np.mean(y[other] == y))
