"""Classifier heads (medjax.heads, config.model.head): fitted heads are scikit-learn's own
estimators on the network's features, chosen on validation; the ELM is a ridge solve; the MLP
head's layers are named and freezable; the results, files, prediction and export of a run
with a fitted head; the bad configs."""

import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from medjax.configs import get_base_config
from medjax.configs.loader import load_config
from medjax.errors import ConfigError, Interrupted
from medjax.export import export_run
from medjax.heads import HEADS
from medjax.heads.elm import random_layer
from medjax.heads.select import fit_and_select
from medjax.inference import load_run
from medjax.models import MODELS, build_model
from medjax.train import finetune
from medjax.train.experiment import build_experiment, load_data, pipeline_fns
from medjax.train.loop import train_and_evaluate_runs
from medjax.train.validate import validate
from tests.conftest import ROOT, interrupt_at, tiny_config

SPLITS = ("train", "val", "test")


def _config(**changes):
    return tiny_config(**{"model.widths": (4, 8), "model.head": "svm", **changes})


def _features(workdir: str, config) -> tuple[dict, dict]:
    """The run's pooled features by split, extracted here from its saved variables with
    model.apply(mutable=["intermediates"]), and the labels."""
    run = load_run(workdir)
    data = load_data(config, pipeline_fns(config)[0]).dataset
    feats = {}
    for s in SPLITS:
        _, inter = run.model.apply(
            run.variables, data.splits[s].images, train=False, mutable=["intermediates"]
        )
        feats[s] = np.asarray(inter["intermediates"]["pooled"][0], np.float32)
    return feats, {s: data.splits[s].labels for s in SPLITS}


@pytest.fixture(scope="module")
def svm_runs(tmp_path_factory):
    """Two seeds trained together with an SVM head, interrupted and resumed: (dirs, configs)."""
    root = tmp_path_factory.mktemp("heads")
    configs = [_config(seed=s, vectorize=("seed",)) for s in (0, 1)]
    dirs = [str(root / f"svm{s}") for s in (0, 1)]
    with pytest.raises(Interrupted):
        train_and_evaluate_runs(configs, dirs, hooks=[interrupt_at(5)])
    train_and_evaluate_runs(configs, dirs)
    return dirs, configs


# scikit-learn's own estimators, built here as the heads' docstrings describe them
REFERENCES = {
    "svm": lambda seed, C: make_pipeline(
        StandardScaler(),
        CalibratedClassifierCV(SVC(C=C, random_state=seed), cv=5, ensemble=False),
    ),
    "svm_linear": lambda seed, C: make_pipeline(
        StandardScaler(),
        CalibratedClassifierCV(SVC(C=C, kernel="linear", random_state=seed), cv=5, ensemble=False),
    ),
    "logreg": lambda seed, C: make_pipeline(
        StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed)
    ),
    "rf": lambda seed, **p: RandomForestClassifier(random_state=seed, **p),
    "knn": lambda seed, n_neighbors: make_pipeline(
        StandardScaler(), KNeighborsClassifier(n_neighbors=n_neighbors)
    ),
}


def test_run_results_are_the_fitted_heads_and_each_run_fits_its_own(svm_runs):
    dirs, configs = svm_runs
    chosen = []
    for d, config in zip(dirs, configs, strict=True):
        res = json.loads(pathlib.Path(d, "results.json").read_text())
        assert {"val", "test"} <= set(res["network_head"]) and res["head"]["name"] == "svm"
        feats, labels = _features(d, config)
        ref = REFERENCES["svm"](config.seed, **res["head"]["params"])
        ref.fit(feats["train"], labels["train"])
        saved = np.load(pathlib.Path(d, "predictions", "val.npz"))["probs"]
        # The run's features come from padded, jitted batches, these from one plain apply:
        # they agree to float32 rounding, which the SVM and its Platt fit carry on slightly.
        np.testing.assert_allclose(saved, ref.predict_proba(feats["val"]), atol=2e-3)
        assert res["val"]["auc"] == pytest.approx(roc_auc_score(labels["val"], saved[:, 1]))
        test_auc = roc_auc_score(labels["test"], ref.predict_proba(feats["test"])[:, 1])
        assert res["test"]["auc"] == pytest.approx(test_auc, abs=5e-3)  # a swapped pair at most
        chosen.append(feats["train"])
    assert not np.allclose(chosen[0], chosen[1])  # two networks, two heads


