"""CSV manifests that used to load wrongly or fail with a traceback: each gives one DataError
naming the row as a spreadsheet numbers it, the problem and the fix."""

import tracemalloc

import numpy as np
import pytest

from medjax.data import csv_rows
from medjax.errors import DataError

from .test_sources_files import grey, load, save


def manifest(root, text, encoding="utf-8"):
    for i in range(4):
        save(root / f"{i}.png", grey(i))
    path = root / "m.csv"
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_labels_differing_only_in_case_are_refused_listing_the_pairs(tmp_path):
    text = "path,label\n0.png,Benign\n1.png,benign\n2.png,Benign\n3.png,malignant\n"
    with pytest.raises(
        DataError,
        match=r"differ only in case .*: 'Benign' \(2 rows, first: row 2\) and 'benign' \(1 row, "
        r"first: row 3\); write each class the same way",
    ):
        load("csv", manifest(tmp_path, text))


def test_an_integer_label_out_of_range_names_row_value_and_range(tmp_path):
    text = "path,label,split\n0.png,0,train\n1.png,1,train\n2.png,7,test\n"
    with pytest.raises(
        DataError, match=r"m.csv row 4: label 7 is outside the valid range 0..1 \(numeric"
    ):
        load("csv", manifest(tmp_path, text))


def test_integer_labels_leaving_a_gap_name_the_largest_label_and_its_row(tmp_path):
    text = "path,label\n0.png,0\n1.png,0\n2.png,5\n"
    with pytest.raises(
        DataError, match=r"no class 1, 2, 3, 4 \(the largest label, 5, is first at row 4\)"
    ):
        load("csv", manifest(tmp_path, text))


def test_a_huge_integer_label_is_refused_without_enumerating_its_classes(tmp_path):
    text = "path,label\n0.png,0\n1.png,1\n2.png,4294967296\n"
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"no class 2, 3, .* \(the largest label, 4294967296"):
            load("csv", manifest(tmp_path, text))
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 16 << 20


def test_float_labels_are_class_indices_and_fractions_are_refused(tmp_path):
    text = "path,label\n0.png,1.0\n1.png,0.0\n2.png,2\n3.png,3.0\n"
    ds = load("csv", manifest(tmp_path, text))
    assert ds.class_names == ["0", "1", "2", "3"]  # not the names "0.0", "1.0", "2", "3.0"
    np.testing.assert_array_equal(ds.splits["all"].labels, [1, 0, 2, 3])
    text = "path,label\n0.png,1.0\n1.png,0.5\n"
    with pytest.raises(DataError, match=r"row 3: label '0.5' is not a class index"):
        load("csv", manifest(tmp_path, text))


def test_a_latin_1_manifest_names_the_byte_line_and_fix(tmp_path):
    path = manifest(tmp_path, "path,label\n0.png,bénin\n1.png,malin\n", "latin-1")
    with pytest.raises(
        DataError,
        match=r"not UTF-8 text: byte 0xe9 at offset 18 \(line 2\).*save it as 'CSV UTF-8'",
    ):
        load("csv", path)


def test_a_utf16_manifest_is_refused_and_a_utf8_bom_accepted(tmp_path):
    with pytest.raises(DataError, match="UTF-16 text or not a text file"):
        load("csv", manifest(tmp_path, "path,label\n0.png,a\n1.png,b\n", "utf-16"))
    ds = load("csv", manifest(tmp_path, "path,label\n0.png,a\n1.png,b\n", "utf-8-sig"))
    assert ds.class_names == ["a", "b"]


def test_rows_are_numbered_as_a_spreadsheet_shows_them(tmp_path):
    # the quoted cell spans two lines but is one row; the blank line is a row
    text = 'path,label,note\n0.png,a,"two\nlines"\n\n1.png,b,x\nmissing.png,b,x\n'
    with pytest.raises(DataError, match=r"m.csv row 5: 'missing.png' does not exist"):
        load("csv", manifest(tmp_path, text))


def test_a_duplicated_column_name_is_refused(tmp_path):
    text = "path,label,label\n0.png,a,b\n1.png,b,a\n"
    with pytest.raises(DataError, match=r"2 columns named 'label' .*columns \[2, 3\]"):
        load("csv", manifest(tmp_path, text))


def test_an_unquoted_comma_in_a_path_is_named(tmp_path):
    text = "path,label\n0.png,a\nimg/x,y.png,b\n"
    with pytest.raises(DataError, match=r"row 3: 3 cells for the 2 columns .* must be quoted"):
        load("csv", manifest(tmp_path, text))


def test_a_cell_beyond_the_csv_field_limit_is_a_data_error(tmp_path):
    text = "path,label\n0.png,a\n1.png," + "b" * 200_000 + "\n"
    with pytest.raises(DataError, match=r"m.csv row 3 \(line 3\): not valid CSV \(field larger"):
        load("csv", manifest(tmp_path, text))


def test_a_path_naming_a_folder_says_so(tmp_path):
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match=r"row 2: 'sub' is a folder, not a file"):
        load("csv", manifest(tmp_path, "path,label\nsub,a\n1.png,b\n"))


def test_a_semicolon_separated_header_gets_a_hint(tmp_path):
    with pytest.raises(DataError, match=r"separated by ';' or tabs: save the file comma-separated"):
        load("csv", manifest(tmp_path, "path;label\n0.png;a\n1.png;b\n"))


def test_an_oversized_manifest_is_refused_before_it_is_read(tmp_path):
    path = manifest(tmp_path, "path,label\n0.png,a\n")
    with open(path, "r+b") as f:
        f.truncate(csv_rows.MAX_BYTES + 1)  # sparse: no disk space used
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"the manifest is 256 MiB, more than the 256 MiB"):
            load("csv", path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 16 << 20
