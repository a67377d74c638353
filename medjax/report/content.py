"""What a run's report says, read from its workdir, as sections of plain blocks (text, code,
tables, images) that medjax.report.html and medjax.report.markdown render.

Every file but results.json is optional: a run from an older medjax, or one whose plots or
explanations were never made, still gets a report, with a note where a part is missing.
"""

import dataclasses
import glob
import json
import os

from medjax.configs import flatten
from medjax.errors import WorkdirError
from medjax.report import curves
from medjax.report.experiment import EXPERIMENT

RESULTS_SHOWN = ("selected_step", "selected_by", "val", "test", "warnings")
SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Text:
    text: str


@dataclasses.dataclass
class Code:
    text: str


@dataclasses.dataclass
class Table:
    headers: list
    rows: list
    caption: str = ""


@dataclasses.dataclass
class Image:
    name: str  # a file name for the Markdown copy when there is no `path`
    data: bytes  # PNG
    path: str | None = None  # the PNG in the workdir, referenced by the Markdown report


@dataclasses.dataclass
class Section:
    title: str
    blocks: list


def _read(workdir: str, name: str, default=None):
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
        return default
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise WorkdirError(
            f"{path} is not readable JSON ({e}); run the same training command again to "
            f"rewrite it, or remove it"
        ) from None


def _rows(path: str) -> list[dict]:
    from medjax.train.workdir import read_jsonl  # the same torn-line rule as training

    return read_jsonl(path)


def _image(path: str) -> Image:
    with open(path, "rb") as f:
        return Image(os.path.basename(path), f.read(), path)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value) if len(value) <= 12 else f"{len(value)} values"
    return str(value)


def check_finished(workdir: str) -> None:
    if not os.path.isdir(workdir):
        raise WorkdirError(
            f"--workdir {workdir} does not exist; pass the workdir of a finished run"
        )
    if not os.path.exists(os.path.join(workdir, "results.json")):
        raise WorkdirError(
            f"{workdir} holds no finished run (no results.json); run its training command "
            f"again to finish it (it resumes from its last checkpoint), or pass the workdir of "
            f"a finished run"
        )


def sections(workdir: str) -> list[Section]:
    check_finished(workdir)
    results = _read(workdir, "results.json")
    return [
        question(workdir),
        data(_read(workdir, "data_summary.json")),
        config(_read(workdir, "config.json")),
        learning_curves(workdir),
        metrics(results),
        plots(workdir),
        gallery(workdir),
        run_card(_read(workdir, "run_card.json")),
        warnings(results),
    ]


def question(workdir: str) -> Section:
    record = _read(workdir, EXPERIMENT)
    if record is None:
        return Section(
            "Question",
            [Text(f"No {EXPERIMENT}: this run predates medjax recording its experiment file.")],
        )
    doc = record.get("docstring") or "(the experiment file has no docstring)"
    headline, _, rest = doc.partition("\n")
    blocks = [Text(headline)] + ([Code(rest.strip("\n"))] if rest.strip() else [])
    spec = record.get("file", "") + (f":{record['arg']}" if record.get("arg") else "")
    overrides = " ".join(f"--config.{k}={v}" for k, v in record.get("overrides", []))
    blocks.append(Code(f"--config {spec} {overrides}".strip()))
    return Section("Question", blocks)


def data(summary: dict | None) -> Section:
    if not summary:
        return Section("Data", [Text("No data_summary.json in this workdir.")])
    names = summary.get("class_names", [])
    rows = []
    for split in SPLITS:
        part = summary.get(split)
        if part:
            counts = part.get("class_counts", {})
            rows.append([split, *(counts.get(n, 0) for n in names), part.get("images", "")])
    blocks = [Text(f"{summary.get('origin', '')}; splits: {summary.get('split_method', '')}")]
    blocks.append(Table(["split", *names, "images"], rows, "images per class and split"))
    extra = {k: v for k, v in summary.items() if k not in (*SPLITS, "class_names", "origin")}
    extra.pop("split_method", None)
    if extra:
        blocks.append(Table(["key", "value"], [[k, _fmt(v)] for k, v in flatten(extra).items()]))
    return Section("Data", blocks)


def config(plain: dict | None) -> Section:
    if not plain:
        return Section("Config", [Text("No config.json in this workdir.")])
    return Section(
        "Config", [Table(["key", "value"], [[k, _fmt(v)] for k, v in flatten(plain).items()])]
    )


