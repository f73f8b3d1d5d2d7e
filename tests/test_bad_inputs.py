"""Every file a user really has: each format gives the digit, each bad file gives exactly
one row with a clear error, the run goes on, and the CSV stays valid."""

from __future__ import annotations

import csv
import io
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pandas as pd
import pytest
from helpers import EXE
from PIL import Image
from typer.testing import CliRunner

from batchdigits.cli import app
from batchdigits.model.store import read_card

BAD_NAME = os.fsdecode(b"bad\xff\xfebytes.png")  # not valid UTF-8

GOOD = [
    "ok.png",
    "alpha.png",
    "anim.gif",
    "cmyk.jpg",
    "one_bit.png",
    "palette.png",
    "sixteen.png",
    "t.tiff",
    "multi.tiff",
    "w.webp",
    "rotated.jpg",
    "png_named.jpg",
    "gray.bmp",
    'with space, comma "quote".png',
    "new\nline.png",
    "ünïcødé.png",
    BAD_NAME,
    "tiny8.png",
    "tiny16.png",
    "large.jpg",
]
ERRORS = {
    "zero.png": "empty file (0 bytes)",
    "trunc.png": "cannot decode image (truncated or corrupt)",
    "trunc.jpg": "cannot decode image (truncated or corrupt)",
    "text.png": "cannot decode image (not an image file)",
    "bomb.png": "image too large (3,600,000,000 pixels; the limit is 50,000,000",
    "broken_link.png": "broken symbolic link",
    "loop1.png": "symbolic link loop",
    "loop2.png": "symbolic link loop",
    "folder.png": "is a folder, not a file",
    "blank.png": "no digit found",
}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def bomb_png(width: int, height: int) -> bytes:
    """A few hundred bytes that declare a width x height 8-bit gray PNG."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * 4)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


@pytest.fixture
def corpus(tmp_path, mnist):
    root = tmp_path / "corpus"
    root.mkdir()
    digit = mnist.x_test[0]  # a 7
    img = Image.fromarray(digit)
    paper = Image.fromarray(255 - digit).resize((112, 112), Image.BICUBIC)
    img.save(root / "ok.png")
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = digit  # black strokes, transparent background
    Image.fromarray(rgba, "RGBA").save(root / "alpha.png")
    frames = [img.convert("P"), Image.fromarray(mnist.x_test[1]).convert("P")]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    paper.convert("CMYK").save(root / "cmyk.jpg", quality=95)
    img.convert("1").save(root / "one_bit.png")
    img.convert("P").save(root / "palette.png")
    Image.fromarray(digit.astype(np.uint16) * 257).save(root / "sixteen.png")
    img.save(root / "t.tiff")
    img.save(root / "multi.tiff", save_all=True, append_images=[Image.fromarray(mnist.x_test[1])])
    img.save(root / "w.webp", lossless=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    paper.rotate(90, expand=True).save(root / "rotated.jpg", exif=exif, quality=95)
    img.save(root / "png_named.jpg", format="PNG")  # wrong extension: content is sniffed
    paper.save(root / "gray.bmp")
    for name in ('with space, comma "quote".png', "new\nline.png", "ünïcødé.png", BAD_NAME):
        img.save(root / name)
    img.resize((8, 8), Image.BILINEAR).save(root / "tiny8.png")
    img.resize((16, 16), Image.BILINEAR).save(root / "tiny16.png")
    big = Image.new("L", (4000, 4000), 235)
    big.paste(Image.fromarray(255 - digit).resize((1200, 1200), Image.BICUBIC), (1900, 600))
    big.save(root / "large.jpg", quality=85)

    (root / "zero.png").write_bytes(b"")
    buf = io.BytesIO()
    paper.resize((200, 200)).save(buf, "PNG")
    (root / "trunc.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    paper.resize((200, 200)).save(buf, "JPEG")
    (root / "trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "text.png").write_text("hello, not an image")
    (root / "bomb.png").write_bytes(bomb_png(60000, 60000))
    os.symlink("missing.png", root / "broken_link.png")
    os.symlink("loop2.png", root / "loop1.png")
    os.symlink("loop1.png", root / "loop2.png")
    (root / "folder.png").mkdir()
    Image.new("L", (50, 50), 200).save(root / "blank.png")
    return root


def read_rows(path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def test_every_format_and_every_bad_file(corpus, tmp_path):
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["predict", str(corpus), "-o", str(out)])
    assert result.exit_code == 3, result.output
    assert "1 file names are not valid UTF-8 (bad\\xff\\xfebytes.png)" in result.stderr

    rows = read_rows(out)
    assert rows[0] == ["path", "prediction", "confidence", "needs_review", "error"]
    by_path = {r[0]: r for r in rows[1:]}
    assert len(rows) - 1 == len(by_path) == len(GOOD) + len(ERRORS)  # one row per file

    escaped = "bad\\xff\\xfebytes.png"
    threshold = read_card()["review_threshold"]  # the shipped model's
    for name in GOOD:
        key = escaped if name == BAD_NAME else name
        path, prediction, confidence, review, error = by_path[key]
        assert error == "" and prediction == "7", (name, by_path[key])
        assert review == ("true" if float(confidence) < threshold else "false"), name
        assert float(confidence) > 0.5, name
    for name, message in ERRORS.items():
        path, prediction, confidence, review, error = by_path[name]
        assert prediction == "" and confidence == "" and review == "true", name
        assert error.startswith(message), (name, error)

    # pandas reads it back with one row per file; the odd names survive.
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(df) == len(GOOD) + len(ERRORS)
    assert {"new\nline.png", 'with space, comma "quote".png', "ünïcødé.png"} <= set(df["path"])
    # The non-UTF-8 name is recoverable: \xNN stands for the byte NN.
    raw = escaped.encode("ascii").decode("unicode_escape").encode("latin-1")
    assert (corpus / os.fsdecode(raw)).exists()


def test_max_pixels_option(corpus, tmp_path):
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        app, ["predict", str(corpus), "-o", str(out), "--max-pixels", "1000000"]
    )
    assert result.exit_code == 3
    rows = {r[0]: r for r in read_rows(out)[1:]}
    assert rows["large.jpg"][4] == (
        "image too large (4000x4000 = 16,000,000 pixels; the limit is 1,000,000, see --max-pixels)"
    )
    assert rows["ok.png"][1] == "7"
    result = CliRunner().invoke(app, ["predict", str(corpus), "--max-pixels", "0"])
    assert result.exit_code == 2


@pytest.mark.slow
def test_decompression_bomb_does_not_allocate(tmp_path):
    """A folder of bombs: the whole predict process stays far below the bombs' size."""
    root = tmp_path / "bombs"
    root.mkdir()
    for i, (w, h) in enumerate([(60000, 60000), (100000, 30000), (40000, 40000)]):
        (root / f"b{i}.png").write_bytes(bomb_png(w, h))
    code = (
        "import resource, sys; from batchdigits.cli import app; sys.argv = "
        f"['batchdigits', 'predict', {str(root)!r}, '-o', {str(tmp_path / 'o.csv')!r}]\n"
        "try:\n    app()\nexcept SystemExit as e:\n    code = e.code\n"
        "print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    exit_code, max_rss_kb = done.stdout.split()
    assert exit_code == "3", done.stderr
    assert int(max_rss_kb) < 1_500_000, f"peak RSS {int(max_rss_kb) // 1024} MiB"
    errors = [r[4] for r in read_rows(tmp_path / "o.csv")[1:]]
    assert len(errors) == 3 and all(e.startswith("image too large") for e in errors)


@pytest.mark.slow
def test_permission_denied(tmp_path, mnist):
    """A file the process may not read gets its row; as root, run without the
    capabilities that let root read anything."""
    root = tmp_path / "perm"
    root.mkdir()
    Image.fromarray(mnist.x_test[0]).save(root / "ok.png")
    Image.fromarray(mnist.x_test[0]).save(root / "secret.png")
    os.chmod(root / "secret.png", 0)
    out = tmp_path / "o.csv"
    exe = EXE
    command = [exe, "predict", str(root), "-o", str(out)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "running as root: setpriv (util-linux) is needed to drop CAP_DAC_*"
        caps = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    rows = {r[0]: r for r in read_rows(out)[1:]}
    assert rows["secret.png"][1:] == ["", "", "true", "permission denied"]
    assert rows["ok.png"][1] == "7"


@pytest.mark.slow
def test_hostile_corpus_leaves_stderr_clean(corpus, tmp_path):
    """As a real process (native libraries write to fd 2 directly, which a test runner's
    capture would not see): no libjpeg, absl or TensorFlow line, only batchdigits' own."""
    import re
    import subprocess

    exe = EXE
    result = subprocess.run(
        [exe, "predict", str(corpus), "-o", str(tmp_path / "p.csv")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 3
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("warning: 1 file names are not valid UTF-8 (bad\\xff")
    assert re.match(r"\d+ image files: \d+ predicted, \d+ errors", lines[1]), lines[1]
