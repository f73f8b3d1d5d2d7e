"""Finding image files: extensions, hidden entries, recursion, order, exclusions, loops."""

from __future__ import annotations

import os

import pytest

from batchdigits.errors import InputNotFoundError
from batchdigits.imaging.files import find_images


def touch(root, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_extensions_case_insensitive_sorted_and_hidden_skipped(tmp_path):
    touch(
        tmp_path,
        "b.PNG",
        "a.jpg",
        "c.JPEG",
        "d.bmp",
        "e.gif",
        "f.tif",
        "g.TIFF",
        "h.webp",
        "notes.txt",
        "README",
        ".hidden.png",
        ".cache/x.png",
        "sub/z.png",
        "sub/deeper/y.gif",
    )
    listing = find_images(tmp_path)
    assert listing.paths == [
        "a.jpg",
        "b.PNG",
        "c.JPEG",
        "d.bmp",
        "e.gif",
        "f.tif",
        "g.TIFF",
        "h.webp",
        "sub/deeper/y.gif",
        "sub/z.png",
    ]
    assert listing.skipped == 3  # notes.txt, README, .hidden.png
    assert listing.full_path("sub/deeper/y.gif") == os.path.join(
        str(tmp_path), "sub", "deeper", "y.gif"
    )


def test_no_recursion(tmp_path):
    touch(tmp_path, "a.png", "sub/b.png")
    assert find_images(tmp_path, recursive=False).paths == ["a.png"]


def test_exclude_output_and_symlink_loop(tmp_path):
    touch(tmp_path, "a.png", "out.png", "sub/b.png")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")  # a loop back to the root
    listing = find_images(tmp_path, exclude=frozenset({str(tmp_path / "out.png")}))
    assert listing.paths == ["a.png", "sub/b.png"]


def test_missing_or_not_a_folder(tmp_path):
    with pytest.raises(InputNotFoundError, match="does not exist"):
        find_images(tmp_path / "nope")
    touch(tmp_path, "f.png")
    with pytest.raises(InputNotFoundError, match="is not a folder"):
        find_images(tmp_path / "f.png")
