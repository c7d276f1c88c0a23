"""Steering a method's size knob (patch scale, mask pixel count) until the *measured* changed area
lies in a size bin, the way SYNAGEN does it: render, measure what would be stored, correct.

Also the small placement helpers the patch-based methods share: picking a point inside the
region, keeping a box inside the image, and measuring a rendered window exactly like ``finish``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Generic, Literal, TypeVar

import numpy as np

from .change import changed_pixels
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


def pixel_targets(size_bin: SizeBin, target_fraction: float, scene: Scene) -> tuple[int, int, float]:
    """``(lo_px, hi_px, target_px)``: the bin's changed-pixel range (``pixel_bounds``) and the drawn
    target fraction as a pixel count clamped into it, computed once for a size search."""
    lo_px, hi_px = pixel_bounds(size_bin, scene)
    return lo_px, hi_px, min(max(target_fraction * scene.height * scene.width, lo_px), hi_px)


def target_pixels(size_bin: SizeBin, target_fraction: float, scene: Scene) -> float:
    """The drawn target fraction as a pixel count, clamped into the bin's pixel range."""
    return pixel_targets(size_bin, target_fraction, scene)[2]


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
    return values, changed_pixels(source, values, scene.quantum, scene.min_change)


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


#: Golden-ratio step of the placement draws between attempts: successive attempts visit
#: well-spread positions (a low-discrepancy sequence) instead of retrying near the first one.
GOLDEN = 0.6180339887498949

#: Placements tried (``attempt`` 0, 1, ...) before a size request is declared impossible.
PLACEMENT_ATTEMPTS = 4


def target_fraction(size_bin: SizeBin, u: float) -> float:
    """The target changed-area fraction for a uniform draw ``u`` in [0, 1): uniform over the bin."""
    return float(size_bin.low + u * (size_bin.high - size_bin.low))


def draw_target_fraction(rng: np.random.Generator, size_bin: SizeBin) -> float:
    """Draw a target fraction uniformly over ``size_bin`` (one ``rng.random()`` call)."""
    return target_fraction(size_bin, float(rng.random()))


def shifted(u: float, attempt: int) -> float:
    """The drawn position ``u`` in [0, 1) moved along the golden-ratio sequence for ``attempt``."""
    return (u + attempt * GOLDEN) % 1.0


@dataclass(frozen=True)
class Steering:
    """How a size knob is searched; the defaults are the patch methods', SYNAGEN sets its own.

    ``exponent``      assumed law ``area ~ knob ** exponent`` (2: a linear scale, 1: a pixel count).
    ``root``          how ``ratio ** (1 / 2)`` is computed for ``exponent`` 2: ``"pow"`` or
                      ``"sqrt"`` (they differ in the last bit for about 0.1 % of ratios, so each
                      method keeps the one its datasets were made with).
    ``max_steps``     renders per placement.
    ``tolerance``     accepted distance from the target, as a share of ``tolerance_of``:
                      ``"target"`` (the target pixel count) or ``"bin"`` (the bin's pixel width).
    ``bracket_by``    a render counts as "too small" (raising the bracket's low end) below the
                      ``"target"`` or below the ``"bin"``.
    ``refine_steps``  renders allowed after the first in-bin one (``None``: until half of
                      ``max_steps`` have been used).
    ``open_bracket``  the search bracket starts as ``(0, inf)`` and the bounds only clamp the
                      knob (SYNAGEN), instead of starting as ``(lower, upper)``.
    """

    exponent: float = 2.0
    root: Literal["pow", "sqrt"] = "pow"
    max_steps: int = 18
    tolerance: float = 0.1
    tolerance_of: Literal["target", "bin"] = "target"
    bracket_by: Literal["target", "bin"] = "target"
    refine_steps: int | None = None
    open_bracket: bool = False

    def bracket(self, lower: Any, upper: Any) -> tuple[Any, Any]:
        """The initial ``(k_low, k_high)`` for knob bounds ``lower``/``upper``."""
        if not self.open_bracket:
            return lower, upper
        if isinstance(lower, np.ndarray):
            return np.zeros_like(lower, np.float64), np.full_like(upper, math.inf, np.float64)
        return 0.0, math.inf

    def accept(self, area: Any, target_px: Any, lo_px: Any, hi_px: Any) -> Any:
        """In the bin and close enough to the target to stop refining (elementwise)."""
        ops = _ops(area)
        width = target_px if self.tolerance_of == "target" else hi_px - lo_px
        close = ops.abs(area - target_px) <= self.tolerance * width
        return ops.logical_and(ops.logical_and(lo_px <= area, area <= hi_px), close)


