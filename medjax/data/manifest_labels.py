"""The class list of a CSV manifest, from its label column.

- Numbers are class indices: "0", "01" and "1.0" (as pandas writes an integer column that had a
  missing value) are classes 0, 1 and 1, named "0", "1", ...; the classes are 0..the largest
  label of the reference rows, and each must occur there. A number that is not a whole one, a
  negative one, or one above that range is an error naming its row.
- Anything else is a class name; the classes are the sorted distinct names of the reference
  rows. Names that differ only in case or Unicode form ("Benign", "benign") are an error listing
  them: merging them silently could hide a labelling mistake, and keeping them apart would
  split one class in two.
The reference rows are the train rows when the manifest has a split column, else all rows.
"""

import collections
import itertools
import math
import unicodedata

from medjax.errors import DataError


def _as_number(label: str) -> int | float | None:
    try:
        return int(label)
    except ValueError:
        pass
    try:
        return float(label)
    except ValueError:
        return None


def _indices(labels: list[str], rows: list[int], path: str) -> list[int] | None:
    """Class indices when every label is a number, else None."""
    numbers = [_as_number(x) for x in labels]
    if any(n is None for n in numbers):
        return None
    for n, label, row in zip(numbers, labels, rows, strict=True):
        if not math.isfinite(n) or n != int(n) or n < 0:
            raise DataError(
                f"{path} row {row}: label {label!r} is not a class index (numeric labels are whole numbers "
                f"0, 1, 2, ...); fix it, or write class names in the column"
            )
    return [int(n) for n in numbers]


def _check_numbered(numbers, rows, reference, path: str) -> int:
    """The class count; every reference class present, every other label within range."""
    used = collections.Counter(numbers[i] for i in reference)
    count = max(used) + 1
    source = "the train rows" if len(reference) < len(numbers) else "the rows"
    for n, row in zip(numbers, rows, strict=True):
        if n >= count:
            raise DataError(
                f"{path} row {row}: label {n} is outside the valid range 0..{count - 1} (numeric labels are "
                f"class indices, and {source} use 0..{count - 1}); fix the label, or add training "
                f"rows of class {n}"
            )
    # lazily: one corrupt label (2**32) must not enumerate billions of classes
    missing = list(itertools.islice((c for c in range(count) if c not in used), 11))
    if missing:
        first = rows[next(i for i in reference if numbers[i] == count - 1)]
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise DataError(
            f"{path}: numeric labels are class indices 0..{count - 1}, but {source} have no "
            f"class {shown} (the largest label, {count - 1}, is first at row {first}); renumber "
            f"the labels 0..{len(used) - 1}, or write class names"
        )
    return count


def _check_case(labels: list[str], rows: list[int], path: str) -> None:
    """No two distinct names that differ only in case or Unicode normalisation."""
    forms = collections.defaultdict(dict)  # folded form -> {spelling: [rows]}
    for label, row in zip(labels, rows, strict=True):
        key = unicodedata.normalize("NFKC", label).casefold()
        forms[key].setdefault(label, []).append(row)
    clashes = [spellings for spellings in forms.values() if len(spellings) > 1]
    if clashes:
        listed = "; ".join(
            " and ".join(
                f"{name!r} ({len(rows)} row{'s' if len(rows) > 1 else ''}, first: row {rows[0]})"
                for name, rows in spellings.items()
            )
            for spellings in clashes
        )
        raise DataError(
            f"{path}: labels that differ only in case or Unicode form would be separate "
            f"classes: {listed}; write each class the same way in every row"
        )


def class_list(labels: list[str], rows: list[int], reference, path: str):
    """(class index per row, class names); `rows` are the spreadsheet row numbers."""
    numbers = _indices(labels, rows, path)
    if numbers is not None:
        count = _check_numbered(numbers, rows, reference, path)
        return numbers, [str(i) for i in range(count)]
    _check_case(labels, rows, path)
    names = sorted({labels[i] for i in reference})
    index = {name: i for i, name in enumerate(names)}
    for label, row in zip(labels, rows, strict=True):
        if label not in index:
            raise DataError(
                f"{path} row {row}: label {label!r} is not in the class list {names} (from the train rows "
                f"of {path}); fix the label, or add training rows for it"
            )
    return [index[x] for x in labels], names
