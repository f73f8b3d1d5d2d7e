"""The one reader and writer of labels files (``path,label``): no TensorFlow."""

from __future__ import annotations

import pytest

from batchdigits.errors import InputNotFoundError, LabelError
from batchdigits.evaluation.labels import (
    digit_labels,
    folder_labels,
    read_labels,
    write_labels,
)
from batchdigits.imaging.files import Listing


def test_written_labels_read_back_as_they_were(tmp_path):
    labels = {
        "007.png": "7",
        'a, b/"quoted" name.png': "x",
        "sub/ünïcode.png": "0",
        "line\nbreak.png": "3",
    }
    path = tmp_path / "labels.csv"
    write_labels(path, labels)
    assert path.read_text(encoding="utf-8").splitlines()[0] == "path,label"
    assert read_labels(path) == labels
    assert digit_labels(read_labels(path)) == {
        "007.png": 7,
        "sub/ünïcode.png": 0,
        "line\nbreak.png": 3,
    }


def test_extra_columns_spaces_and_case_are_accepted(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("path,label,note\na.png, 4 ,x\nb.png,X,\n", encoding="utf-8")
    assert read_labels(path) == {"a.png": "4", "b.png": "x"}


@pytest.mark.parametrize(
    "text, error, match",
    [
        ("path,digit\na.png,1\n", LabelError, "columns path,label"),
        ("path,label\na.png,1\nb.png,12\n", LabelError, r"line 3: label '12' is not a digit 0-9"),
        ("path,label\na.png,\n", LabelError, "line 2"),
        ("", LabelError, "not a readable CSV"),
        (b"path,label\n\xff\xfe.png,1\n", LabelError, "not a readable CSV"),
    ],
)
def test_bad_labels_files_say_what_and_where(tmp_path, text, error, match):
    path = tmp_path / "l.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(error, match=match):
        read_labels(path)


def test_a_missing_labels_file_is_no_input(tmp_path):
    with pytest.raises(InputNotFoundError, match="file not found"):
        read_labels(tmp_path / "missing.csv")


def test_folder_labels_come_from_folders_named_0_to_9():
    listing = Listing("root", ["3/a.png", "x/b.png", "12/c.png", "d.png", "7/sub/e.png"])
    assert folder_labels(listing) == {"3/a.png": "3", "7/sub/e.png": "7"}
