"""What question a run answers: its experiment file, that file's docstring and the command-line
overrides, recorded in WORKDIR/experiment.json when the run claims its workdir.

config.json holds the resolved values only; the docstring (the question, the data, the
command, the measured result) is what `python -m medjax.report` opens a report with. It is
copied at the start of the run, so a later edit of the file does not rewrite an old run's
question.
"""

import ast
import os

EXPERIMENT = "experiment.json"


def describe(spec: str, overrides=()) -> dict:
    """The record of `experiment.py[:arg]` run with `overrides` ((key, text) pairs)."""
    path, sep, arg = spec.partition(".py:")
    path = path + ".py" if sep else spec
    try:
        with open(path) as f:
            docstring = ast.get_docstring(ast.parse(f.read())) or ""
    except (OSError, SyntaxError, ValueError):
        docstring = ""  # the config loader has read this file already; a record never fails
    return {
        "file": os.path.abspath(path),
        "arg": arg if sep else None,
        "docstring": docstring,
        "overrides": [[key, text] for key, text in overrides],
    }
