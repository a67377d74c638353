"""A finished run, loaded from its own files (medjax.inference): the same probabilities as its
test, the run's preprocessing reapplied without its training images, one message for a workdir
without a finished run, and runs finished before inference files existed re-tested once."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from medjax.configs import as_plain, config_from_plain, load_config
from medjax.data import load_dataset
from medjax.errors import WorkdirError
from medjax.eval import classification_metrics
from medjax.inference import files, load_run
from medjax.ops import build_preprocess
from medjax.train.experiment import load_data, pipeline_fns

from .conftest import ROOT

ZSCORE = ("value_range(min=0.0, max=1.0)", "zscore(scope='dataset')")


@pytest.fixture(scope="module")
def finished(phantom_run):
    """The shared tiny run: dataset-fitted z-scoring (ZSCORE) and EMA weights."""
    assert tuple(phantom_run.config.data.preprocess) == ZSCORE
    assert phantom_run.config.train.ema_decay > 0
    return phantom_run.config, phantom_run.workdir, phantom_run.results


def test_loaded_run_reproduces_its_test_probabilities(finished):
    config, workdir, results = finished
    run = load_run(workdir)
    test = load_data(config, pipeline_fns(config)[0]).dataset.splits["test"]
    probs = run.predict(test.images)
    again = classification_metrics(test.labels, probs, 2, bootstrap=0)
    assert again["auc"] == results["test"]["auc"]
    assert again["confusion_matrix"] == results["test"]["confusion_matrix"]
    assert run.class_names == ["no_lesion", "lesion_1"]
    assert run.image_shape == test.images.shape[1:]


def test_bound_preprocessing_equals_the_fitted_one(finished):
    config, workdir, _ = finished
    run = load_run(workdir)
    raw = load_dataset(config.data)
    fitted, _ = build_preprocess(ZSCORE).fit(raw.splits["train"].images)
    expected = np.asarray(jax.vmap(fitted)(raw.splits["val"].images))
    np.testing.assert_allclose(run.preprocess_images(raw.splits["val"].images), expected, atol=1e-6)


def test_config_round_trips_through_config_json():
    config = load_config(str(ROOT / "experiments" / "breastmnist_resnet18.py"))
    back = config_from_plain(json.loads(json.dumps(as_plain(config))))
    assert as_plain(back) == as_plain(config)
    assert isinstance(back.data.augment, tuple) and back.is_locked


@pytest.mark.parametrize("missing", ["results.json", "config.json"])
def test_a_workdir_without_a_finished_run_is_one_message(finished, tmp_path, missing):
    _, workdir, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    os.remove(copy / missing)
    with pytest.raises(WorkdirError, match=f"no finished run: {missing} is missing"):
        load_run(str(copy))
    with pytest.raises(WorkdirError, match="does not exist"):
        load_run(str(tmp_path / "nowhere"))


def test_a_run_without_inference_files_is_retested_once(finished, tmp_path):
    _, workdir, results = finished
    copy = tmp_path / "old"
    shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns(".medjax.lock"))
    shutil.rmtree(copy / files.FOLDER)
    run = load_run(str(copy))
    original = files.read_variables(workdir)
    assert jax.tree.all(jax.tree.map(np.array_equal, original, run.variables))
    assert json.loads((copy / "results.json").read_text())["test"]["auc"] == results["test"]["auc"]


def test_a_damaged_variables_file_says_how_to_rewrite_it(finished, tmp_path):
    _, workdir, _ = finished
    copy = tmp_path / "damaged"
    shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns(".medjax.lock"))
    (copy / files.VARIABLES).write_bytes(b"\x93not msgpack")
    with pytest.raises(WorkdirError, match="damaged.*run the training command again"):
        load_run(str(copy))


def test_a_config_json_from_another_model_is_one_message(finished, tmp_path):
    _, workdir, _ = finished
    copy = tmp_path / "edited"
    shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns(".medjax.lock"))
    config = json.loads((copy / "config.json").read_text())
    config["model"]["widths"] = [8, 32]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(WorkdirError, match="does not fit the model that .*config.json describes"):
        load_run(str(copy))
