"""What counts as a changed pixel, for every path (numpy and batched): a stored value that
differs from the source by more than one 8-bit level (by default; ``Scene.min_change`` raises the
threshold on the numpy path, ``--min-change``)."""

from __future__ import annotations

import numpy as np

from .image import channel_max, quantize

#: A pixel counts as changed when some channel moved by more than this (in [0, 1] units).
CHANGE_TOLERANCE = 1.0 / 255.0


def is_changed(change, min_change: float = CHANGE_TOLERANCE):
    """``change > min_change`` (default 1/255, with a margin for float rounding), for arrays and
    tensors alike."""
    return change > min_change + 1e-6


def changed_pixels(source: np.ndarray, output: np.ndarray, quantum: float,
                   min_change: float = CHANGE_TOLERANCE) -> np.ndarray:
    """bool ``(H, W)``: pixels whose *stored* value differs from the source by more than
    ``min_change`` (default 1/255).

    ``source`` and ``output`` are float ``(H, W, C)``; ``output`` is quantised the way it will be
    written (``quantum`` = 1/255 for uint8), so what a method measures is what a user will see.
    """
    return is_changed(largest_change(source, quantize(output, quantum)), min_change)


def largest_change(source: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """float32 ``(H, W)``: the largest per-channel ``|stored - source|`` (the ``diff`` map)."""
    delta = np.abs(stored - source)
    return channel_max(delta) if delta.ndim == 3 else delta