def learning_curves(workdir: str) -> Section:
    drawn = os.path.join(workdir, "plots", "learning_curves.png")
    if os.path.exists(drawn):
        return Section("Learning curves", [_image(drawn)])
    rows = _rows(os.path.join(workdir, "metrics.jsonl"))
    if not rows:
        return Section("Learning curves", [Text("No metrics.jsonl rows to draw.")])
    return Section("Learning curves", [Image("learning_curves.png", curves.draw(rows))])


def _metric_names(parts: list[dict]) -> list[str]:
    names = []
    for part in parts:
        names += [k for k, v in part.items() if isinstance(v, int | float) and k not in names]
    return names


def metric_table(parts: dict[str, dict], caption: str = "") -> Table:
    """Metrics (rows) by split or setting (columns), each with its 95% interval if given."""
    names = _metric_names(list(parts.values()))
    rows = []
    for name in names:
        row = [name]
        for part in parts.values():
            ci = (part.get("ci95") or {}).get(name)
            value = part.get(name)
            cell = "" if value is None else _fmt(value)
            if isinstance(ci, list | tuple) and len(ci) == 2:
                cell += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"
            row.append(cell)
        rows.append(row)
    return Table(["metric", *parts], rows, caption)


def _is_metrics(value) -> bool:
    return isinstance(value, dict) and any(isinstance(v, int | float) for v in value.values())


def metrics(results: dict) -> Section:
    splits = {s: results[s] for s in ("val", "test") if isinstance(results.get(s), dict)}
    blocks = [
        Text(
            f"Checkpoint of step {results.get('selected_step')}, chosen by "
            f"{results.get('selected_by')}; 95% bootstrap intervals in brackets."
        ),
        metric_table(splits, "at the default decision rule (argmax)"),
    ]
    for split, part in splits.items():
        cm = part.get("confusion_matrix")
        if cm:
            rows = [[f"true {i}", *row] for i, row in enumerate(cm)]
            blocks.append(
                Table(["", *(f"predicted {j}" for j in range(len(cm)))], rows, f"{split} confusion")
            )
    for split, part in splits.items():  # nested entries of a split (its calibration, ...)
        for key, value in part.items():
            if isinstance(value, dict) and key != "ci95":
                blocks += extra_result(f"{split} {key}", value)
    for key, value in results.items():  # operating points, calibration, ...: whatever exists
        if key not in RESULTS_SHOWN:
            blocks += extra_result(key, value)
    return Section("Test metrics", blocks)


def extra_result(key: str, value) -> list:
    """A results.json entry this reader has no special form for, shown as tables."""
    if isinstance(value, dict) and value and all(_is_metrics(v) for v in value.values()):
        return [metric_table(value, key)]
    if _is_metrics(value) and "ci95" in value:
        return [metric_table({key: value}, key)]
    if _is_metrics(value) or isinstance(value, dict):
        nested = {k: v for k, v in value.items() if _is_metrics(v)}
        flat = {k: v for k, v in value.items() if k not in nested}
        blocks = []
        if flat:
            rows = [[k, _fmt(v)] for k, v in flatten(flat).items()]
            blocks.append(Table(["key", "value"], rows, key))
        if nested:
            blocks.append(metric_table(nested, key))
        return blocks
    return [Table(["key", "value"], [[key, _fmt(value)]])]


def plots(workdir: str) -> Section:
    files = [
        p
        for p in sorted(glob.glob(os.path.join(workdir, "plots", "*.png")))
        if os.path.basename(p) != "learning_curves.png"
    ]
    if not files:
        return Section("Plots", [Text("No plots in this workdir's plots/ folder.")])
    return Section("Plots", [_image(p) for p in files])


def gallery(workdir: str) -> Section:
    found = glob.glob(os.path.join(workdir, "explain", "*", "gallery.png"))
    if not found:
        command = f"python -m medjax.explain --workdir {workdir}"
        return Section(
            "Explanations (CAM gallery)",
            [Text("No explanation gallery yet; make one with:"), Code(command)],
        )
    newest = max(found, key=os.path.getmtime)
    return Section(
        "Explanations (CAM gallery)", [Text(os.path.relpath(newest, workdir)), _image(newest)]
    )


def run_card(card: dict | None) -> Section:
    if not card:
        return Section("Run card", [Text("No run_card.json in this workdir.")])
    card = {k: v for k, v in card.items() if k != "data"}  # the Data section shows it
    rows = [[k, _fmt(v)] for k, v in flatten(card).items()]
    return Section("Run card", [Table(["key", "value"], rows)])


def warnings(results: dict) -> Section:
    found = results.get("warnings") or []
    if not found:
        return Section("Warnings", [Text("None.")])
    return Section("Warnings", [Text(w) for w in found])
