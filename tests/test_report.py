"""python -m medjax.report on a real tiny run: every section, every image a decodable PNG inside
the HTML, the Markdown's images on disk, and one clear error with nothing written for a
workdir without a finished run."""

import base64
import html.parser
import io
import json
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from medjax.cli import main_guard
from medjax.report.__main__ import main

from .conftest import QUESTION

HEADINGS = [
    "Question",
    "Data",
    "Config",
    "Learning curves",
    "Test metrics",
    "Plots",
    "Explanations (CAM gallery)",
    "Run card",
    "Warnings",
]


@pytest.fixture(scope="module")
def finished_run(phantom_run):
    """The shared tiny run, with its plots and the experiment file's question (QUESTION)."""
    assert phantom_run.config.log.plots
    return phantom_run.workdir


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings, self.images, self.links, self._in_h2, self.text = [], [], [], False, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in_h2 = tag == "h2"
        if tag == "img":
            self.images.append(attrs["src"])
        if tag in ("link", "script") or (tag == "a" and "href" in attrs):
            self.links.append(tag)

    def handle_endtag(self, tag):
        self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.headings.append(data)
        self.text.append(data)


def _parse(path) -> Page:
    page = Page()
    with open(path, encoding="utf-8") as f:
        page.feed(f.read())
    return page


def _png(size, value) -> Image.Image:
    return Image.fromarray(np.full((*size, 3), value, np.uint8))


def _decoded_sizes(page: Page) -> list[tuple]:
    sizes = []
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), src[:40]
        data = base64.b64decode(src[len(prefix) :], validate=True)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        sizes.append(Image.open(io.BytesIO(data)).size)
    return sizes


def test_report_of_a_run_with_plots_gallery_and_extra_results(finished_run, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(finished_run, workdir)
    shutil.rmtree(os.path.join(workdir, "plots"))  # the run's own: replaced by known images
    os.makedirs(os.path.join(workdir, "plots"))
    _png((30, 40), 10).save(os.path.join(workdir, "plots", "learning_curves.png"))
    _png((31, 41), 20).save(os.path.join(workdir, "plots", "roc.png"))
    for i, name in enumerate(("older", "newer")):
        os.makedirs(os.path.join(workdir, "explain", name))
        _png((32 + i, 42), 30).save(os.path.join(workdir, "explain", name, "gallery.png"))
        time.sleep(0.05)  # distinct modification times: the newest gallery is shown
    results_path = os.path.join(workdir, "results.json")
    with open(results_path) as f:
        results = json.load(f)
    results["operating_point"] = {
        "threshold": 0.31,
        "test": {"sensitivity": 0.9, "ci95": {"sensitivity": [0.8, 0.95]}},
    }
    results["calibration"] = {"ece": 0.042}
    results["warnings"] = ["the decision rule shifted"]
    with open(results_path, "w") as f:
        json.dump(results, f)
    out = str(tmp_path / "out")
    main([f"--workdir={workdir}", f"--out={out}"])

    page = _parse(os.path.join(out, "report.html"))
    assert page.headings == HEADINGS
    assert page.links == []  # self-contained: no external CSS, scripts or links
    # learning curves, roc, the newer gallery: in that order
    assert _decoded_sizes(page) == [(40, 30), (41, 31), (42, 33)]
    text = " ".join(page.text)
    assert QUESTION in text and "Data: the phantom." in text
    for needle in ("0.31", "0.9 [0.8, 0.95]", "0.042", "the decision rule shifted"):
        assert needle in text, needle
    auc, (low, high) = results["test"]["auc"], results["test"]["ci95"]["auc"]
    assert f"{auc:.4g} [{low:.4g}, {high:.4g}]" in text
    assert "model.widths" in text  # the config table

    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    summary = json.loads((tmp_path / "run" / "data_summary.json").read_text())
    for split in ("train", "val", "test"):
        counts = [summary[split]["class_counts"][n] for n in summary["class_names"]]
        row = " | ".join(str(x) for x in [split, *counts, summary[split]["images"]])
        assert f"| {row} |" in md
    assert [line[3:] for line in md.splitlines() if line.startswith("## ")] == HEADINGS
    refs = [line.split("](", 1)[1][:-1] for line in md.splitlines() if line.startswith("![")]
    assert len(refs) == 3
    for ref in refs:
        assert not os.path.isabs(ref)
        assert os.path.exists(os.path.join(out, ref)), ref


def test_report_draws_learning_curves_and_names_the_explain_command(finished_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, ignore=shutil.ignore_patterns("plots"))
    main([f"--workdir={workdir}", f"--out={tmp_path}", "--no-explain"])
    page = _parse(tmp_path / "report.html")
    assert page.headings == HEADINGS
    ((width, height),) = _decoded_sizes(page)  # drawn from metrics.jsonl with matplotlib
    assert width > height > 100
    assert f"python -m medjax.explain --workdir {workdir}" in " ".join(page.text)
    assert (tmp_path / "report_files" / "learning_curves.png").exists()
    assert not (workdir / "explain").exists()


def test_report_makes_a_gradcam_gallery_when_the_run_has_none(finished_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    main([f"--workdir={workdir}"])
    page = _parse(workdir / "report.html")
    gallery = workdir / "explain" / "test" / "gallery.png"
    with Image.open(gallery) as png:
        assert png.size in _decoded_sizes(page)
    assert str(np.load(workdir / "explain" / "test" / "maps.npz")["method"]) == "gradcam"


def test_workdir_without_a_finished_run_fails_with_one_message_and_writes_nothing(
    finished_run, tmp_path, capsys
):
    workdir = tmp_path / "unfinished"
    shutil.copytree(finished_run, workdir)
    os.remove(workdir / "results.json")
    before = sorted(os.listdir(workdir))
    with pytest.raises(SystemExit) as exit_info:
        main_guard(main, [f"--workdir={workdir}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no finished run" in err[0]
    assert sorted(os.listdir(workdir)) == before
