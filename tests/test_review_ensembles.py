"""Output-level ensembles (medjax.ensemble): the combiners against numpy and scikit-learn, the
checks on members, the CLI and ensemble configs end to end; and the feature-level ensemble's
members loading their own pretrained weights."""

import json
import os
import pathlib

import jax
import numpy as np
import pytest
from flax import traverse_util
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from medjax.cli import main_guard
from medjax.configs import as_plain, get_base_config, load_config
from medjax.ensemble import combine
from medjax.ensemble.__main__ import main as ensemble_cli
from medjax.ensemble.from_config import plan, run_ensemble
from medjax.errors import ConfigError, WorkdirError
from medjax.eval import classification_metrics

from .conftest import ROOT, tiny_config
from .test_weights import resnet18_state, write_torch_zip

RNG = np.random.default_rng(0)


def _read(path):
    with open(path) as f:
        return json.load(f)


def _probs(members, n, classes=2, rng=RNG):
    return rng.dirichlet(np.ones(classes), (members, n))


def test_soft_voting_is_the_mean_probability():
    val, test = _probs(3, 20), _probs(3, 30)
    v, t, _ = combine("soft", val, test, np.arange(20) % 2)
    np.testing.assert_allclose(v, val.mean(0))
    np.testing.assert_allclose(t, test.mean(0))


def test_hard_voting_is_the_majority_with_ties_broken_by_mean_probability():
    probs = _probs(4, 200, classes=3)  # 4 members, 3 classes: many 2-2 and 2-1-1 votes
    out = combine("hard", probs, probs, np.arange(200) % 3)[1]
    votes = np.zeros((200, 3))
    for member in probs:
        votes[np.arange(200), member.argmax(-1)] += 1
    mean = probs.mean(0)
    expected = [
        max(np.flatnonzero(v == v.max()), key=lambda c, m=m: m[c])
        for v, m in zip(votes, mean, strict=True)
    ]
    assert (votes.max(1) == 2).sum() > 20  # the tie-break is exercised
    np.testing.assert_array_equal(out.argmax(-1), expected)
    np.testing.assert_allclose(out, votes / 4, atol=1e-5)  # reported: vote fractions
    np.testing.assert_allclose(out.sum(-1), 1)


def test_stacking_is_sklearns_logistic_regression_with_out_of_fold_validation():
    labels = np.arange(60) % 2
    # Members that carry a little signal and much noise, so a fit on all of validation
    # flatters itself on validation.
    val = _probs(8, 60)
    val[0, :, 1] = np.clip(val[0, :, 1] + 0.2 * labels, 0, 1)
    val[0, :, 0] = 1 - val[0, :, 1]
    test = _probs(8, 40)
    v, t, notes = combine("stacking", val, test, labels, seed=3)
    features = lambda p: np.concatenate(list(p), axis=-1)
    ref = LogisticRegression(max_iter=1000, random_state=3).fit(features(val), labels)
    np.testing.assert_allclose(t, ref.predict_proba(features(test)), rtol=1e-6)
    folds = StratifiedKFold(5, shuffle=True, random_state=3)
    oof = cross_val_predict(
        LogisticRegression(max_iter=1000, random_state=3),
        features(val),
        labels,
        cv=folds,
        method="predict_proba",
    )
    np.testing.assert_allclose(v, oof, rtol=1e-6)
    # Not in-sample: validation AUC is below the flattering in-sample one.
    in_sample = roc_auc_score(labels, ref.predict_proba(features(val))[:, 1])
    assert roc_auc_score(labels, v[:, 1]) < in_sample - 0.1
    assert "out-of-fold" in notes["stacking"]["val_predictions"]


def fake_run(root, name, val, test, val_labels, test_labels, classes=("a", "b"), **data):
    """A finished run's workdir as medjax.run leaves it, with the given predictions."""
    w = pathlib.Path(root) / name
    (w / "predictions").mkdir(parents=True)
    config = as_plain(get_base_config())
    config["data"].update(data)
    (w / "config.json").write_text(json.dumps(config))
    (w / "data_summary.json").write_text(json.dumps({"class_names": list(classes)}))
    (w / "results.json").write_text(json.dumps({"test": {"auc": 0.5, "accuracy": 0.5}}))
    for split, p, y in (("val", val, val_labels), ("test", test, test_labels)):
        np.savez(w / "predictions" / f"{split}.npz", probs=p, labels=y)
    return str(w)


