"""Reading a CSV manifest's rows: UTF-8 only, bounded in size, with spreadsheet row numbers.

Rows are numbered as a spreadsheet shows them: the header is row 1, and a blank line is a row
too, so an error's "row 7" is row 7 in Excel or LibreOffice. A UTF-8 byte-order mark (Excel's
"CSV UTF-8") is accepted; any other encoding is refused with the byte and line where decoding
failed, since guessing (Latin-1 decodes anything) would silently change labels and paths.
"""

import csv
import dataclasses
import io
import os

from medjax.errors import DataError

# ~2-3 million rows of paths: more than any public medical dataset, far less than the memory
# its rows take as Python objects (about 10x the text).
MAX_BYTES = 256 << 20
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclasses.dataclass
class Table:
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (spreadsheet row number, cells), blank rows left out


def _text(path: str) -> str:
    size = os.path.getsize(path)
    if size > MAX_BYTES:
        raise DataError(
            f"{path}: the manifest is {size / 2**20:,.0f} MiB, more than the {MAX_BYTES >> 20} "
            f"MiB medjax reads (millions of rows); is config.data.path the manifest? Split a "
            f"larger dataset into several manifests"
        )
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(UTF16_BOMS) or b"\0" in raw:
        line = raw[: raw.find(b"\0")].count(b"\n") + 1 if b"\0" in raw else 1
        raise DataError(
            f"{path}: UTF-16 text or not a text file (NUL bytes or a UTF-16 byte-order mark at "
            f"line {line}); save the manifest as 'CSV UTF-8'"
        )
    try:
        return raw.decode("utf-8-sig")  # -sig: Excel's byte-order mark
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not UTF-8 text: byte 0x{raw[e.start]:02x} at offset {e.start} (line "
            f"{line}) is {e.reason}; the file is probably Latin-1 or Windows-1252 (Excel's plain "
            f"'CSV'): save it as 'CSV UTF-8', or convert it (iconv -f cp1252 -t utf-8)"
        ) from None


def read_table(path: str) -> Table:
    """The header (the first non-blank row) and the non-blank rows after it."""
    reader = csv.reader(io.StringIO(_text(path), newline=""))
    rows, number = [], 0
    try:
        for number, cells in enumerate(reader, start=1):
            if any(c.strip() for c in cells):
                rows.append((number, cells))
    except csv.Error as e:
        raise DataError(
            f"{path} row {number + 1} (line {reader.line_num}): not valid CSV ({e}); check the "
            f"quoting of that row"
        ) from None
    if not rows:
        raise DataError(f"{path}: the manifest is empty; it needs a header row and file rows")
    (_, header), rows = rows[0], rows[1:]
    return Table([h.strip() for h in header], rows)
