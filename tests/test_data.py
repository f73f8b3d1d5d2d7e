"""MNIST loading: IDX (gz and raw), npz, validation, checksums, and the source order."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from batchdigits.errors import DataFormatError, DataNotFoundError
from batchdigits.training import data


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def small_set(seed: int = 0):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 30, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 10, dtype=np.uint8),
    }


def write_idx_folder(folder, arrays, compress: bool):
    folder.mkdir(parents=True, exist_ok=True)
    for key, (base, _) in data.STANDARD_FILES.items():
        magic = data.IMAGE_MAGIC if key.endswith("images") else data.LABEL_MAGIC
        raw = idx_bytes(arrays[key], magic)
        if compress:
            (folder / f"{base}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / base).write_bytes(raw)
    return folder


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder_round_trip(tmp_path, compress):
    arrays = small_set()
    folder = write_idx_folder(tmp_path / "m", arrays, compress)
    m = data.load_path(folder, verify=False)
    np.testing.assert_array_equal(m.x_train, arrays["train_images"])
    np.testing.assert_array_equal(m.y_test, arrays["test_labels"])
    md5 = hashlib.md5(idx_bytes(arrays["test_labels"], data.LABEL_MAGIC)).hexdigest()
    name = "t10k-labels-idx1-ubyte" + (".gz" if compress else "")
    assert m.checksums[name] == f"md5:{md5}"


def test_checksum_mismatch_on_standard_names_is_an_error(tmp_path):
    folder = write_idx_folder(tmp_path / "m", small_set(), compress=True)
    with pytest.raises(DataFormatError, match="checksum mismatch.*--skip-checksum"):
        data.load_path(folder, verify=True)


def test_npz(tmp_path):
    arrays = small_set(1)
    path = tmp_path / "digits.npz"
    np.savez(
        path,
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"],
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
    )
    m = data.load_path(path)
    np.testing.assert_array_equal(m.x_test, arrays["test_images"])
    assert m.checksums["digits.npz"].startswith("sha256:")
    # A folder holding mnist.npz works too (and a wrong checksum is caught for that name).
    (tmp_path / "f").mkdir()
    path.rename(tmp_path / "f" / "mnist.npz")
    with pytest.raises(DataFormatError, match="checksum mismatch"):
        data.load_path(tmp_path / "f")
    assert len(data.load_path(tmp_path / "f", verify=False).x_train) == 30


def test_npz_missing_key(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataFormatError, match="missing key"):
        data.load_path(path)


def test_wrong_magic(tmp_path):
    arrays = small_set()
    folder = write_idx_folder(tmp_path / "m", arrays, compress=False)
    raw = idx_bytes(arrays["train_labels"], data.IMAGE_MAGIC)  # labels with the image magic
    (folder / "train-labels-idx1-ubyte").write_bytes(raw)
    with pytest.raises(DataFormatError, match="wrong magic number 0x00000803"):
        data.load_path(folder, verify=False)


def test_truncated_idx(tmp_path):
    arrays = small_set()
    folder = write_idx_folder(tmp_path / "m", arrays, compress=False)
    raw = idx_bytes(arrays["train_images"], data.IMAGE_MAGIC)
    (folder / "train-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(DataFormatError, match="truncated"):
        data.load_path(folder, verify=False)


def test_truncated_gzip(tmp_path):
    arrays = small_set()
    folder = write_idx_folder(tmp_path / "m", arrays, compress=True)
    gz = folder / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:50])
    with pytest.raises(DataFormatError, match="gzip"):
        data.load_path(folder, verify=False)


def test_labels_out_of_range(tmp_path):
    arrays = small_set()
    arrays["test_labels"][3] = 12
    folder = write_idx_folder(tmp_path / "m", arrays, compress=False)
    with pytest.raises(DataFormatError, match="labels outside 0-9"):
        data.load_path(folder, verify=False)


def test_wrong_image_shape(tmp_path):
    arrays = small_set()
    arrays["train_images"] = np.zeros((30, 20, 20), np.uint8)
    folder = write_idx_folder(tmp_path / "m", arrays, compress=False)
    with pytest.raises(DataFormatError, match=r"need \(N, 28, 28\)"):
        data.load_path(folder, verify=False)


def test_missing_files_name_them(tmp_path):
    folder = write_idx_folder(tmp_path / "m", small_set(), compress=False)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.load_mnist(folder)


def test_source_order_env_then_keras(tmp_path, monkeypatch):
    folder = write_idx_folder(tmp_path / "m", small_set(), compress=False)
    monkeypatch.setenv(data.ENV_VAR, str(folder))
    assert data.load_mnist(verify=False).source == f"IDX files in {folder}"

    # --data wins over the environment variable.
    other = write_idx_folder(tmp_path / "other", small_set(2), compress=True)
    assert data.load_mnist(other, verify=False).source == f"IDX files in {other}"

    # With nothing configured and no network, the message lists every source tried.
    monkeypatch.delenv(data.ENV_VAR)

    def offline():
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(data, "_keras_download", offline)
    with pytest.raises(DataNotFoundError) as info:
        data.load_mnist()
    message = str(info.value)
    for part in ("--data (not given)", "$BATCHDIGITS_MNIST (not set)", "keras", "no network"):
        assert part in message
    assert "Pass --data PATH" in message


def test_env_var_pointing_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(DataNotFoundError, match=r"\$BATCHDIGITS_MNIST.*no such file"):
        data.load_mnist()


def test_real_mnist_checksums(mnist_full):
    mnist = mnist_full
    assert mnist.x_train.shape == (60000, 28, 28)
    assert mnist.x_test.shape == (10000, 28, 28)
    assert set(np.unique(mnist.y_test)) == set(range(10))
    assert sorted(v.split(":")[0] for v in mnist.checksums.values()) == ["md5"] * 4
