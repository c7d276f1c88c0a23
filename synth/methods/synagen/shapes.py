"""SYNAGEN shape masks on a square working panel ("square of interest").

``sample_shape(rng, shape)`` draws the structural parameters (a JSON-able dict); ``panel_mask``
renders them into a bool ``(P, P)`` mask. Per-pixel noise comes from ``params["noise_seed"]``,
so rendering is deterministic. Values follow ../../docs (algorithms.md §1.1-1.2):

* spattered: clusters of rectangles (core 3 units, border 2, background 1) x U[0,1) noise,
  Gaussian blur, threshold at 1.5 units.
* elongated: the same with unit 0.3, wide flat cores, centres spread along one axis.
* rough: a spattered mask times (salt noise | straight lines with parallel copies), blurred.
* complex: a spattered mask times binarised upscaled noise, blurred.

Interpretation notes: ``spread`` is the full width of the window of further centres (they lie
within +-spread/2 of the first), so clusters stay on the panel; centres are clipped to [0.05, 0.95].
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

SHAPES = ("spattered", "elongated", "rough", "complex")

BASE_UNIT = 0.2


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _sample_clusters(rng: np.random.Generator, elongated: bool) -> dict[str, Any]:
    inner_w = _u(rng, 0.03, 0.20)
    inner_h = 0.006 / inner_w
    border = _u(rng, 0.03, 0.10)
    spread = _u(rng, 0.5, 0.75)
    count = int(rng.integers(5, 15))
    first = [_u(rng, 0.4, 0.6), _u(rng, 0.4, 0.6)]
    if elongated:
        inner_w, inner_h, border = inner_w * 4, inner_h * 0.25, border * 0.25
        half_x, half_y = 4 * spread / 2, 0.1 * spread / 2
    else:
        half_x = half_y = spread / 2
    centres = [first]
    for _ in range(count - 1):
        centres.append([first[0] + _u(rng, -half_x, half_x), first[1] + _u(rng, -half_y, half_y)])
    return {
        "inner_w": inner_w,
        "inner_h": inner_h,
        "border": border,
        "spread": spread,
        "centres": centres,
        "unit": 0.3 if elongated else BASE_UNIT,
        "elongated": elongated,
    }


def sample_shape(rng: np.random.Generator, shape: str) -> dict[str, Any]:
    """Draw the structural parameters of one shape (all JSON types)."""
    if shape == "rough":
        panel = int(rng.integers(600, 900))
    else:
        panel = int(rng.integers(500, 800))
    params: dict[str, Any] = {"panel": panel}
    params["clusters"] = _sample_clusters(rng, elongated=(shape == "elongated"))
    if shape == "rough":
        lines = []
        flip = bool(rng.random() < 0.5)
        for _ in range(int(rng.integers(1, 5))):
            start = [_u(rng, 0.0, 0.4), _u(rng, 0.0, 0.4)]
            end = [_u(rng, 0.6, 1.0), _u(rng, 0.6, 1.0)]
            copies = int(rng.integers(3, 10))
            shifts = [[_u(rng, -0.03, 0.03), _u(rng, -0.03, 0.03)] for _ in range(copies)]
            lines.append({"start": start, "end": end, "shifts": shifts})
        params.update(flip=flip, lines=lines, salt_threshold=_u(rng, 0.7, 0.95))
    elif shape == "complex":
        params.update(grid=_u(rng, 0.03, 0.1), binarize=_u(rng, 0.3, 0.6))
    params["noise_seed"] = int(rng.integers(0, 2**31 - 1))
    return params


def _odd(x: float) -> int:
    k = max(3, int(round(x)))
    return k if k % 2 else k + 1


def _cluster_field(panel: int, c: dict[str, Any]) -> np.ndarray:
    unit = c["unit"]
    field = np.full((panel, panel), unit, dtype=np.float32)
    if c["elongated"]:
        centre_lim, core_lim, outer_lim = (0.1, 0.9), (0.15, 0.85), (0.05, 0.95)
    else:
        centre_lim, core_lim, outer_lim = (0.05, 0.95), (0.0, 1.0), (0.0, 1.0)
    for cx, cy in c["centres"]:
        cx = min(max(cx, centre_lim[0]), centre_lim[1])
        cy = min(max(cy, centre_lim[0]), centre_lim[1])
        for half_w, half_h, lim, add in (
            (c["inner_w"] + c["border"], c["inner_h"] + c["border"], outer_lim, unit),
            (c["inner_w"], c["inner_h"], core_lim, 2 * unit),
        ):
            x0 = int(round(max(cx - half_w, lim[0]) * panel))
            x1 = int(round(min(cx + half_w, lim[1]) * panel))
            y0 = int(round(max(cy - half_h, lim[0]) * panel))
            y1 = int(round(min(cy + half_h, lim[1]) * panel))
            if x1 > x0 and y1 > y0:
                field[y0:y1, x0:x1] += add
    return field


def _primary(panel: int, clusters: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    field = _cluster_field(panel, clusters)
    field *= rng.random((panel, panel), dtype=np.float32)
    k = _odd(0.05 * panel)
    field = cv2.GaussianBlur(field, (k, k), 0.07 * panel, borderType=cv2.BORDER_CONSTANT)
    return field > 1.5 * BASE_UNIT if not clusters["elongated"] else field > clusters["unit"]


def _rough(panel: int, params: dict[str, Any], base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ys, xs = np.nonzero(base)
    salt = rng.random((panel, panel), dtype=np.float32) > params["salt_threshold"]
    if len(xs) == 0:
        return base
    bx0, bx1, by0, by1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    lines = np.zeros((panel, panel), dtype=np.uint8)
    bw, bh = bx1 - bx0, by1 - by0
    for line in params["lines"]:
        (sx, sy), (ex, ey) = line["start"], line["end"]
        if params["flip"]:  # the other diagonal direction
            sy, ey = 1.0 - sy, 1.0 - ey
        for dx, dy in [[0.0, 0.0], *line["shifts"]]:
            p0 = (int(round(bx0 + (sx + dx) * bw)), int(round(by0 + (sy + dy) * bh)))
            p1 = (int(round(bx0 + (ex + dx) * bw)), int(round(by0 + (ey + dy) * bh)))
            cv2.line(lines, p0, p1, 1, thickness=2)
    combined = np.maximum(salt.astype(np.float32), lines.astype(np.float32)) * base
    combined = cv2.GaussianBlur(combined, (3, 3), 1.0, borderType=cv2.BORDER_CONSTANT)
    return combined > 0.3


def _complex(panel: int, params: dict[str, Any], base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = max(2, int(round(params["grid"] * panel)))
    grid = rng.random((side, side), dtype=np.float32)
    up = cv2.resize(grid, (panel, panel), interpolation=cv2.INTER_LINEAR) > params["binarize"]
    combined = (up & base).astype(np.float32)
    k = _odd(0.05 * panel)
    combined = cv2.GaussianBlur(combined, (k, k), 0.01 * panel, borderType=cv2.BORDER_CONSTANT)
    return combined > 0.45


def panel_mask(shape: str, params: dict[str, Any]) -> np.ndarray:
    """Render a shape's bool ``(P, P)`` panel mask from its parameters (deterministic, read-only)."""
    return _panel_cached(shape, json.dumps(params, sort_keys=True))


