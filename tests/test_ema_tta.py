"""The weights' exponential moving average and flip test-time augmentation: the train step
keeps the warm-up-corrected average (recomputed here in float64 numpy), the eval step predicts
from it rather than from the raw weights, flip TTA is exactly the mean of the image's and its
left-right mirror's probabilities, and train_and_evaluate's test metrics are those of the
averaged weights with flips."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from medjax.configs import get_base_config
from medjax.data import load_dataset
from medjax.eval import classification_metrics
from medjax.models import build_model
from medjax.ops import build_preprocess
from medjax.train.loop import train_and_evaluate
from medjax.train.steps import init_state, make_eval_step, make_train_step

from .conftest import tiny_config
from .test_train import _final_params

SHAPE = (16, 16, 1)
DECAY = 0.3  # the warm-up's (1 + t) / (10 + t) is below it for t = 1, 2 and above after


def _model():
    c = get_base_config().model
    c.widths = (4, 8)
    return build_model(c, 3, SHAPE[0])


def _batch(i, n=8):
    """Random (not mirror-symmetric) images and labels."""
    images = jax.random.uniform(jax.random.key(i), (n, *SHAPE))
    return images, jnp.arange(n) % 3


def _xent(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _probs(model, variables, images):
    """Softmax of the model's logits, by hand in numpy."""
    logits = np.asarray(model.apply(variables, jnp.asarray(images), train=False), np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _raw(state):
    return {"params": state.params, "batch_stats": state.batch_stats}


def _max_gap(a, b) -> float:
    return max(
        float(np.abs(np.asarray(x) - y).max())
        for x, y in zip(*map(jax.tree.leaves, (a, b)), strict=True)
    )


@pytest.fixture(scope="module")
def trained():
    """(model, states after steps 0..6 of SGD with an EMA of decay DECAY)."""
    model = _model()
    tx = optax.sgd(0.5)
    states = [init_state(model, tx, SHAPE, seed=0, ema=True)]
    step = jax.jit(make_train_step(model, tx, _xent, ema_decay=DECAY))
    for t in range(1, 7):
        states.append(step(states[-1], *_batch(t))[0])
    return model, states


def test_ema_is_the_warm_up_corrected_average_of_the_weights(trained):
    _, states = trained
    f64 = lambda x: np.asarray(x, np.float64)
    average = jax.tree.map(f64, _raw(states[0]))
    chex.assert_trees_all_equal(states[0].ema, _raw(states[0]))
    for t, state in enumerate(states[1:], start=1):
        d = min(DECAY, (1 + t) / (10 + t))  # TF's ExponentialMovingAverage(num_updates=t)
        average = jax.tree.map(lambda e, x, d=d: d * e + (1 - d) * f64(x), average, _raw(state))
        chex.assert_trees_all_close(state.ema, average, rtol=1e-5, atol=1e-6)
        assert int(state.step) == t
    assert _max_gap(states[-1].ema, _raw(states[-1])) > 1e-2  # the average lags the weights


def test_eval_predicts_from_the_ema_weights(trained):
    model, states = trained
    images, _ = _batch(99)
    state = states[-1]
    got = np.asarray(jax.jit(make_eval_step(model))(state, images))
    np.testing.assert_allclose(got, _probs(model, state.ema, images), atol=1e-6)
    # Apart by far more than the 1e-6 to which they match (measured 1.5e-3).
    assert np.abs(got - _probs(model, _raw(state), images)).max() > 1e-4
    # Without an average the raw weights are evaluated.
    plain = np.asarray(make_eval_step(model)(state.replace(ema=()), images))
    np.testing.assert_allclose(plain, _probs(model, _raw(state), images), atol=1e-6)


def test_flip_tta_is_the_mean_of_the_image_and_its_mirror(trained):
    model, states = trained
    images, _ = _batch(99)
    state = states[-1]
    mirrored = np.asarray(images)[:, :, ::-1, :]  # (N, H, W, C): left-right is W
    p, p_mirror = _probs(model, state.ema, images), _probs(model, state.ema, mirrored)
    assert np.abs(p - p_mirror).max() > 1e-4  # the model is not mirror-symmetric (4e-3)
    got = np.asarray(jax.jit(make_eval_step(model, flip_tta=True))(state, images))
    np.testing.assert_allclose(got, (p + p_mirror) / 2, atol=1e-6)
    assert np.abs(got - p).max() > 1e-4  # measured 2e-3


def test_train_and_evaluate_tests_the_ema_weights_with_flips(tmp_path):
    config = tiny_config(
        **{
            "data.num_classes": 3,
            "train.ema_decay": 0.9,
            "eval.flip_tta": True,
            "train.num_steps": 6,
            "train.eval_every_epochs": 100.0,  # validate, select and test the last step
            "eval.bootstrap_samples": 0,
        }
    )
    results = train_and_evaluate(config, str(tmp_path))
    assert results["selected_step"] == 6
    state = _final_params(str(tmp_path), config)[1]
    test = load_dataset(config.data).splits["test"]
    images = np.asarray(jax.vmap(build_preprocess(config.data.preprocess))(test.images))
    model = build_model(config.model, 3, config.data.image_size)

    def auc(variables, flip):
        p = _probs(model, variables, images)
        if flip:
            p = (p + _probs(model, variables, images[:, :, ::-1])) / 2
        return classification_metrics(test.labels, p, 3, config.eval.positive_class)["auc"]

    raw = {"params": state["params"], "batch_stats": state["batch_stats"]}
    expected = auc(state["ema"], flip=True)
    assert results["test"]["auc"] == pytest.approx(expected, abs=1e-9)
    # Each of the other three ways gives another result (measured 0.015 to 0.04 apart).
    for variables, flip in ((state["ema"], False), (raw, True), (raw, False)):
        assert abs(auc(variables, flip) - expected) > 5e-3, flip
