"""report.md: the same report as text, images referenced by paths relative to the report (the
workdir's own PNGs where they exist, drawn ones written beside the report)."""

import os

from medjax.report.content import Code, Image, Section, Table, Text

FIGURES = "report_files"


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _block(block, out: str, written: dict) -> str:
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Code):
        return f"```\n{block.text}\n```"
    if isinstance(block, Table):
        lines = [f"*{block.caption}*", ""] if block.caption else []
        lines.append("| " + " | ".join(_cell(h) for h in block.headers) + " |")
        lines.append("|" + "---|" * len(block.headers))
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, Image):
        path = block.path
        if path is None:  # drawn for the report: written beside it by `write`
            path = os.path.join(out, FIGURES, block.name)
            written[path] = block.data
        return f"![{block.name}]({os.path.relpath(path, out).replace(os.sep, '/')})"
    raise TypeError(f"no Markdown form for {type(block).__name__}")


def render(title: str, sections: list[Section], out: str) -> tuple[str, dict]:
    """(the Markdown text, {path: PNG bytes} of the figures it references that must be
    written beside it)."""
    written, parts = {}, [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        parts += [_block(b, out, written) for b in section.blocks]
    return "\n\n".join(parts) + "\n", written
