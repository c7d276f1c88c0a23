"""Steering a method's size knob (patch scale, mask pixel count) until the *measured* changed area
lies in a size bin, the way SYNAGEN does it: render, measure what would be stored, correct.

Also the small placement helpers the patch-based methods share: picking a point inside the
region, keeping a box inside the image, and measuring a rendered window exactly like ``finish``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

import numpy as np

from .anomaly import changed_pixels
from .errors import RegionError, SizeBinError
from .method import Scene
from .sizebins import SizeBin

T = TypeVar("T")

#: A window ``(y0, y1, x0, x1)`` of the image (half-open).
Window = tuple[int, int, int, int]


def pixel_bounds(size_bin: SizeBin, scene: Scene) -> tuple[int, int]:
    """Inclusive changed-pixel range of ``size_bin`` for the scene; errors a user can act on."""
    n_pixels = scene.height * scene.width
    lo_px, hi_px = size_bin.pixel_range(n_pixels)
    if hi_px < max(lo_px, 1):
        raise SizeBinError(
            f"size bin {size_bin.name} holds no whole pixel count for a {scene.width}x{scene.height} "
            f"image ({n_pixels} pixels); use a larger image or a wider bin"
        )
    lo_px = max(lo_px, 1)
    allowed = n_pixels if scene.region is None else int(scene.region.sum())
    if allowed < lo_px:
        raise RegionError(
            f"region has {allowed} allowed pixels ({100 * allowed / n_pixels:.3g} % of the image) but "
            f"size bin {size_bin.name} needs at least {lo_px}; use a smaller bin or a larger region"
        )
    return lo_px, hi_px


def target_pixels(size_bin: SizeBin, target_fraction: float, scene: Scene) -> float:
    """The drawn target fraction as a pixel count, clamped into the bin's pixel range."""
    lo_px, hi_px = pixel_bounds(size_bin, scene)
    return min(max(target_fraction * scene.height * scene.width, lo_px), hi_px)


