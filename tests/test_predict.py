"""`python -m medjax.predict`: new files get exactly the probabilities the training pipeline gives
the same files (decoding, resizing, fitted preprocessing and flip TTA as in training), from
folders and .csv lists; files the model cannot take are refused by name, writing nothing."""

import csv
import dataclasses
import os
import warnings

import nibabel
import numpy as np
import pytest

from medjax.cli import main_guard
from medjax.data.files import SkippedFileWarning
from medjax.errors import DataError, WorkdirError
from medjax.inference import inputs, load_run
from medjax.predict import main, predict_files
from medjax.train.experiment import load_data, pipeline_fns


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def probs_of(rows, run):
    return np.array([[float(r[f"prob_{c}"]) for c in run.class_names] for r in rows])


def test_folder_predictions_equal_the_training_pipelines(folder_run, tmp_path):
    workdir, config, data = folder_run
    out = str(tmp_path / "preds.csv")
    main(["--workdir", workdir, "--input", os.path.join(data, "test"), "--out", out])
    run = load_run(workdir)
    test = load_data(config, pipeline_fns(config)[0]).dataset.splits["test"]
    expected = run.predict(test.images)  # the images as training decoded and preprocessed them
    rows = read_csv(out)
    calibrated = ["calibrated_prob_lesion_1", "calibrated_prob_no_lesion"]
    probs = ["prob_lesion_1", "prob_no_lesion"]
    assert list(rows[0]) == [
        "path",
        "frame",
        "predicted",
        *probs,
        *calibrated,
        "predicted_at_threshold",
    ]
    assert len(rows) == len(expected) == 24
    np.testing.assert_allclose(probs_of(rows, run), expected, atol=1e-6)
    assert [r["predicted"] for r in rows] == [run.class_names[i] for i in expected.argmax(1)]
    # the folder's files in its sorted class order, as the image_folder source lists them
    assert [os.path.basename(os.path.dirname(r["path"])) for r in rows] == [
        run.class_names[label] for label in test.labels
    ]
    plain = run.predict(test.images, flip_tta=False)
    assert np.abs(plain - expected).max() > 1e-4  # the TTA default is the run's, and matters
    main(["--workdir", workdir, "--input", os.path.join(data, "test"), "--out", out, "--no-tta"])
    np.testing.assert_allclose(probs_of(read_csv(out), run), plain, atol=1e-6)


def test_csv_input_with_relative_paths(folder_run, tmp_path):
    workdir, _, data = folder_run
    folder = os.path.join(data, "test", "no_lesion")
    names = sorted(os.listdir(folder))[:3][::-1]
    listing = os.path.join(folder, "list.csv")
    with open(listing, "w") as f:
        f.write("id,path\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    out, reference = str(tmp_path / "a.csv"), str(tmp_path / "b.csv")
    main(["--workdir", workdir, "--input", listing, "--out", out, "--batch-size", "2"])
    main(
        [
            "--workdir",
            workdir,
            "--input",
            *[os.path.join(folder, n) for n in names],
            "--out",
            reference,
        ]
    )
    rows, ref = read_csv(out), read_csv(reference)
    assert [r["path"] for r in rows] == names
    run = load_run(workdir)
    np.testing.assert_allclose(probs_of(rows, run), probs_of(ref, run), atol=1e-6)
    os.remove(listing)


def _volume(path):
    nibabel.save(nibabel.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), path)


def test_a_volume_for_a_2d_model_is_refused_by_name_and_nothing_is_written(folder_run, tmp_path):
    workdir, _, data = folder_run
    png = os.path.join(
        data, "test", "no_lesion", sorted(os.listdir(os.path.join(data, "test", "no_lesion")))[0]
    )
    volume = str(tmp_path / "scan.nii.gz")
    _volume(volume)
    out = tmp_path / "preds.csv"
    with pytest.raises(DataError, match=r"scan\.nii\.gz: a 3D volume .* takes 1-channel 2D"):
        main(["--workdir", workdir, "--input", png, volume, "--out", str(out)])
    assert os.listdir(tmp_path) == ["scan.nii.gz"]  # no CSV, no temporary file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(
            ["--workdir", workdir, "--input", png, volume, "--out", str(out), "--on-error", "skip"]
        )
    assert [r["path"] for r in read_csv(out)] == [png]
    skipped = [str(w.message) for w in caught if w.category is SkippedFileWarning]
    assert any("scan.nii.gz" in m for m in skipped) and any("skipped 1 of 2" in m for m in skipped)


def test_unfinished_workdirs_are_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(WorkdirError, match="has no finished run: results.json is missing"):
        main(["--workdir", str(tmp_path), "--input", str(tmp_path), "--out", "x.csv"])
    with pytest.raises(SystemExit) as exit_:
        main_guard(main, ["--workdir", str(tmp_path / "no"), "--input", ".", "--out", "x.csv"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err
    assert not os.path.exists("x.csv")


def test_temperature_and_operating_point_columns(folder_run, tmp_path):
    workdir, _, data = folder_run
    run = load_run(workdir)
    results = {
        **run.results,
        "calibration": {"temperature": 2.0},
        "operating_point": {"threshold": 0.3},
    }
    run = dataclasses.replace(run, results=results)
    entries = inputs.gather([os.path.join(data, "val")], "path")
    out = str(tmp_path / "p.csv")
    predict_files(run, entries, out)
    rows = read_csv(out)
    images = inputs.decode(entries, inputs.decode_config(run, "raise"), inputs.reader(run))[0]
    x = run.preprocess_images(np.stack(images.images))
    calibrated = np.array(
        [[float(r[f"calibrated_prob_{c}"]) for c in run.class_names] for r in rows]
    )
    np.testing.assert_allclose(calibrated, run.predict(x, temperature=2.0), atol=1e-6)
    positive = run.class_names[run.config.eval.positive_class]
    p = probs_of(rows, run)[:, run.config.eval.positive_class]
    assert [r["predicted_at_threshold"] == positive for r in rows] == list(p >= 0.3)


def test_cam_writes_one_overlay_per_row_named_by_its_prediction(folder_run, tmp_path):
    workdir, _, data = folder_run
    folder = os.path.join(data, "test", "lesion_1")
    out, cams = str(tmp_path / "p.csv"), tmp_path / "cam"
    main(["--workdir", workdir, "--input", folder, "--out", out, "--cam", str(cams)])
    rows = read_csv(out)
    expected = {f"{i}_{r['predicted']}.png" for i, r in enumerate(rows)}
    assert set(os.listdir(cams)) == expected and len(expected) == len(os.listdir(folder))
