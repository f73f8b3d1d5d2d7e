"""Faults a scheduled job meets, with real processes and real filesystems: a full disk,
a file-size limit, files that change under a run, stdout pipes, library noise."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import save_digit
from helpers import EXE, run_peak_rss_mib  # noqa: E402

from batchdigits.errors import ExitCode


@pytest.fixture
def folder(tmp_path, mnist) -> Path:
    """2,500 digit PNGs (hard links of 1,000): with --probabilities, a CSV of ~300 KB."""
    root = tmp_path / "in"
    for i in range(1000):
        save_digit(root / f"a{i:04d}.png", mnist.x_test[i])
    for i in range(1500):
        os.link(root / f"a{i % 1000:04d}.png", root / f"b{i:04d}.png")
    return root


def run(*args: str, limit: int | None = None, **kwargs) -> subprocess.CompletedProcess:
    def set_limit():
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    kwargs.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(
        [EXE, *args],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=set_limit,
        timeout=600,
        **kwargs,
    )


def previous_run(folder: Path, out: Path, model: Path) -> tuple[bytes, bytes]:
    """A small successful incremental run: the CSV and sidecar that must survive."""
    small = folder.parent / "small"
    small.mkdir()
    shutil.copy(folder / "a0000.png", small / "a0000.png")
    result = run("predict", str(small), "-o", str(out), "--model", str(model), "--incremental")
    assert result.returncode == 0, result.stderr
    return out.read_bytes(), Path(f"{out}.state").read_bytes()


def check_kept(out: Path, kept: tuple[bytes, bytes], result, summary: Path) -> None:
    assert result.returncode == ExitCode.CANT_CREATE, result.stderr
    assert "Traceback" not in result.stderr and "bug" not in result.stderr
    assert f"cannot write {out}" in result.stderr
    assert (out.read_bytes(), Path(f"{out}.state").read_bytes()) == kept
    assert not list(out.parent.glob(".*.tmp"))  # no temporary file left
    data = json.loads(summary.read_text())
    assert data["exit_code"] == 73 and f"cannot write {out}" in data["error"]


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_disk_full_on_a_real_small_filesystem(folder, tmp_path, model_file):
    with small_tmpfs(tmp_path / "disk", "200k") as disk:
        out = disk / "p.csv"
        kept = previous_run(folder, out, model_file)
        summary = tmp_path / "summary.json"
        result = run(
            *("predict", str(folder), "-o", str(out), "--model", str(model_file)),
            *("--incremental", "--probabilities", "--summary-json", str(summary)),
        )
        check_kept(out, kept, result, summary)
        assert "No space left on device" in result.stderr and "free space" in result.stderr
        # The summary on the full disk itself: the dropped temporary file freed the space.
        result = run(
            *("predict", str(folder), "-o", str(out), "--model", str(model_file)),
            *("--probabilities", "--summary-json", str(disk / "s.json")),
        )
        assert result.returncode == ExitCode.CANT_CREATE
        assert json.loads((disk / "s.json").read_text())["exit_code"] == 73


@pytest.mark.slow
def test_file_size_limit(folder, tmp_path, model_file):
    out = tmp_path / "p.csv"
    kept = previous_run(folder, out, model_file)
    summary = tmp_path / "summary.json"
    result = run(
        *("predict", str(folder), "-o", str(out), "--model", str(model_file)),
        *("--incremental", "--probabilities", "--summary-json", str(summary)),
        limit=150_000,
    )
    check_kept(out, kept, result, summary)
    assert "File too large" in result.stderr and "ulimit -f" in result.stderr


@pytest.mark.slow
def test_report_and_model_write_failures_are_exit_73(digit_folder, tmp_path, mnist_path):
    root, labels = digit_folder
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{d}\n" for p, d in labels.items()))
    report = tmp_path / "report"
    result = run("evaluate", str(root), "--labels", str(csv), "--report", str(report), limit=20_000)
    assert result.returncode == ExitCode.CANT_CREATE, result.stderr
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr
    model = tmp_path / "m.keras"
    args = ["train", "--data", str(mnist_path), "--limit", "200", "--epochs", "1", "-o", str(model)]
    result = run(*args, limit=200_000)
    assert result.returncode == ExitCode.CANT_CREATE, result.stderr
    assert f"cannot write {model}" in result.stderr and "File too large" in result.stderr
    assert not model.exists() and not list(tmp_path.glob(".m.*"))  # never half a model


def test_files_that_change_between_listing_and_reading(tmp_path, mnist, model_file, monkeypatch):
    """A hook runs right after the listing: one file deleted, one truncated (as if still
    being written), one replaced by another digit. Each gets a precise error or its new
    content; the run completes."""
    from batchdigits.options import PredictOptions
    from batchdigits.run import local as local_engine
    from batchdigits.run.driver import predict_folder

    root = tmp_path / "in"
    for i in range(12):
        save_digit(root / f"d{i:02d}.png", mnist.x_test[i])
    replacement = save_digit(tmp_path / "new.png", mnist.x_test[20])
    listed = local_engine.find_images

    def listing_then_changes(*args, **kwargs):
        listing = listed(*args, **kwargs)
        (root / "d01.png").unlink()
        data = (root / "d02.png").read_bytes()
        (root / "d02.png").write_bytes(data[: len(data) // 2])
        os.replace(replacement, root / "d03.png")
        return listing

    monkeypatch.setattr(local_engine, "find_images", listing_then_changes)
    options = PredictOptions(model=model_file)
    summary = predict_folder(root, tmp_path / "p.csv", options)
    rows = {line.split(",")[0]: line for line in (tmp_path / "p.csv").read_text().splitlines()}
    assert summary.found == 12 and summary.errors == 2
    assert rows["d01.png"].endswith(",file not found")
    assert rows["d02.png"].endswith(",cannot decode image (truncated or corrupt)")
    monkeypatch.setattr(local_engine, "find_images", listed)
    alone = tmp_path / "alone"
    save_digit(alone / "d03.png", mnist.x_test[20])
    predict_folder(alone, tmp_path / "alone.csv", options)
    assert rows["d03.png"] == (tmp_path / "alone.csv").read_text().splitlines()[1]


def test_a_file_changed_after_its_stamp_is_predicted_again(
    tmp_path, mnist, model_file, monkeypatch
):
    """--incremental: the sidecar keeps the stamp seen before the file was read, so a file
    that changes while the run reads it is predicted again by the next run."""
    from batchdigits.options import PredictOptions
    from batchdigits.run import driver
    from batchdigits.run.driver import predict_folder

    root = tmp_path / "in"
    for i in range(6):
        save_digit(root / f"d{i}.png", mnist.x_test[i])
    out = tmp_path / "p.csv"
    options = PredictOptions(model=model_file, incremental=True)
    stamps = driver._Stamps

    class ChangedAfterStamp(stamps):
        def __init__(self, listing):
            super().__init__(listing)
            save_digit(root / "d4.png", mnist.x_test[30])  # new content, new mtime
            time_ns = time.time_ns() + 5_000_000_000
            os.utime(root / "d4.png", ns=(time_ns, time_ns))

    monkeypatch.setattr(driver, "_Stamps", ChangedAfterStamp)
    predict_folder(root, out, options)
    monkeypatch.setattr(driver, "_Stamps", stamps)
    summary = predict_folder(root, out, options)
    assert (summary.reused, summary.changed) == (5, 1)


@pytest.mark.slow
def test_csv_to_stdout(digit_folder, tmp_path, model_file):
    root, _ = digit_folder
    file_csv = tmp_path / "p.csv"
    assert (
        run("predict", str(root), "-o", str(file_csv), "--model", str(model_file)).returncode == 3
    )
    with open(tmp_path / "stdout.csv", "w") as f:
        result = run("predict", str(root), "-o", "-", "--model", str(model_file), stdout=f)
    assert result.returncode == 3 and "wrote -" in result.stderr
    assert (tmp_path / "stdout.csv").read_bytes() == file_csv.read_bytes()
    assert not list(Path.cwd().glob("-*")) and not (tmp_path / "-.lock").exists()
    result = run("predict", str(root), "-o", "-", "--incremental")
    assert result.returncode == ExitCode.USAGE and "not -o -" in result.stderr


@pytest.mark.slow
def test_stdout_into_head_and_into_a_full_pipe(folder, tmp_path, model_file):
    args = [
        EXE,
        "predict",
        str(folder),
        "-o",
        "-",
        "--model",
        str(model_file),
        "--batch-size",
        "64",
    ]
    pipeline = subprocess.run(
        f"{' '.join(args)} 2>{tmp_path / 'err'} | head -3; echo ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = pipeline.stdout.splitlines()
    assert lines[0] == "path,prediction,confidence,needs_review,error"
    assert lines[1].startswith("a0000.png,") and int(lines[3]) == ExitCode.OUTPUT_CLOSED
    err = (tmp_path / "err").read_text()
    assert "Traceback" not in err and "closed" in err
    # A reader that waits: the pipe fills, the run waits for it, nothing is lost.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(3)
    streamed = proc.stdout.read()
    assert proc.wait(600) == 0
    expected = tmp_path / "p.csv"
    run("predict", str(folder), "-o", str(expected), "--model", str(model_file))
    assert streamed == expected.read_bytes() and streamed.count(b"\n") == 2501


@pytest.mark.slow
def test_no_library_noise_on_stderr(tmp_path, mnist):
    """Truncated and garbage JPEGs and PNGs: libjpeg would print "Improper call to JPEG
    library in state 201" to stderr; only batchdigits' own summary line appears."""
    import io

    from PIL import Image

    root = tmp_path / "bad"
    root.mkdir()
    buf = io.BytesIO()
    Image.fromarray(mnist.x_test[0]).resize((300, 300)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    for n in (100, 400, 700, 1000, len(data) // 2):
        (root / f"trunc{n}.jpg").write_bytes(data[:n])
    (root / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 3)
    (root / "half.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    result = run("predict", str(root), "-o", str(tmp_path / "p.csv"))
    assert result.returncode == ExitCode.PARTIAL
    assert result.stderr.splitlines() == [
        line for line in result.stderr.splitlines() if line.startswith("7 image files:")
    ], result.stderr


@pytest.mark.slow
def test_memory_stays_flat_from_2000_to_20000_files(tmp_path, mnist, model_file):
    """The million-file run is a benchmark (tests/benchmarks/bench_predict.py --scaling);
    CI runs the same code on 20,000 files: peak RSS within 10% of a 2,000-file run."""
    source = tmp_path / "src"
    for i in range(1000):
        save_digit(source / f"{i:04d}.png", mnist.x_test[i])
    rss = {}
    for n in (2000, 20000):
        root = tmp_path / f"n{n}"
        for k in range(n):
            folder = root / f"{k // 1000:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            os.link(source / f"{k % 1000:04d}.png", folder / f"{k:05d}.png")
        out = tmp_path / f"p{n}.csv"
        rss[n] = run_peak_rss_mib(
            [EXE, "predict", str(root), "-o", str(out), "--model", str(model_file)]
        )
        lines = out.read_text().splitlines()
        assert len(lines) == n + 1 and lines[1:] == sorted(lines[1:])
    assert rss[20000] <= 1.10 * rss[2000], rss


def test_a_folder_unreadable_during_the_walk_is_counted_and_named(tmp_path, mnist, monkeypatch):
    from batchdigits.imaging import files
    from batchdigits.imaging.files import find_images

    root = tmp_path / "in"
    save_digit(root / "a.png", mnist.x_test[0])
    save_digit(root / "gone" / "b.png", mnist.x_test[1])
    save_digit(root / "ok" / "c.png", mnist.x_test[2])
    real = os.scandir

    def scandir(path):
        if str(path).endswith("gone"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(files.os, "scandir", scandir)
    listing = find_images(root)
    assert listing.paths == ["a.png", "ok/c.png"] and listing.unreadable_folders == ["gone"]


@pytest.mark.slow
def test_rate_counts_only_this_runs_predictions(digit_folder, tmp_path, model_file):
    root, _ = digit_folder
    args = ["predict", str(root), "-o", str(tmp_path / "p.csv"), "--model", str(model_file)]
    summary = tmp_path / "s.json"
    run(*args, "--incremental")
    run(*args, "--incremental", "--summary-json", str(summary))  # everything reused but 1
    data = json.loads(summary.read_text())
    assert data["reused"] == data["found"] - 1  # broken.png is tried again
    assert data["predicted_this_run"] == 1
    assert data["images_per_second"] <= 1 / data["stream_seconds"] + 0.1