def test_predict_applies_the_head_and_export_refuses_it(svm_runs, tmp_path):
    d, config = svm_runs[0][0], svm_runs[1][0]
    run = load_run(d)
    images = load_data(config, pipeline_fns(config)[0]).dataset.splits["val"].images
    saved = np.load(pathlib.Path(d, "predictions", "val.npz"))["probs"]
    np.testing.assert_allclose(run.predict(images, batch_size=48), saved, atol=1e-5)
    with pytest.raises(ConfigError, match="model.head='svm' is fitted on the network's features"):
        export_run(run, str(tmp_path / "out"))


def test_a_run_killed_while_fitting_refits_the_same_head(svm_runs, tmp_path):
    dirs, configs = svm_runs
    copy = str(tmp_path / "again")
    shutil.copytree(dirs[0], copy)
    for name in ("results.json", "head", "predictions"):  # as if killed before they were written
        path = pathlib.Path(copy, name)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    again = train_and_evaluate_runs([configs[0].copy_and_resolve_references()], [copy])[0]
    first = json.loads(pathlib.Path(dirs[0], "results.json").read_text())
    assert again["head"] == first["head"] and again["test"]["auc"] == first["test"]["auc"]
    np.testing.assert_array_equal(
        np.load(pathlib.Path(copy, "predictions", "val.npz"))["probs"],
        np.load(pathlib.Path(dirs[0], "predictions", "val.npz"))["probs"],
    )


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_each_head_is_scikit_learns_estimator_at_the_val_best_grid_point(svm_runs, name):
    d, config = svm_runs[0][0], svm_runs[1][0]
    feats, labels = _features(d, config)
    config = _config(**{"model.head": name})
    fitted, params, tried = fit_and_select(config, feats, labels, 2)
    # the grid scored independently: the earliest point of the best validation AUC wins
    aucs = []
    for point in HEADS.get(name).grid:
        ref = REFERENCES[name](config.seed, **point).fit(feats["train"], labels["train"])
        aucs.append(roc_auc_score(labels["val"], ref.predict_proba(feats["val"])[:, 1]))
    assert [t["val_auc"] for t in tried] == pytest.approx(aucs)
    assert params == HEADS.get(name).grid[int(np.argmax(aucs))]
    ref = REFERENCES[name](config.seed, **params).fit(feats["train"], labels["train"])
    np.testing.assert_allclose(
        fitted.predict_proba(feats["test"]), ref.predict_proba(feats["test"]), atol=1e-6
    )


def test_elm_is_a_ridge_solve_on_a_seeded_random_layer():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (60, 7)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    elm = HEADS.get("elm").fit
    head = elm(x, y, 3, seed=4, hidden=32, ridge=0.5)
    # numpy, in float64: standardise, the hidden layer, the normal equations
    w, b = (np.asarray(a, np.float64) for a in random_layer(4, 7, 32))
    h = np.tanh((x - x.mean(0)) / x.std(0) @ w + b)
    beta = np.linalg.solve(h.T @ h + 0.5 * np.eye(32), h.T @ np.eye(3)[y])
    np.testing.assert_allclose(head.beta, beta, atol=2e-4)
    out = h @ beta
    probs = np.exp(out) / np.exp(out).sum(1, keepdims=True)
    np.testing.assert_allclose(head.predict_proba(x), probs, atol=1e-5)
    np.testing.assert_array_equal(elm(x, y, 3, 4, 32, 0.5).beta, head.beta)  # seeded
    assert not np.allclose(elm(x, y, 3, 5, 32, 0.5).beta, head.beta)


def _params(name: str, hidden=(6, 5), **model):
    cfg = get_base_config().model
    cfg.name, cfg.widths, cfg.head, cfg.head_hidden = name, (4, 8), "mlp", hidden
    for key, value in model.items():
        cfg[key] = value
    m = build_model(cfg, 2, 32)
    x = jnp.zeros((1, 32, 32, 1))
    return jax.eval_shape(lambda x: m.init(jax.random.key(0), x), x)["params"]


def _paths(tree, leaf=False) -> dict:
    return {
        "/".join(str(k.key) for k in p): v if leaf else v.shape
        for p, v in jax.tree_util.tree_leaves_with_path(tree)
    }