def measure_window(scene: Scene, window: Window, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip rendered window ``values`` (float32 ``(h, w, C)``) to the region and find what changed.

    Returns ``(values, changed)``: the values ``finish`` will store (outside the region the
    source) and the bool ``(h, w)`` changed-pixel mask measured on the quantised output.
    """
    y0, y1, x0, x1 = window
    source = scene.image[y0:y1, x0:x1]
    values = np.clip(values, 0.0, 1.0).astype(np.float32, copy=False)
    if scene.region is not None:
        values = np.where(scene.region[y0:y1, x0:x1][:, :, None], values, source)
    return values, changed_pixels(source, values, scene.quantum)


def anchor_point(u: float, scene: Scene, v: float | None = None) -> tuple[int, int]:
    """A pixel ``(y, x)``: inside the region (the ``u``-th allowed pixel) or, without a region,
    uniform over the image from ``(u, v)``."""
    if scene.region is None:
        v = u if v is None else v
        return min(int(u * scene.height), scene.height - 1), min(int(v * scene.width), scene.width - 1)
    allowed = np.flatnonzero(scene.region)
    index = int(allowed[min(int(u * len(allowed)), len(allowed) - 1)])
    y, x = divmod(index, scene.width)
    return y, x


def box_around(cy: float, cx: float, h: int, w: int, height: int, width: int, margin: int = 0) -> tuple[int, int, int, int]:
    """Top-left anchored box ``(y0, y1, x0, x1)`` of size ``h x w`` centred near ``(cy, cx)``,
    shifted so that it lies inside the image with ``margin`` pixels to spare."""
    h = max(1, min(int(h), height - 2 * margin))
    w = max(1, min(int(w), width - 2 * margin))
    y0 = int(round(cy - h / 2.0))
    x0 = int(round(cx - w / 2.0))
    y0 = min(max(y0, margin), height - margin - h)
    x0 = min(max(x0, margin), width - margin - w)
    return y0, y0 + h, x0, x0 + w


def union_window(boxes: list[tuple[int, int, int, int]], height: int, width: int, pad: int = 0) -> Window:
    """Smallest window holding every box, grown by ``pad`` and clipped to the image."""
    y0 = max(0, min(b[0] for b in boxes) - pad)
    y1 = min(height, max(b[1] for b in boxes) + pad)
    x0 = max(0, min(b[2] for b in boxes) - pad)
    x1 = min(width, max(b[3] for b in boxes) + pad)
    return y0, y1, x0, x1


def bbox_window(mask: np.ndarray, pad: int = 0) -> Window | None:
    """Bounding window of a bool mask grown by ``pad`` (``None`` for an empty mask)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    return (
        max(0, int(rows[0]) - pad),
        min(height, int(rows[-1]) + 1 + pad),
        max(0, int(cols[0]) - pad),
        min(width, int(cols[-1]) + 1 + pad),
    )


@dataclass(frozen=True)
class Steered(Generic[T]):
    """Outcome of ``steer``: the in-bin payload (or ``None``), its knob value and area."""

    payload: T | None
    knob: float
    area: int
    steps: int
    best_area: int


def steer(
    render_at: Callable[[float], tuple[int, T]],
    *,
    lo_px: int,
    hi_px: int,
    target_px: float,
    start: float,
    exponent: float = 2.0,
    lower: float = 0.0,
    upper: float = math.inf,
    max_steps: int = 18,
    tolerance: float = 0.1,
) -> Steered[T]:
    """Search a knob (changed area non-decreasing in it) until ``lo_px <= area <= hi_px``.

    ``render_at(knob) -> (area, payload)`` renders and measures. The first guess is ``start``;
    each correction assumes ``area ~ knob ** exponent`` (2 for a linear patch scale, 1 for a pixel
    count), falling back to bisection between the bracketing values. Stops early once the area is
    in the bin and within ``tolerance`` of the target, so sizes stay spread over the bin.
    Returns the in-bin result closest to the target, or a ``Steered`` with ``payload=None``.
    """
    knob = min(max(start, lower), upper)
    k_low, k_high = lower, upper
    best_area = -1
    found: tuple[int, float, T, int] | None = None
    steps = 0
    for step in range(max_steps):
        steps = step + 1
        area, payload = render_at(knob)
        if best_area < 0 or abs(area - target_px) < abs(best_area - target_px):
            best_area = area
        if lo_px <= area <= hi_px:
            if found is None or abs(area - target_px) < abs(found[0] - target_px):
                found = (area, knob, payload, steps)
            if abs(area - target_px) <= tolerance * target_px or step >= max_steps // 2:
                break
        if area < target_px:
            k_low = max(k_low, knob)
        else:
            k_high = min(k_high, knob)
        if area < lo_px and knob >= upper:
            break  # the largest allowed knob is still too small
        if area > hi_px and knob <= lower:
            break
        if area > 0:
            proposal = knob * (target_px / area) ** (1.0 / exponent)
        else:
            proposal = knob * 2.0
        if not (k_low < proposal < k_high):
            if k_high < math.inf and k_low > 0:
                proposal = math.sqrt(k_low * k_high)
            elif k_high < math.inf:
                proposal = (k_low + k_high) / 2.0
            else:
                proposal = knob * 2.0
        proposal = min(max(proposal, lower), upper)
        if k_high < math.inf and k_low > 0 and k_high / k_low < 1.0005:
            break  # the area jumps over the bin here
        if proposal == knob:
            break
        knob = proposal
    if found is None:
        return Steered(None, knob, best_area, steps, best_area)
    area, knob, payload, at_step = found
    return Steered(payload, knob, area, at_step, best_area)


def size_error(method: str, size_bin: SizeBin, scene: Scene, best_area: int, hint: str) -> SizeBinError:
    lo_px, hi_px = pixel_bounds(size_bin, scene)
    return SizeBinError(
        f"could not bring a {method} anomaly into size bin {size_bin.name} ({lo_px}-{hi_px} changed "
        f"pixels of {scene.height * scene.width}); closest was {max(best_area, 0)} pixels. {hint}"
    )


def jsonable(value: Any) -> Any:
    """Plain JSON types for spec params (numpy scalars and tuples converted)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


#: Placements tried (``attempt`` 0, 1, ...) before a size request is declared impossible.
PLACEMENT_ATTEMPTS = 4


def fit(
    scene: Scene,
    spec: Any,
    render_at: Callable[[float, int], tuple[int, T]],
    *,
    natural: float = 1.0,
    start: float = 1.0,
    exponent: float = 2.0,
    lower: float = 1e-3,
    upper: float = math.inf,
    hint: str = "try another seed or a larger bin",
    attempts: int = PLACEMENT_ATTEMPTS,
) -> tuple[T, dict[str, Any]]:
    """Render a spec at its drawn size, or steer it into ``spec.size_bin``.

    ``render_at(knob, attempt) -> (changed pixels, payload)``; ``attempt`` selects another
    placement (or noise seed) when one cannot be brought into the bin. Without a size bin the
    knob is ``natural`` and the only requirement is that at least one pixel changes. Returns the
    payload and the JSON values to record (``size_knob``, ``placement_attempt``, ``scale_steps``).
    """
    if spec.size_bin is None:
        for attempt in range(attempts):
            area, payload = render_at(natural, attempt)
            if area > 0:
                return payload, {"size_knob": float(natural), "placement_attempt": attempt}
        raise SizeBinError(
            f"{spec.method}: {attempts} placements changed no stored pixel (the blended content "
            f"equals the image there); {hint}"
        )
    lo_px, hi_px = pixel_bounds(spec.size_bin, scene)
    target_px = target_pixels(spec.size_bin, spec.params["target_fraction"], scene)
    best_area = 0
    for attempt in range(attempts):
        result = steer(
            lambda knob: render_at(knob, attempt),
            lo_px=lo_px,
            hi_px=hi_px,
            target_px=target_px,
            start=start,
            exponent=exponent,
            lower=lower,
            upper=upper,
        )
        if result.payload is not None:
            return result.payload, {
                "size_knob": float(result.knob),
                "placement_attempt": attempt,
                "scale_steps": result.steps,
            }
        if abs(result.best_area - target_px) < abs(best_area - target_px):
            best_area = result.best_area
    raise size_error(spec.method, spec.size_bin, scene, best_area, hint)


class RankedMask:
    """Masks ``noise > t`` restricted to ``candidates``, addressed by their pixel count.

    Thresholding noise at a higher value gives a smaller mask, so the number of mask pixels is a
    monotone size knob: ``mask(k)`` holds the ``k`` candidate pixels with the largest noise.
    """

    def __init__(self, noise: np.ndarray, candidates: np.ndarray | None) -> None:
        self.noise = noise
        self.candidates = candidates
        self.count = int(noise.size if candidates is None else candidates.sum())
        self._sorted: np.ndarray | None = None

    @property
    def sorted(self) -> np.ndarray:
        if self._sorted is None:  # only size-bin steering needs the ranking
            values = self.noise[self.candidates] if self.candidates is not None else self.noise.ravel()
            self._sorted = np.sort(values)
        return self._sorted

    def natural(self, threshold: float) -> int:
        """Pixel count of ``noise > threshold`` inside the candidates."""
        above = self.noise > threshold
        if self.candidates is not None:
            above &= self.candidates
        return int(np.count_nonzero(above))

    def threshold_mask(self, threshold: float) -> np.ndarray:
        mask = self.noise > threshold
        if self.candidates is not None:
            mask &= self.candidates
        return mask

    def mask(self, k: float) -> np.ndarray:
        """bool ``(H, W)`` of the ``k`` (rounded, at least 1) highest-noise candidate pixels."""
        k = int(min(max(round(k), 1), self.count))
        threshold = self.sorted[self.count - k]
        mask = self.noise >= threshold
        if self.candidates is not None:
            mask &= self.candidates
        return mask
