"""report.html: one self-contained file, images as base64 data URIs, its style inline, so it
can be mailed or archived alone and opened anywhere without a network."""

import base64
import html

from medjax.report.content import Code, Image, Section, Table, Text

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
caption { caption-side: top; text-align: left; font-style: italic; }
pre { background: #f4f4f4; padding: 0.6em; white-space: pre-wrap; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""


def _block(block) -> str:
    e = html.escape
    if isinstance(block, Text):
        return "".join(f"<p>{e(p)}</p>" for p in block.text.split("\n\n"))
    if isinstance(block, Code):
        return f"<pre>{e(block.text)}</pre>"
    if isinstance(block, Table):
        caption = f"<caption>{e(block.caption)}</caption>" if block.caption else ""
        head = "".join(f"<th>{e(str(h))}</th>" for h in block.headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in block.rows
        )
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Image):
        data = base64.b64encode(block.data).decode("ascii")
        return f'<img alt="{e(block.name)}" src="data:image/png;base64,{data}">'
    raise TypeError(f"no HTML form for {type(block).__name__}")


def render(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += [_block(b) for b in section.blocks]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