@dataclass(frozen=True)
class Correction:
    """Outcome of one ``correct`` step (scalars, or arrays of the batch's shape)."""

    knob: Any
    k_low: Any
    k_high: Any
    #: no further render can help: the knob is at a bound, the bracket collapsed, or unchanged
    stuck: Any


def correct(
    knob: Any,
    area: Any,
    target_px: Any,
    lo_px: Any,
    hi_px: Any,
    k_low: Any,
    k_high: Any,
    *,
    lower: Any,
    upper: Any,
    steering: Steering = Steering(),
) -> Correction:
    """One measure-and-correct step of the size search, as a pure function of the measurement.

    Works elementwise on Python floats, numpy arrays or torch tensors (all arguments of one kind
    or broadcastable scalars), so a batched renderer runs the same search for all its anomalies
    at once. ``[k_low, k_high]`` brackets the knob (start with ``lower``/``upper``, or
    ``0``/``inf``); the new knob assumes ``area ~ knob ** exponent`` and falls back to bisecting
    the bracket (geometrically when both ends are known) when that guess leaves it.
    """
    ops = _ops(knob, area)
    boundary = target_px if steering.bracket_by == "target" else lo_px
    too_small = area < boundary
    k_low = ops.where(too_small, ops.maximum(k_low, knob), k_low)
    k_high = ops.where(too_small, k_high, ops.minimum(k_high, knob))
    at_bound = ops.logical_or(
        ops.logical_and(area < lo_px, knob >= upper), ops.logical_and(area > hi_px, knob <= lower)
    )
    measured = area > 0
    ratio = target_px / ops.where(measured, area, 1)
    if steering.exponent == 2.0:
        factor = ops.sqrt(ratio) if steering.root == "sqrt" else ratio ** 0.5
    else:
        factor = ratio ** (1.0 / steering.exponent)
    proposal = ops.where(measured, knob * factor, knob * 2.0)
    high_known = k_high < math.inf
    both_known = ops.logical_and(high_known, k_low > 0)
    bisection = ops.where(
        both_known, ops.sqrt(k_low * k_high), ops.where(high_known, (k_low + k_high) / 2.0, knob * 2.0)
    )
    inside = ops.logical_and(k_low < proposal, proposal < k_high)
    proposal = ops.minimum(ops.maximum(ops.where(inside, proposal, bisection), lower), upper)
    collapsed = ops.logical_and(both_known, k_high / ops.where(both_known, k_low, 1) < 1.0005)
    stuck = ops.logical_or(ops.logical_or(at_bound, collapsed), proposal == knob)
    return Correction(proposal, k_low, k_high, stuck)


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
    lower: float = 0.0,
    upper: float = math.inf,
    steering: Steering = Steering(),
) -> Steered[T]:
    """Search a knob (changed area non-decreasing in it) until ``lo_px <= area <= hi_px``.

    ``render_at(knob) -> (area, payload)`` renders and measures; ``correct`` proposes the next
    knob. Stops once the area is in the bin and ``steering.accept``s it, or when the refinement
    budget after the first in-bin render is spent, so sizes stay spread over the bin.
    Returns the in-bin result closest to the target, or a ``Steered`` with ``payload=None``.
    """
    knob = min(max(start, lower), upper)
    k_low, k_high = steering.bracket(lower, upper)
    best_area = -1
    found: tuple[int, float, T, int] | None = None
    first_in_bin: int | None = None
    steps = 0
    for step in range(steering.max_steps):
        steps = step + 1
        area, payload = render_at(knob)
        if best_area < 0 or abs(area - target_px) < abs(best_area - target_px):
            best_area = area
        if lo_px <= area <= hi_px:
            if found is None or abs(area - target_px) < abs(found[0] - target_px):
                found = (area, knob, payload, steps)
            first_in_bin = step if first_in_bin is None else first_in_bin
            if steering.refine_steps is None:
                spent = step >= steering.max_steps // 2
            else:
                spent = step - first_in_bin >= steering.refine_steps
            if steering.accept(area, target_px, lo_px, hi_px) or spent:
                break
        step_result = correct(
            knob, area, target_px, lo_px, hi_px, k_low, k_high, lower=lower, upper=upper, steering=steering
        )
        k_low, k_high = step_result.k_low, step_result.k_high
        if step_result.stuck:
            break
        knob = step_result.knob
    if found is None:
        return Steered(None, knob, best_area, steps, best_area)
    area, knob, payload, at_step = found
    return Steered(payload, knob, area, at_step, best_area)


def _said(hint: str | Callable[[], str]) -> str:
    return hint() if callable(hint) else hint


