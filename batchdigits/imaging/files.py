"""Finding the image files in an input folder."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from batchdigits.errors import InputNotFoundError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


@dataclass
class Listing:
    """The image files under a root, as sorted relative paths with ``/`` separators."""

    root: str
    paths: list[str] = field(default_factory=list)
    skipped: int = 0  # non-image and hidden files
    unreadable_folders: list[str] = field(default_factory=list)

    def full_path(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/"))

    def full_paths(self) -> Sequence[str]:
        """Every file's full path, made when asked for (no second list of strings)."""
        return Mapped(self.paths, self.full_path)


class Mapped(Sequence):
    """``function(items[i])`` for each ``i``, computed when asked for."""

    def __init__(self, items: Sequence, function: Callable):
        self._items, self._function = items, function

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):
        return self._function(self._items[i])


def is_image_name(name: str) -> bool:
    """By extension, case-insensitively (``.x.png``-style hidden names are skipped before)."""
    stem, dot, extension = name.rpartition(".")
    return bool(dot and stem) and f".{extension.lower()}" in IMAGE_EXTENSIONS


def name_kind(name: str) -> str:
    """The listing's rule for one file name: ``"hidden"`` (a leading ``.``), ``"image"``
    (an image extension) or ``"skipped"`` (anything else)."""
    if name.startswith("."):
        return "hidden"
    return "image" if is_image_name(name) else "skipped"


def path_kind(rel: str) -> str:
    """The listing's rules for a path relative to the root (``/`` separators): under a
    hidden folder it is ``"hidden folder"`` (not listed, not counted); a hidden file is
    ``"skipped"`` (counted); else :func:`name_kind`."""
    *folders, name = rel.split("/")
    if any(part.startswith(".") for part in folders):
        return "hidden folder"
    kind = name_kind(name)
    return "skipped" if kind == "hidden" else kind


def is_safe_relative(path: str) -> bool:
    """A path that stays inside the folder it is relative to: not empty, not absolute,
    and no ``..`` part (a request or a labels file cannot reach outside it)."""
    parts = path.replace("\\", "/").split("/")
    return bool(path) and not path.startswith(("/", "\\")) and ".." not in parts


def check_input_folder(root: str) -> None:
    """Raise :class:`InputNotFoundError` (exit 66) unless ``root`` is a folder."""
    if not os.path.isdir(root):
        what = "does not exist" if not os.path.lexists(root) else "is not a folder"
        raise InputNotFoundError(f"input folder {root!r} {what}; pass a folder of images")


def find_images(
    root: str | os.PathLike, recursive: bool = True, exclude: frozenset[str] = frozenset()
) -> Listing:
    """List image files under ``root`` by extension (case-insensitive), sorted by path.

    Hidden files and folders (name starting with ``.``) are skipped, as are the real
    paths in ``exclude`` (the output file). Symlinked folders are followed once each,
    so a symlink loop cannot make the walk endless. Anything with an image name is
    listed, even if it is a folder or a broken link: it gets a CSV row saying why it
    could not be read, rather than vanishing.
    """
    root_str = os.fspath(root)
    check_input_folder(root_str)
    listing = Listing(root=root_str)
    seen_dirs: set[tuple[int, int]] = set()
    excluded = {os.path.realpath(p) for p in exclude}
    # Only an entry with an excluded file's name, or a link, can be that file: the
    # (costly) realpath is taken for those alone.
    excluded_names = {os.path.basename(p) for p in excluded}
    stack = [("", root_str)]
    while stack:
        prefix, folder = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen_dirs:
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(folder))
        except OSError:
            listing.unreadable_folders.append(prefix.rstrip("/") or ".")
            continue
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            kind = name_kind(entry.name)
            if kind == "hidden":
                listing.skipped += not _is_dir(entry)
                continue
            is_dir = _is_dir(entry)
            if is_dir and recursive:
                stack.append((rel + "/", entry.path))
            if kind == "image":
                # A folder named like an image gets a row too (its error says so).
                maybe_excluded = entry.name in excluded_names or entry.is_symlink()
                if not maybe_excluded or os.path.realpath(entry.path) not in excluded:
                    listing.paths.append(rel)
            elif not is_dir:
                listing.skipped += 1
    listing.paths.sort()
    return listing


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
