"""The scikit-learn heads, each a Pipeline whose features are standardised (fitted on the
training features) where the method depends on feature scale: all but the random forest."""

from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from medjax.heads.registry import register

C_GRID = tuple({"C": c} for c in (0.01, 0.1, 1.0, 10.0, 100.0))


def _fitted(estimator, features, labels, standardise: bool = True):
    steps = (StandardScaler(), estimator) if standardise else (estimator,)
    return make_pipeline(*steps).fit(features, labels)


def _platt(svc):
    """SVC probabilities by Platt scaling, fitted on 5 unshuffled (so deterministic) stratified
    folds: what SVC(probability=True) did before scikit-learn 1.9 deprecated it."""
    return CalibratedClassifierCV(svc, method="sigmoid", cv=5, ensemble=False)


@register("svm", C_GRID)
def svm(features, labels, num_classes, seed, C):
    return _fitted(_platt(SVC(C=C, kernel="rbf", random_state=seed)), features, labels)


@register("svm_linear", tuple({"C": c} for c in (0.001, 0.01, 0.1, 1.0)))
def svm_linear(features, labels, num_classes, seed, C):
    return _fitted(_platt(SVC(C=C, kernel="linear", random_state=seed)), features, labels)


@register("logreg", C_GRID)
def logreg(features, labels, num_classes, seed, C):
    return _fitted(LogisticRegression(C=C, max_iter=2000, random_state=seed), features, labels)


@register(
    "rf",
    tuple({"max_depth": d, "n_estimators": n} for d in (4, 8, None) for n in (100, 300)),
)
def rf(features, labels, num_classes, seed, max_depth, n_estimators):
    forest = RandomForestClassifier(
        n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=1
    )
    return _fitted(forest, features, labels, standardise=False)  # trees ignore scale


@register("knn", tuple({"n_neighbors": k} for k in (3, 5, 9, 15, 25)))
def knn(features, labels, num_classes, seed, n_neighbors):
    return _fitted(KNeighborsClassifier(n_neighbors=n_neighbors), features, labels)