@lru_cache(maxsize=16)
def _panel_cached(shape: str, params_json: str) -> np.ndarray:
    # The protocol renders each drawn shape at five sizes; rendering the panel once saves ~80 %.
    params = json.loads(params_json)
    panel = params["panel"]
    rng = np.random.default_rng(params["noise_seed"])
    base = _primary(panel, params["clusters"], rng)
    if shape == "rough":
        mask = _rough(panel, params, base, rng)
    elif shape == "complex":
        mask = _complex(panel, params, base, rng)
    else:
        mask = base
    mask.setflags(write=False)
    return mask


def rotated_shape(shape: str, params: dict[str, Any], angle: float) -> np.ndarray:
    """The panel mask rotated by ``angle`` degrees, cropped to its extent: float32 in [0, 1].

    Values are the bilinear coverage of the rotated binary mask (threshold at 0.5 after any
    resize). A mask that the thresholds emptied falls back to a disk, so rendering never fails here.
    """
    return _rotated_cached(shape, json.dumps(params, sort_keys=True), float(angle))


@lru_cache(maxsize=16)
def _rotated_cached(shape: str, params_json: str, angle: float) -> np.ndarray:
    mask = _panel_cached(shape, params_json)
    bx, by, bw, bh = cv2.boundingRect(mask.view(np.uint8))
    if bw == 0 or bh == 0:
        crop = np.zeros((64, 64), np.float32)
        cv2.circle(crop, (32, 32), 30, 1.0, -1)
    else:
        crop = mask[by : by + bh, bx : bx + bw].astype(np.float32)
    h, w = crop.shape
    rot = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    cos, sin = abs(rot[0, 0]), abs(rot[0, 1])
    out_w = int(math.ceil(h * sin + w * cos)) + 2
    out_h = int(math.ceil(h * cos + w * sin)) + 2
    rot[0, 2] += out_w / 2.0 - w / 2.0
    rot[1, 2] += out_h / 2.0 - h / 2.0
    rotated = cv2.warpAffine(crop, rot, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    bx, by, bw, bh = cv2.boundingRect((rotated > 0).view(np.uint8))
    rotated = np.ascontiguousarray(rotated[by : by + bh, bx : bx + bw])
    rotated.setflags(write=False)
    return rotated
