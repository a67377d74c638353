import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from medjax.configs import get_base_config
from medjax.errors import ConfigError
from medjax.eval import classification_metrics, metrics, resample
from medjax.models import build_model
from medjax.models.layers import ACTIVATIONS


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
@pytest.mark.parametrize("activation", ACTIVATIONS.names())
def test_models_take_any_activation_and_expose_features(name, activation):
    c = get_base_config().model
    c.name, c.activation, c.widths = name, activation, (4, 8)
    model = build_model(c, 3, 28)
    x = jnp.ones((2, 28, 28, 1))
    variables = model.init(jax.random.key(0), x, train=False)
    logits, state = model.apply(variables, x, train=False, mutable=["intermediates"])
    assert logits.shape == (2, 3)
    assert "pooled" in state["intermediates"]


def test_unknown_names_list_valid_ones():
    c = get_base_config().model
    c.name = "resnet81"
    with pytest.raises(
        ConfigError, match="Did you mean 'resnet18'.*Valid names: alexnet, cnn, .*resnet18"
    ):
        build_model(c, 2, 28)
    c.name, c.activation = "cnn", "relux"
    with pytest.raises(ConfigError, match="Valid names: elu, gelu"):
        build_model(c, 2, 28)


def test_input_too_small_for_the_imagenet_stem_fails_at_config_time():
    c = get_base_config().model
    c.name, c.stem = "resnet18", "imagenet"
    with pytest.raises(ConfigError, match="stem='small'"):
        build_model(c, 2, 28)


def test_binary_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    p1 = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 200), 0, 1)
    probs = np.stack([1 - p1, p1], 1)
    m = classification_metrics(labels, probs, 2, positive_class=1, bootstrap=200)
    preds = probs.argmax(1)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(labels, p1))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(labels, preds))
    assert m["specificity"] == pytest.approx(skm.recall_score(1 - labels, 1 - preds))
    assert m["f1"] == pytest.approx(skm.f1_score(labels, preds))
    lo, hi = m["ci95"]["auc"]
    assert lo < m["auc"] < hi
    # The malignant-class view (positive_class=0) has the same AUC, swapped sensitivity.
    m0 = classification_metrics(labels, probs, 2, positive_class=0, bootstrap=0)
    assert m0["auc"] == pytest.approx(m["auc"]) and m0["sensitivity"] == m["specificity"]


@pytest.mark.parametrize("num_classes, n", [(2, 60), (3, 90), (5, 30)])
def test_bootstrap_aucs_are_roc_auc_score_of_every_resample(num_classes, n):
    """The intervals' AUCs are computed for all resamples at once; they must be sklearn's,
    ties (rounded probabilities) and resamples missing a class (NaN, dropped) included."""
    rng = np.random.default_rng(num_classes)
    labels = rng.integers(0, num_classes, n)
    probs = rng.dirichlet(np.ones(num_classes), n)
    probs[:, :-1] = np.round(probs[:, :-1], 2)
    probs[:, -1] = 1 - probs[:, :-1].sum(1)
    idx = rng.integers(0, n, (200, n))
    one_by_one = [metrics._auc(labels[i], probs[i], num_classes, 1) for i in idx]
    at_once = resample.auc_rows(labels[idx], probs[idx], num_classes, 1)
    np.testing.assert_allclose(at_once, one_by_one, rtol=0, atol=1e-12)  # NaNs in the same places


def test_multiclass_metrics_are_macro_one_vs_rest():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    probs = rng.dirichlet(np.ones(3), 300)
    m = classification_metrics(labels, probs, 3, bootstrap=0)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr"))
    assert m["sensitivity"] == pytest.approx(m["balanced_accuracy"])
    assert np.array(m["confusion_matrix"]).sum() == 300
