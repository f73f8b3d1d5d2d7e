"""Drawing helpers shared by the stress variants and the loose field crops (numpy)."""

from __future__ import annotations

import numpy as np


def ink_box(digit: np.ndarray, level: int = 40) -> np.ndarray:
    """The digit cropped to its ink (pixels above ``level``)."""
    rows = np.flatnonzero((digit > level).any(axis=1))
    cols = np.flatnonzero((digit > level).any(axis=0))
    if not len(rows):
        return digit
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def paint(ink: np.ndarray, dark_ink: bool, paper: float, pen: float) -> np.ndarray:
    """Ink weights 0..255 -> gray: ``paper`` where there is no ink, ``pen`` at full ink;
    ``dark_ink`` False swaps them (light on dark)."""
    a = np.clip(ink / 255.0, 0.0, 1.0)
    if not dark_ink:
        paper, pen = 255.0 - paper, 255.0 - pen
    return paper * (1 - a) + pen * a


def to_u8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)
