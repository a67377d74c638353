"""Write a finished run's report: report.html (self-contained) and report.md.

python -m medjax.report --workdir W [--out DIR]

The question (the experiment file's docstring), the data per class and split, the config,
the learning curves, the validation and test metrics with their intervals, the plots, the
CAM gallery, the run card and the warnings, from the files the run left in W. A run without
an explanation gallery gets a Grad-CAM one of its test split first (W/explain/test; skip with
--no-explain).
"""

import argparse
import glob
import json
import os

from medjax.cli import main_guard
from medjax.errors import WorkdirError
from medjax.report import content, html, markdown


def write_report(workdir: str, out: str | None = None) -> list[str]:
    """Write report.html and report.md for the run in `workdir` into `out` (default: the
    workdir); returns their paths. Nothing is written unless the whole report was made."""
    out = out or workdir
    sections = content.sections(workdir)  # every file read before anything is written
    title = f"medjax run {os.path.basename(os.path.abspath(workdir))}"
    page = html.render(title, sections)
    text, figures = markdown.render(title, sections, out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise WorkdirError(f"--out {out} is a file, not a folder; choose another --out")
    try:
        os.makedirs(out, exist_ok=True)
        for path, data in figures.items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        paths = [os.path.join(out, "report.html"), os.path.join(out, "report.md")]
        for path, body in zip(paths, (page, text), strict=True):
            with open(path, "w", encoding="utf-8") as f:
                f.write(body)
    except OSError as e:
        raise WorkdirError(
            f"cannot write the report to {out} ({e.strerror}); pass --out with a folder you "
            f"can write to"
        ) from None
    return paths


def make_gallery(workdir: str) -> None:
    """A Grad-CAM gallery and maps of the run's test split in WORKDIR/explain/test."""
    from medjax.explain.split import explain_split
    from medjax.inference import load_run

    with open(os.path.join(workdir, "config.json")) as f:
        prior = json.load(f).get("segment", {}).get("model")
    if prior:
        print("report: no Grad-CAM gallery for a run behind a segmentation prior (see README)")
        return
    run = load_run(workdir)
    if run.multi_label:
        print("report: no Grad-CAM gallery for a multi-label run (one map per finding: see README)")
        return
    explain_split(run, "test", "gradcam", limit=0)


def main(argv):
    parser = argparse.ArgumentParser(prog="python -m medjax.report", description=__doc__)
    parser.add_argument("--workdir", required=True, help="a finished run's workdir")
    parser.add_argument("--out", help="folder for report.html and report.md (default: --workdir)")
    parser.add_argument(
        "--no-explain",
        action="store_true",
        help="do not make a Grad-CAM gallery when the run has none (the report names the command)",
    )
    args = parser.parse_args(argv)
    if not args.no_explain and not glob.glob(
        os.path.join(args.workdir, "explain", "*", "gallery.png")
    ):
        make_gallery(args.workdir)
    for path in write_report(args.workdir, args.out):
        print(path)


if __name__ == "__main__":
    main_guard(main)