@pytest.mark.parametrize(
    ("name", "model", "width", "prefix"),
    [
        ("cnn", {}, 8, ""),
        ("vgg11", {}, 512, "Classifier_0/"),  # after fc1/fc2, torchvision's "fc7" features
        ("ensemble", {"members": ("cnn", "cnn"), "combine": "concat"}, 16, ""),
        ("vit_ti", {"patch_size": 8}, 192, ""),
    ],
)
def test_mlp_head_layers_are_named_shaped_and_freezable(name, model, width, prefix):
    paths = _paths(_params(name, **model))
    assert paths[f"{prefix}head_hidden0/kernel"] == (width, 6)
    assert paths[f"{prefix}head_hidden1/kernel"] == (6, 5)
    assert paths[f"{prefix}head/kernel"] == (5, 2)
    assert not any("head_hidden" in p for p in paths if p.startswith(("cnn/", "cnn_1/")))
    if not prefix:  # "^(?!head)" (train only the head) keeps the whole MLP head trainable
        frozen = _paths(finetune.frozen_mask(_params(name, **model), ("^(?!head)",)), leaf=True)
        assert all(f == (not p.startswith("head")) for p, f in frozen.items())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model.head": "mlp"}, "head='mlp' needs hidden layers"),
        ({"model.head": "linear", "model.head_hidden": (8,)}, "set config.model.head='mlp'"),
        ({"model.head": "svn"}, "Did you mean 'svm'.*Valid names: elm, knn, linear"),
        ({"model.head_hidden": (0,), "model.head": "mlp"}, "must be positive layer widths"),
        ({"model.head": "rf", "loss.name": "sigmoid_bce"}, "is for multi-label data"),
    ],
)
def test_bad_head_configs_fail_validation(changes, message):
    with pytest.raises(ConfigError, match=message):
        validate(tiny_config(**changes))


def test_a_fitted_head_on_a_model_without_pooled_features_fails_before_data(monkeypatch):
    import flax.linen as nn

    class NoPooled(nn.Module):  # a classifier that sows no "pooled" features
        num_classes: int

        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(self.num_classes, name="head")(x.reshape(len(x), -1))

    monkeypatch.setitem(
        MODELS._entries, "nopooled", lambda cfg, num_classes, **_: NoPooled(num_classes)
    )
    monkeypatch.setenv("MEDJAX_DATA_DIR", "/nonexistent")  # reading data would fail otherwise
    config = tiny_config(
        **{"model.name": "nopooled", "model.head": "knn", "data.source": "medmnist"}
    )
    with pytest.raises(ConfigError, match="model 'nopooled' gives no 'pooled' feature vector"):
        build_experiment([config])
    validate(tiny_config(**{"model.name": "nopooled"}))  # its own linear head is fine


def test_review_head_configs_choose_heads_by_name():
    elm = load_config(str(ROOT / "experiments/review/efficientnet_vgg16_elm.py"))
    assert (elm.model.members, elm.model.combine) == (("efficientnet_b0", "vgg16"), "concat")
    spec = str(ROOT / "experiments/review/cnn_svm.py")
    assert load_config(f"{spec}:head=elm").model.head == "elm"
    with pytest.raises(ConfigError, match="Valid names: elm, knn, linear, logreg, mlp, rf"):
        load_config(f"{spec}:head=xgboost")


def test_the_ensemble_elm_experiment_runs_locally_and_keeps_the_network_head(tmp_path):
    spec = ROOT / "experiments/review/efficientnet_vgg16_elm.py:runlocal,data=phantom"
    res = train_and_evaluate_runs([load_config(str(spec))], [str(tmp_path)])[0]
    assert json.loads((tmp_path / "results.json").read_text())["test"] == res["test"]
    assert set(res["network_head"]) == {"val", "test"} and res["head"]["name"] == "elm"
    assert res["head"]["features"] == 16  # the two members' pooled features, concatenated
    assert (tmp_path / "head" / "head.pkl").exists()


@pytest.mark.parametrize(
    "spec", ["resnet50_mlp.py", "resnet50_mlp.py:runlocal,data=phantom", "cnn_svm.py:head=mlp"]
)
def test_the_mlp_experiments_validate(spec):
    """(Their training is the network's own: the loop tests cover it.)"""
    config = load_config(str(ROOT / "experiments/review" / spec))
    validate(config)
    assert (config.model.head, config.model.head_hidden) == ("mlp", (512, 256))


def test_pretrained_weights_load_under_an_mlp_head_which_starts_fresh(tmp_path):
    from medjax.weights import load_pretrained
    from tests.test_weights import resnet18_state, write_torch_zip

    path = write_torch_zip(tmp_path / "r18.pth", resnet18_state())
    cfg = get_base_config().model
    cfg.name, cfg.head, cfg.head_hidden, cfg.stem = "resnet18", "mlp", (6,), "imagenet"
    model = build_model(cfg, 2, 32)
    like = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    variables, notes = load_pretrained(str(path), "resnet18", like)
    assert any("MLP head (1 hidden layers" in n for n in notes)
    for layer in ("head_hidden0", "head"):  # fresh, from `like`
        np.testing.assert_array_equal(
            variables["params"][layer]["kernel"], like["params"][layer]["kernel"]
        )
    want = resnet18_state()["conv1.weight"].transpose(2, 3, 1, 0)  # the rest from the file
    np.testing.assert_array_equal(variables["params"]["stem_conv"]["kernel"], want)