def size_error(
    what: str, size_bin: SizeBin, scene: Scene, best_area: int, hint: str | Callable[[], str], lo_px: int, hi_px: int,
) -> SizeBinError:
    """The ``SizeBinError`` of a search that found no render in ``size_bin`` (``lo_px``-``hi_px``
    changed pixels); ``hint`` says what to try (a function is asked only now, when it can look at
    what the search rendered)."""
    return SizeBinError(
        f"could not bring a {what} anomaly into size bin {size_bin.name} ({lo_px}-{hi_px} changed "
        f"pixels of {scene.height * scene.width}); closest was {max(best_area, 0)} pixels. {_said(hint)}"
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


def fit(
    scene: Scene,
    spec: Any,
    render_at: Callable[[float, int], tuple[int, T]],
    *,
    natural: float = 1.0,
    start: float | Callable[[int], float] = 1.0,
    lower: float = 1e-3,
    upper: float = math.inf,
    hint: str | Callable[[], str] = "try another seed or a larger bin",
    attempts: int = PLACEMENT_ATTEMPTS,
    steering: Steering = Steering(),
    size_bin: SizeBin | None = None,
    what: str | None = None,
) -> tuple[T, dict[str, Any]]:
    """Render a spec at its drawn size, or steer it into its size bin: every method's size control.

    ``render_at(knob, attempt) -> (changed pixels, payload)``; ``attempt`` selects another
    placement (or noise seed) when one cannot be brought into the bin. ``start`` is the first
    knob, or a function of the attempt. ``size_bin`` defaults to ``spec.size_bin``; without a
    size bin the knob is ``natural`` and the only requirement is that at least one pixel
    changes. Returns the payload and the JSON values to record (``size_knob``,
    ``placement_attempt``, ``scale_steps``); raises ``SizeBinError`` naming ``what`` (default
    the method) and ``hint`` when every attempt fails.
    """
    size_bin = spec.size_bin if size_bin is None else size_bin
    what = spec.method if what is None else what
    if size_bin is None:
        for attempt in range(attempts):
            area, payload = render_at(natural, attempt)
            if area > 0:
                return payload, {"size_knob": float(natural), "placement_attempt": attempt}
        raise SizeBinError(
            f"{what}: {attempts} placements changed no stored pixel (the blended content "
            f"equals the image there); {_said(hint)}"
        )
    lo_px, hi_px, target_px = pixel_targets(size_bin, spec.params["target_fraction"], scene)
    best_area: int | None = None
    for attempt in range(attempts):
        result = steer(
            lambda knob: render_at(knob, attempt),
            lo_px=lo_px,
            hi_px=hi_px,
            target_px=target_px,
            start=start(attempt) if callable(start) else start,
            lower=lower,
            upper=upper,
            steering=steering,
        )
        if result.payload is not None:
            return result.payload, {
                "size_knob": float(result.knob),
                "placement_attempt": attempt,
                "scale_steps": result.steps,
            }
        if best_area is None or abs(result.best_area - target_px) < abs(best_area - target_px):
            best_area = result.best_area
    raise size_error(what, size_bin, scene, best_area or 0, hint, lo_px, hi_px)


@dataclass(frozen=True)
class _Ops:
    """The few elementwise operations ``correct`` needs, for one array kind."""

    where: Callable[[Any, Any, Any], Any]
    maximum: Callable[[Any, Any], Any]
    minimum: Callable[[Any, Any], Any]
    sqrt: Callable[[Any], Any]
    abs: Callable[[Any], Any]
    logical_and: Callable[[Any, Any], Any]
    logical_or: Callable[[Any, Any], Any]


# Python floats keep the exact arithmetic the size search had before it was made elementwise
# (math.sqrt and float ** are not bit-identical to numpy's or torch's vectorised versions).
_SCALAR_OPS = _Ops(
    where=lambda c, a, b: a if c else b,
    maximum=max,
    minimum=min,
    sqrt=math.sqrt,
    abs=abs,
    logical_and=lambda a, b: bool(a) and bool(b),
    logical_or=lambda a, b: bool(a) or bool(b),
)
_NUMPY_OPS = _Ops(np.where, np.maximum, np.minimum, np.sqrt, np.abs, np.logical_and, np.logical_or)


def _ops(*values: Any) -> _Ops:
    for value in values:
        if isinstance(value, np.ndarray):
            return _NUMPY_OPS
        if type(value).__module__.startswith("torch"):
            import torch  # only when the caller already works with torch tensors

            return _Ops(torch.where, torch.maximum, torch.minimum, torch.sqrt, torch.abs, torch.logical_and, torch.logical_or)
    return _SCALAR_OPS


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