@pytest.fixture
def runs(tmp_path):
    """Three finished runs of the same 40 val and 50 test images."""
    val, test = _probs(3, 40), _probs(3, 50)
    yv, yt = np.arange(40) % 2, np.arange(50) % 2
    dirs = [fake_run(tmp_path, f"r{i}", val[i], test[i], yv, yt) for i in range(3)]
    return dirs, val, test, yv, yt


def test_cli_combines_workdirs_into_a_run_like_workdir_that_can_be_a_member(tmp_path, runs):
    dirs, val, test, yv, yt = runs
    out = str(tmp_path / "ens")
    ensemble_cli(["--workdirs", *dirs, "--method", "soft", "--workdir", out, "--bootstrap", "20"])
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    expected = classification_metrics(yt, test.mean(0), 2, 1, bootstrap=20, seed=0)
    assert results["test"]["auc"] == pytest.approx(expected["auc"])
    assert results["test"]["ci95"]["auc"] == pytest.approx(expected["ci95"]["auc"])
    assert results["val"]["accuracy"] == pytest.approx((val.mean(0).argmax(-1) == yv).mean())
    assert [m["workdir"] for m in results["members"]] == dirs
    assert results["members"][0]["test_auc"] == 0.5
    saved = np.load(os.path.join(out, "predictions", "test.npz"))
    np.testing.assert_allclose(saved["probs"], test.mean(0), rtol=1e-6)
    np.testing.assert_array_equal(saved["labels"], yt)
    assert _read(os.path.join(out, "run_card.json"))["members"] == 3
    nested = str(tmp_path / "nested")  # the ensemble is itself a member
    ensemble_cli(["--workdirs", out, dirs[0], "--workdir", nested, "--bootstrap", "0"])
    nested_test = np.load(os.path.join(nested, "predictions", "test.npz"))["probs"]
    np.testing.assert_allclose(nested_test, (test.mean(0) + test[0]) / 2, rtol=1e-6)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"classes": ("a", "c")}, r"different classes \(\['a', 'b'\] vs \['a', 'c'\]\)"),
        ({"val_labels": 1 - np.arange(40) % 2}, "different val sets \\(labels differ\\)"),
        ({"test_size": 49}, "different test sets \\(50 vs 49 images\\)"),
        (
            {"preprocess": ["zscore()"]},
            r"data or preprocessing \(data.preprocess: \['value_range",
        ),
        ({"image_size": 32}, r"data.image_size: 28 vs 32"),
    ],
)
def test_members_that_saw_other_data_are_refused_naming_both(tmp_path, runs, change, message):
    dirs, val, test, yv, yt = runs
    yv2 = change.pop("val_labels", yv)
    n = change.pop("test_size", 50)
    odd = fake_run(tmp_path, "odd", val[0], test[0][:n], yv2, yt[:n], **change)
    with pytest.raises(WorkdirError, match=message) as e:
        ensemble_cli(["--workdirs", dirs[0], odd, "--workdir", str(tmp_path / "o")])
    assert dirs[0] in str(e.value) and odd in str(e.value)
    assert not os.path.exists(tmp_path / "o")  # refused before anything is written


def test_a_member_without_test_predictions_says_how_to_get_them(tmp_path, runs):
    dirs = runs[0]
    os.remove(os.path.join(dirs[1], "predictions", "test.npz"))
    with pytest.raises(WorkdirError, match="run its training command again on the same"):
        ensemble_cli(["--workdirs", *dirs, "--workdir", str(tmp_path / "o")])


