"""MNIST loading: IDX files (gzip or raw), a Keras ``mnist.npz``, or the Keras download.

Sources are taken in this order: an explicit path (``--data``), the environment variable
``BATCHDIGITS_MNIST``, then ``keras.datasets.mnist.load_data()``. An explicit source that
fails is an error (it is never silently replaced by another one). Everything read is
validated: IDX magic numbers and sizes, image shapes, label range, and the published
checksums of the standard files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from batchdigits.errors import DataFormatError, DataNotFoundError

ENV_VAR = "BATCHDIGITS_MNIST"
IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801

#: The four standard files and the md5 of their uncompressed content (as published).
STANDARD_FILES = {
    "train_images": ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
    "train_labels": ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
    "test_images": ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    "test_labels": ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
}
#: sha256 of the ``mnist.npz`` that Keras downloads.
KERAS_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"

HELP = (
    f"Pass --data PATH (a folder with the four MNIST IDX files, gzip-compressed or not, "
    f"or an mnist.npz), or set {ENV_VAR} to such a path."
)


@dataclass
class Mnist:
    """MNIST arrays: images ``(N, 28, 28) uint8`` (0 = background), labels ``(N,) uint8``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    checksums: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- IDX


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataFormatError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
    return raw


def parse_idx(raw: bytes, expected_magic: int, name: str = "IDX data") -> np.ndarray:
    """Parse an uncompressed IDX byte string of unsigned bytes into an array."""
    if len(raw) < 8:
        raise DataFormatError(f"{name}: too short to be an IDX file ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DataFormatError(
            f"{name}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{name}: truncated header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    actual = len(raw) - header
    if actual != expected:
        raise DataFormatError(
            f"{name}: header declares {'x'.join(map(str, dims))} = {expected} bytes of data, "
            f"file holds {actual} (truncated or corrupt)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, base: str) -> Path | None:
    for candidate in (folder / base, folder / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_idx_folder(folder: Path, verify: bool = True) -> Mnist:
    """Load the four standard IDX files from ``folder``."""
    arrays: dict[str, np.ndarray] = {}
    checksums: dict[str, str] = {}
    paths = {key: _find_idx(folder, base) for key, (base, _) in STANDARD_FILES.items()}
    missing = [STANDARD_FILES[key][0] for key, path in paths.items() if path is None]
    if missing:
        raise DataNotFoundError(
            f"{folder}: missing {', '.join(missing)} (each may also end in .gz)"
        )
    for key, path in paths.items():
        md5 = STANDARD_FILES[key][1]
        raw = _read_maybe_gzip(path)
        digest = hashlib.md5(raw).hexdigest()
        if verify and digest != md5:
            raise DataFormatError(
                f"{path}: checksum mismatch (md5 {digest}, published {md5}); the file is "
                "corrupt or not the original MNIST. Download it again, or pass "
                "--skip-checksum if it is deliberately different data in the MNIST format."
            )
        magic = IMAGE_MAGIC if key.endswith("images") else LABEL_MAGIC
        arrays[key] = parse_idx(raw, magic, str(path))
        checksums[path.name] = f"md5:{digest}"
    return _validated(
        arrays["train_images"],
        arrays["train_labels"],
        arrays["test_images"],
        arrays["test_labels"],
        source=f"IDX files in {folder}",
        checksums=checksums,
    )


# --------------------------------------------------------------------------- npz


def load_npz(path: Path, verify: bool = True) -> Mnist:
    """Load a Keras-format ``mnist.npz`` (keys x_train, y_train, x_test, y_test)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"cannot read {path}: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(raw).hexdigest()
    if verify and path.name == "mnist.npz" and digest != KERAS_NPZ_SHA256:
        raise DataFormatError(
            f"{path}: checksum mismatch (sha256 {digest}, Keras publishes {KERAS_NPZ_SHA256}). "
            "Download it again, or pass --skip-checksum for deliberately different data."
        )
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            parts = [npz[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except KeyError as exc:
        raise DataFormatError(f"{path}: not a Keras MNIST npz (missing key {exc})") from exc
    except (ValueError, OSError) as exc:
        raise DataFormatError(f"{path}: not a readable .npz file ({exc})") from exc
    return _validated(*parts, source=f"npz file {path}", checksums={path.name: f"sha256:{digest}"})


# --------------------------------------------------------------------------- checks


def _validated(x_train, y_train, x_test, y_test, source: str, checksums: dict) -> Mnist:
    for name, x, y in (("training", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataFormatError(f"{source}: {name} images have shape {x.shape}, need (N, 28, 28)")
        if y.ndim != 1 or len(y) != len(x):
            raise DataFormatError(f"{source}: {len(x)} {name} images but labels of shape {y.shape}")
        if len(x) == 0:
            raise DataFormatError(f"{source}: no {name} images")
        if x.dtype != np.uint8:
            raise DataFormatError(f"{source}: {name} images are {x.dtype}, need uint8")
        if y.min() < 0 or y.max() > 9:
            raise DataFormatError(
                f"{source}: {name} labels outside 0-9 (min {y.min()}, max {y.max()})"
            )
    return Mnist(
        x_train=np.asarray(x_train),
        y_train=np.asarray(y_train, dtype=np.uint8),
        x_test=np.asarray(x_test),
        y_test=np.asarray(y_test, dtype=np.uint8),
        source=source,
        checksums=checksums,
    )


# --------------------------------------------------------------------------- sources


def load_path(path: str | os.PathLike, verify: bool = True) -> Mnist:
    """Load MNIST from a folder of IDX files, a folder holding ``mnist.npz``, or an npz."""
    p = Path(path).expanduser()
    if p.is_file():
        return load_npz(p, verify)
    if p.is_dir():
        npz = p / "mnist.npz"
        if npz.is_file() and _find_idx(p, STANDARD_FILES["train_images"][0]) is None:
            return load_npz(npz, verify)
        return load_idx_folder(p, verify)
    raise DataNotFoundError(f"{p}: no such file or folder")


def _keras_download() -> Mnist:
    from batchdigits.runtime.lazy import keras

    (x_train, y_train), (x_test, y_test) = keras().datasets.mnist.load_data()
    return _validated(
        x_train,
        y_train,
        x_test,
        y_test,
        source="keras.datasets.mnist (download/cache)",
        checksums={"mnist.npz": f"sha256:{KERAS_NPZ_SHA256}"},
    )


def load_mnist(data: str | os.PathLike | None = None, verify: bool = True) -> Mnist:
    """Load MNIST from ``data``, else ``$BATCHDIGITS_MNIST``, else the Keras download."""
    if data is not None:
        return _explicit(data, verify, "--data")
    env = os.environ.get(ENV_VAR)
    if env:
        return _explicit(env, verify, f"${ENV_VAR}")
    try:
        return _keras_download()
    except Exception as exc:  # network errors come in many types; all mean "not here"
        raise DataNotFoundError(
            "no MNIST data could be loaded. Tried: --data (not given); "
            f"${ENV_VAR} (not set); keras.datasets.mnist.load_data() "
            f"({type(exc).__name__}: {exc}). {HELP}"
        ) from exc


def _explicit(path: str | os.PathLike, verify: bool, label: str) -> Mnist:
    try:
        return load_path(path, verify)
    except DataNotFoundError as exc:
        tried = "--data (not given); " if label != "--data" else ""
        raise DataNotFoundError(
            f"no MNIST data could be loaded. Tried: {tried}{label}: {exc}. {HELP}"
        ) from exc


VALIDATION_FRACTION = 1 / 12  # 5,000 of MNIST's 60,000


def split_train_validation(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation parts of ``n`` images (seeded, disjoint)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * VALIDATION_FRACTION))
    return np.sort(order[n_val:]), np.sort(order[:n_val])
