"""``--incremental`` as a pure plan: which rows of the previous run stand, which files
to predict, which rows to drop; then the merge that puts both back in listing order.

No file system and no TensorFlow here: the caller gives the listing's CSV paths, each
file's stamp (size, mtime_ns; ``None`` when it cannot be read) and the previous rows
(:meth:`batchdigits.run.state.Previous.rows`); the functions give back data. Everything is in
path order, so both passes walk the listing and the previous rows side by side and the
previous rows are streamed, never held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

#: A previous row as :meth:`batchdigits.run.state.Previous.rows` gives it:
#: ``(csv path, row, size, mtime_ns)``; ``row`` has ``.error`` (a CsvRow).
Previous = tuple[str, Any, int, int]


@dataclass
class Plan:
    """Per listing index whether the previous row stands; counts of the rest, by why."""

    reuse: bytearray = field(default_factory=bytearray)  # 1: the previous row stands
    new: int = 0  # not in the previous CSV
    changed: int = 0  # another size or mtime than last time (or unreadable now)
    retried: int = 0  # an error row last time: tried again
    removed: int = 0  # previous rows whose files are gone
    reused_flagged: int = 0  # reused rows that need review

    @property
    def reused(self) -> int:
        return sum(self.reuse)

    def todo(self, items: Sequence) -> list:
        """The items of a sequence parallel to the listing that must be predicted."""
        return [item for item, kept in zip(items, self.reuse, strict=True) if not kept]


def make_plan(
    keys: Sequence[str],
    stamps: Sequence[tuple[int, int] | None],
    previous: Iterable[Previous],
) -> Plan:
    """Reuse a previous row when its file has the same stamp and it was not an error."""
    plan = Plan(reuse=bytearray(len(keys)))
    old_rows = _Cursor(iter(previous))
    for i, key in enumerate(keys):
        plan.removed += old_rows.skip_to(key)
        old = old_rows.take(key)
        stamp = stamps[i]
        if old is None:
            plan.new += 1
        elif old[1].error:
            plan.retried += 1
        elif stamp is not None and old[2] == stamp[0] and old[3] == stamp[1]:
            plan.reuse[i] = 1
            plan.reused_flagged += old[1].needs_review
        else:
            plan.changed += 1
    plan.removed += old_rows.skip_to(None)
    return plan


def merge(
    keys: Sequence[str],
    plan: Plan,
    previous: Iterable[Previous],
    fresh: Iterator,
) -> Iterator:
    """The rows in listing order: the previous row where the plan reuses it, else the
    next of ``fresh`` (the predicted rows of the other files, in listing order)."""
    old_rows = _Cursor(iter(previous))
    for i, key in enumerate(keys):
        old_rows.skip_to(key)
        old = old_rows.take(key)
        yield old[1] if plan.reuse[i] else next(fresh)


class _Cursor:
    """A stream of previous rows in path order, read forward by key."""

    def __init__(self, rows: Iterator[Previous]):
        self._rows = rows
        self._head = next(rows, None)

    def skip_to(self, key: str | None) -> int:
        """Drop rows before ``key`` (all with None); returns how many were dropped."""
        dropped = 0
        while self._head is not None and (key is None or self._head[0] < key):
            self._head = next(self._rows, None)
            dropped += 1
        return dropped

    def take(self, key: str) -> Previous | None:
        """The row for ``key`` if it is next, else None."""
        if self._head is not None and self._head[0] == key:
            row, self._head = self._head, next(self._rows, None)
            return row
        return None