def test_multi_label_members_are_refused(tmp_path):
    val, test = RNG.uniform(size=(10, 3)), RNG.uniform(size=(12, 3))
    yv, yt = RNG.integers(0, 2, (10, 3)), RNG.integers(0, 2, (12, 3))
    dirs = [fake_run(tmp_path, f"m{i}", val, test, yv, yt, ("x", "y", "z")) for i in range(2)]
    with pytest.raises(WorkdirError, match="m0 is a multi-label run"):
        ensemble_cli(["--workdirs", *dirs, "--workdir", str(tmp_path / "o")])


def test_unknown_method_lists_the_valid_names(tmp_path, runs, capsys):
    with pytest.raises(SystemExit) as e:
        main_guard(ensemble_cli, ["--workdirs", *runs[0], "--method", "vote", "--workdir", "o"])
    assert e.value.code == 2
    assert "Valid names: hard, soft, stacking" in capsys.readouterr().err
    c = load_config(str(ROOT / "experiments/review/ensemble_cnns.py:method=vote,data=phantom"))
    with pytest.raises(ConfigError, match="config.ensemble.method.*Valid names"):
        run_ensemble(c, str(tmp_path / "e"))
    assert not os.path.exists(tmp_path / "e")  # refused before the workdir is made


def test_an_ensemble_config_is_not_trained_as_one_network():
    from medjax.train.validate import validate

    c = load_config(str(ROOT / "experiments/review/ensemble_cnns.py:data=phantom"))
    with pytest.raises(ConfigError, match="is an output-level ensemble.*python -m medjax.run"):
        validate(c)  # what medjax.sweep, medjax.evaluate and the training loop call first


CONFIG = """
from medjax.configs.review import review_config

MEMBER = ("{plain}:runlocal,data=phantom --config.model.widths=(4,8) --config.train.num_steps=4"
          " --config.log.plots=False --config.log.tensorboard=False --config.eval.gap_check=False"
          " --config.eval.bootstrap_samples=0")


def get_config(arg=None):
    c, a = review_config(arg, method="soft")
    c.ensemble.members = (MEMBER, MEMBER + " --config.model.activation=gelu")
    c.ensemble.method = a.method
    c.eval.bootstrap_samples = 20
    return c.lock()
"""


def test_an_ensemble_config_trains_its_members_then_skips_or_resumes_them(tmp_path, capsys):
    from medjax.run import main as run_main

    path = tmp_path / "ens.py"
    path.write_text(CONFIG.format(plain=ROOT / "experiments/review/plain_cnn.py"))
    workdir = str(tmp_path / "ens")
    argv = ["--config", f"{path}:runlocal,data=phantom,method=stacking", "--workdir", workdir]
    run_main(argv)
    assert "starts" in capsys.readouterr().out
    members = [os.path.join(workdir, "members", m) for m in ("0-cnn", "1-cnn")]
    with open(os.path.join(workdir, "results.json")) as f:
        first = json.load(f)
    assert [m["workdir"] for m in first["members"]] == members
    assert first["method"] == "stacking" and "ci95" in first["test"]
    config = _read(os.path.join(members[1], "config.json"))
    assert config["model"]["activation"] == "gelu" and config["train"]["num_steps"] == 4

    stamp = os.path.getmtime(os.path.join(members[0], "results.json"))
    run_main(argv)  # finished members are skipped
    assert capsys.readouterr().out.count("is finished; skipped") == 2
    assert os.path.getmtime(os.path.join(members[0], "results.json")) == stamp

    # A member with a checkpoint but no results (killed while testing) resumes from it.
    before = np.load(os.path.join(members[0], "predictions", "test.npz"))["probs"]
    os.remove(os.path.join(members[0], "results.json"))
    run_main(argv)
    assert f"member {members[0]} resumes" in capsys.readouterr().out
    after = np.load(os.path.join(members[0], "predictions", "test.npz"))["probs"]
    np.testing.assert_array_equal(after, before)
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["test"] == first["test"]


