"""`python -m medjax.export`: the exported StableHLO, reloaded in a fresh process with jax alone
(the loader, and the README's snippet without medjax), gives TrainedRun.predict's probabilities
for a 2D and a 3D run, at batch sizes 1 and 5."""

import csv
import dataclasses
import os
import re
import subprocess
import sys

import nibabel
import numpy as np
import pytest
from PIL import Image

from medjax.errors import ConfigError, DataError, WorkdirError
from medjax.export import export_run, main
from medjax.inference import load_run
from medjax.inference.exported import load
from medjax.predict import main as predict_main
from medjax.train.experiment import load_data, pipeline_fns
from medjax.train.loop import train_and_evaluate

from .conftest import ROOT, tiny_config


def _nifti_folder(root) -> str:
    """20 volumes per class of 8x10x6 voxels, the second class brighter in its centre."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(["healthy", "lesion"]):
        os.makedirs(root / name)
        for i in range(20):
            volume = rng.uniform(0, 120, (8, 10, 6)).astype(np.float32)
            volume[3:6, 3:7, 2:4] += 100 * label
            nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), str(root / name / f"{i}.nii"))
    return str(root)


@pytest.fixture(scope="module")
def runs(folder_run, tmp_path_factory):
    """The shared PNG-folder run (2D, flip TTA) and a tiny 3D run on NIfTI volumes."""
    root = tmp_path_factory.mktemp("export")
    volumes = tiny_config(
        **{
            "data.source": "nifti",
            "data.path": _nifti_folder(root / "volumes"),
            "data.depth": 4,
            "data.image_size": 8,
            "model.name": "cnn3d",
            "model.widths": (4, 8),
            "train.num_steps": 4,
            "train.batch_size": 8,
            "eval.batch_size": 8,
        }
    )
    train_and_evaluate(volumes, str(root / "3d"))
    return {"2d": load_run(folder_run[0]), "3d": load_run(str(root / "3d"))}


def readme_snippet() -> str:
    section = (
        (ROOT / "README.md").read_text().split("## Prediction and export")[1].split("\n## ")[0]
    )
    return next(b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "json" in b)


CHECK = """
import sys
import numpy as np
folder, images_path = sys.argv[1], sys.argv[2]
images = np.load(images_path)
{snippet}
assert not [m for m in sys.modules if m.startswith("medjax")], "the snippet imported medjax"
from_snippet = [np.asarray(program.call(weights, images[:n])) for n in (1, 5)]
from medjax.inference.exported import load
predict = load(folder)
assert "medjax.models" not in sys.modules and "medjax.data" not in sys.modules
np.savez(images_path + ".out.npz", snippet1=from_snippet[0], snippet5=from_snippet[1],
         load1=predict(images[:1]), load5=predict(images))
"""


@pytest.mark.parametrize("name", ["2d", "3d"])
def test_export_reloads_in_a_fresh_process_with_the_same_probabilities(runs, name, tmp_path):
    run = runs[name]
    out = export_run(run, str(tmp_path / "exported"))
    images = np.random.default_rng(1).normal(size=(5, *run.image_shape)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    script = CHECK.format(snippet=readme_snippet().replace('"exported/mri"', "folder"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", script, out, str(tmp_path / "images.npy")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(tmp_path / "images.npy.out.npz")
    expected = run.predict(images)
    for n in (1, 5):
        for how in ("snippet", "load"):
            np.testing.assert_allclose(got[f"{how}{n}"], expected[:n], atol=1e-6, rtol=0)
    assert run.config.eval.flip_tta == (name == "2d")


def test_calibrated_program_and_manifest(runs, tmp_path):
    run = runs["2d"]
    run_as_trained = run
    results = {
        **run.results,
        "calibration": {"temperature": 1.7},
        "operating_point": {"threshold": 0.4},
    }
    run = dataclasses.replace(run, results=results)
    out = str(tmp_path / "e")
    main_args = ["--workdir", run.workdir, "--out", str(tmp_path / "cli"), "--platforms", "cpu"]
    export_run(run, out, platforms=("cpu",))
    images = np.random.default_rng(2).normal(size=(3, *run.image_shape)).astype(np.float32)
    calibrated = load(out, calibrated=True)
    np.testing.assert_allclose(calibrated(images), run.predict(images, temperature=1.7), atol=1e-6)
    meta = calibrated.meta
    assert meta["temperature"] == 1.7 and meta["threshold"] == 0.4
    assert meta["class_names"] == run.class_names and meta["input"]["shape"][1:] == [28, 28, 1]
    assert meta["preprocessing"]["ops"] == list(run.config.data.preprocess)
    with pytest.raises(ConfigError, match="exists already"):
        export_run(run, out)
    main(main_args)  # the command line, on the run as trained: its fitted temperature
    fitted = run_as_trained.results["calibration"]["temperature"]
    assert load(str(tmp_path / "cli"), calibrated=True).meta["temperature"] == fitted
    uncalibrated = {k: v for k, v in run_as_trained.results.items() if k != "calibration"}
    export_run(dataclasses.replace(run, results=uncalibrated), str(tmp_path / "plain"))
    with pytest.raises(WorkdirError, match="fitted no temperature"):
        load(str(tmp_path / "plain"), calibrated=True)


def test_predict_on_volumes_matches_the_training_pipeline(runs, tmp_path):
    """medjax.predict on the 3D run's NIfTI folder: every test volume, as training decoded and
    preprocessed it, has its probabilities in the CSV; a PNG for this model is refused."""
    run = runs["3d"]
    out = str(tmp_path / "p.csv")
    predict_main(["--workdir", run.workdir, "--input", run.config.data.path, "--out", out])
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40
    got = np.array([[float(r[f"prob_{c}"]) for c in run.class_names] for r in rows])
    test = load_data(run.config, pipeline_fns(run.config)[0]).dataset.splits["test"]
    expected = run.predict(test.images)
    assert np.abs(expected[:, None] - got[None]).max(-1).min(1).max() < 1e-6
    png = str(tmp_path / "flat.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    with pytest.raises(DataError, match=r"flat\.png: a 2D image.*takes 1-channel volumes"):
        predict_main(["--workdir", run.workdir, "--input", png, "--out", str(tmp_path / "q.csv")])


def test_a_resnet_with_cpu_gemm_convolutions_exports_for_any_batch(folder_run, tmp_path):
    """ResNet-18's CPU convolutions chunk the batch by its size; the export uses lax.conv
    instead (same parameters), so a symbolic batch lowers and gives the same probabilities."""
    import jax

    from medjax.models import build_model

    run = load_run(folder_run[0])
    config = run.config.copy_and_resolve_references()
    config.model.name, config.model.conv = "resnet18", "gemm"
    model = build_model(config.model, run.num_classes, run.image_shape[0])
    x = np.zeros((1, *run.image_shape), np.float32)
    variables = model.init(jax.random.key(0), x, train=False)
    resnet = dataclasses.replace(run, config=config, model=model, variables=variables)
    export_run(resnet, str(tmp_path / "m"), platforms=("cpu",))
    exported = load(str(tmp_path / "m"))
    for n in (3, 11):
        images = np.random.default_rng(n).normal(size=(n, *run.image_shape)).astype(np.float32)
        np.testing.assert_allclose(exported(images), resnet.predict(images), atol=1e-5)
