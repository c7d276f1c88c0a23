"""The scaled, thresholded SYNAGEN shape: ``cv2.resize(crop, size, INTER_AREA) > threshold``,
computed from the crop's summed-area table.

The size search resizes the same rotated crop (hundreds of pixels a side) to a handful of sizes.
``cv2.resize`` reads the whole crop each time; shrinking with ``INTER_AREA`` is an area average,
so every resized pixel is four bilinear reads of the summed-area table (built once per crop, in
float64): the cost follows the *output* size, not the crop's.

Exactness: the thresholded mask is the one ``cv2.resize`` gives, bit for bit. The box edges are
OpenCV's (``computeResizeAreaTab``: the same cell widths, the same dropped slivers under 1e-3 of
a pixel, the same last cell), the float64 average is within 1e-9 of the exact one, and OpenCV's
float32 sums are within ``(terms + 4) * 2**-23`` of it; when any pixel's value lies that close
to the threshold the comparison could go either way, so that one call is answered by
``cv2.resize`` itself. Enlarging (``INTER_LINEAR``) is always ``cv2.resize``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from .shapes import _rotated_cached


#: above this many output pixels ``cv2.resize`` (which reads the whole crop once) is faster than
#: the table reads (measured on 500-700 px crops: 0.11 ms against 0.6 ms at 44x41, even near 110x110)
_TABLE_MAX_PIXELS = 10_000


def _area_cells(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: the start and end (source coordinates) of its area cell as OpenCV
    weighs it, and the cell width it divides by (``computeResizeAreaTab``, in the same float64
    arithmetic)."""
    scale = 1.0 / (dst / src)  # OpenCV: scale_x = 1. / inv_scale_x, inv_scale_x = dst / src
    f1 = np.arange(dst, dtype=np.float64) * scale
    f2 = f1 + scale
    cell = np.minimum(scale, src - f1)
    s2 = np.minimum(np.floor(f2), src - 1)
    s1 = np.minimum(np.ceil(f1), s2)
    starts = np.where(s1 - f1 > 1e-3, f1, s1)
    ends = np.where(f2 - s2 > 1e-3, s2 + np.minimum(np.minimum(f2 - s2, 1.0), cell), s2)
    return starts, ends, cell


@lru_cache(maxsize=1024)
def _taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """How an area resize along one axis reads the table. Cell edges mostly coincide (one cell's
    end is the next one's start), so the table is read at the distinct edge positions:
    ``lines`` the table lines below, then above, each position; ``frac`` how far each position
    lies past its lower line; ``which`` ``(2, dst)`` which positions start and end each cell, or
    ``None`` when cell ``d`` runs from position ``d`` to ``d + 1``; ``cell`` the widths OpenCV
    divides by."""
    starts, ends, cell = _area_cells(src, dst)
    # the usual case: cells tile the source (one cell's end is the next one's start, up to the
    # last bit of ``d * scale + scale`` against ``(d + 1) * scale``; reading the table a few
    # 1e-13 pixels off moves an average by far less than the 1e-9 allowed for in ``mask``)
    if dst == 1 or np.abs(starts[1:] - ends[:-1]).max() <= 1e-11:
        positions, which = np.append(starts, ends[-1]), None
    else:
        positions, inverse = np.unique(np.concatenate([starts, ends]), return_inverse=True)
        which = inverse.reshape(2, dst)
    base = np.minimum(np.floor(positions).astype(np.int64), src - 1)
    return np.concatenate([base, base + 1]), positions - base, which, cell


class ScaledShape:
    """One rotated shape crop (float32 ``(h, w)`` in [0, 1]) and its summed-area table."""

    def __init__(self, crop: np.ndarray) -> None:
        self.crop = crop
        self._table: np.ndarray | None = None
        #: calls answered by cv2.resize because a pixel sat on the threshold (for the tests)
        self.fallbacks = 0

    @property
    def table(self) -> np.ndarray:
        """float64 ``(h + 1, w + 1)``: ``table[i, j]`` is the sum of ``crop[:i, :j]`` (built on
        first use: it costs about four ``cv2.resize`` calls of the crop)."""
        if self._table is None:
            table = cv2.integral(self.crop, sdepth=cv2.CV_64F)
            table.setflags(write=False)
            self._table = table
        return self._table

    def values(self, new_w: int, new_h: int) -> np.ndarray:
        """The area averages ``cv2.resize(crop, (new_w, new_h), INTER_AREA)`` computes, in float64."""
        h, w = self.crop.shape
        ly, fy, rows, ch = _taps(h, new_h)
        lx, fx, cols, cw = _taps(w, new_w)
        sub = self.table[ly][:, lx]  # only the lines the cell edges read
        k, m = len(fy), len(fx)
        # the table is linear between lines: read it at the row edges, then the column edges
        at_rows = sub[:k] + fy[:, None] * (sub[k:] - sub[:k])
        at_edges = at_rows[:, :m] + fx * (at_rows[:, m:] - at_rows[:, :m])
        strips = np.diff(at_edges, axis=0) if rows is None else at_edges[rows[1]] - at_edges[rows[0]]
        boxes = np.diff(strips, axis=1) if cols is None else strips[:, cols[1]] - strips[:, cols[0]]
        return boxes / (ch[:, None] * cw[None, :])

    def mask(self, scale: float, threshold: float) -> np.ndarray:
        """``cv2.resize(crop, (round(w * scale), round(h * scale)), ...) > threshold`` as
        ``Synagen._place`` makes it (``INTER_AREA`` below scale 1, else ``INTER_LINEAR``)."""
        h, w = self.crop.shape
        new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        if scale >= 1.0 or new_w > w or new_h > h or new_w * new_h > _TABLE_MAX_PIXELS:
            interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            return cv2.resize(self.crop, (new_w, new_h), interpolation=interp) > threshold
        values = self.values(new_w, new_h)
        # OpenCV's float32 sums: one rounding per term of either pass, each below 2**-24 of a
        # partial sum that stays within [0, 1]
        terms = math.ceil(w / new_w) + math.ceil(h / new_h) + 4
        margin = terms * 2.0**-23 + 1e-9
        if np.any(np.abs(values - threshold) <= margin):
            self.fallbacks += 1
            return cv2.resize(self.crop, (new_w, new_h), interpolation=cv2.INTER_AREA) > threshold
        return values > threshold


def scaled_shape(shape: str, params_json: str, angle: float) -> ScaledShape:
    """The rotated crop of ``shapes.rotated_shape`` with its table, cached like the crop (the
    protocol renders one drawn shape in five sizes)."""
    return _scaled_cached(shape, params_json, float(angle))


@lru_cache(maxsize=16)
def _scaled_cached(shape: str, params_json: str, angle: float) -> ScaledShape:
    # the same key as ``rotated_shape``'s own cache (parameters as sorted-key JSON)
    return ScaledShape(_rotated_cached(shape, params_json, angle))