def test_a_changed_member_config_is_refused_before_anything_trains(tmp_path):
    spec = str(ROOT / "experiments/review/ensemble_cnns.py:runlocal,data=phantom")
    config = load_config(spec)
    member = plan(config, str(tmp_path))[0]
    os.makedirs(member.workdir)
    other = as_plain(member.config)
    other["model"]["widths"] = [4, 8]
    with open(os.path.join(member.workdir, "config.json"), "w") as f:
        json.dump(other, f)
    with pytest.raises(WorkdirError, match="0-cnn holds another config .* --overwrite"):
        plan(config, str(tmp_path))
    assert plan(config, str(tmp_path), overwrite=True)[0].rerun


@pytest.mark.parametrize(
    "name, models",
    [
        ("ensemble_cnns", ("cnn", "cnn", "cnn")),
        ("ensemble_vgg16_vgg19_densenet121", ("vgg16", "vgg19", "densenet121")),
        ("ensemble_resnet50_xception_mobilenetv2", ("resnet50", "xception", "mobilenet_v2")),
        ("ensemble_alexnet_mobilenetv2_resnet18", ("alexnet", "mobilenet_v2", "resnet18")),
    ],
)
def test_review_ensemble_configs_name_the_studies_members(tmp_path, name, models):
    path = ROOT / "experiments/review" / f"{name}.py"
    plans = plan(load_config(f"{path}:seed=2"), str(tmp_path))
    assert tuple(p.config.model.name for p in plans) == models
    assert {p.config.seed for p in plans} == {2}
    assert {p.config.data.name for p in plans} == {"breastmnist"}
    small = plan(load_config(f"{path}:runlocal,data=phantom"), str(tmp_path))
    assert all(p.config.train.num_steps <= 12 for p in small)  # a smoke run
    assert len({p.config.model.activation for p in small}) == 3  # members still differ


def _flat(tree):
    return traverse_util.flatten_dict(jax.device_get(tree))


def test_feature_ensemble_members_load_their_own_pretrained_weights(tmp_path, capsys):
    from medjax.models import build_model
    from medjax.train.experiment import build_experiment
    from medjax.weights import load_pretrained

    weights = write_torch_zip(tmp_path / "r18.pth", resnet18_state())  # 1000-class head
    changes = {
        "data.image_size": 32,
        "data.num_train": 32,
        "model.name": "ensemble",
        "model.members": ("cnn", "resnet18"),
        "model.widths": (4, 8),
        "model.stem": "imagenet",
    }
    fresh = build_experiment([tiny_config(**changes)]).init_state()
    changes["model.member_pretrained"] = ("", weights)
    state = build_experiment([tiny_config(**changes)]).init_state()
    out = capsys.readouterr().out
    assert "pretrained (resnet18): stem_conv: the file's RGB kernel summed" in out
    assert "classifier" not in out  # the member's own classifier is not used, not "re-initialised"
    # Reference: the same file loaded into a resnet18 on its own.
    cfg = tiny_config(**{**changes, "model.name": "resnet18", "model.member_pretrained": ()})
    model = build_model(cfg.model, 2, 32)
    x = jax.numpy.zeros((1, 32, 32, 1))
    like = model.init(jax.random.key(0), x, train=False)
    alone = load_pretrained(weights, "resnet18", like)[0]
    for part in ("params", "batch_stats"):
        expected = {k: v for k, v in _flat(alone[part]).items() if k[0] != "head"}
        got = _flat(getattr(state, part)["resnet18"])
        assert got.keys() == expected.keys()
        for k, v in expected.items():
            np.testing.assert_array_equal(got[k], v)
    # The other member and the ensemble's own head keep their initialisation.
    for name in ("cnn", "head"):
        for k, v in _flat(fresh.params[name]).items():
            np.testing.assert_array_equal(_flat(state.params[name])[k], v)
    assert not np.array_equal(
        _flat(fresh.params["resnet18"])[("stem_conv", "kernel")],
        _flat(state.params["resnet18"])[("stem_conv", "kernel")],
    )


def test_member_pretrained_must_align_with_the_members():
    from medjax.train.validate import validate

    config = tiny_config(
        **{
            "model.name": "ensemble",
            "model.members": ("cnn", "resnet18"),
            "model.member_pretrained": ("a.pth",),
        }
    )
    with pytest.raises(ConfigError, match="has 1 entries for 2 members"):
        validate(config)
