"""Images for people to look at: 8-bit RGB previews, mask contours, anomaly-map heat overlays, drawn regions.

Everything here returns ``uint8 (H, W, 3)`` RGB arrays that a browser shows as they are. These are
previews only: 16-bit images are shown scaled to 8 bits and alpha is composited over a grey
checkerboard, while the files a user downloads keep the original data (``synth.export``).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .image import to_float

#: red, as in the paper's figures (mask contours)
CONTOUR_RGB = (255, 0, 0)


def display_rgb(image: np.ndarray, max_side: int | None = None) -> np.ndarray:
    """``uint8 (h, w, 3)`` RGB preview of any image ``synth`` accepts (gray/RGB/RGBA, 8/16-bit, float).

    Alpha is composited over a light checkerboard (so transparency stays visible). With
    ``max_side`` the preview is shrunk (area interpolation) so that its longer side is at most that.
    """
    colour, alpha, _ = to_float(image)
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    if alpha is not None:
        a = alpha[:, :, :1].astype(np.float32)
        a = a / (65535.0 if alpha.dtype == np.uint16 else 255.0 if alpha.dtype == np.uint8 else 1.0)
        colour = colour * a + _checkerboard(*colour.shape[:2]) * (1.0 - a)
    out = np.rint(np.clip(colour, 0.0, 1.0) * 255.0).astype(np.uint8)
    return shrink(out, max_side)


def _checkerboard(height: int, width: int, cell: int = 8) -> np.ndarray:
    ys, xs = np.indices((height, width))
    board = np.where(((ys // cell) + (xs // cell)) % 2 == 0, 0.85, 0.65).astype(np.float32)
    return board[:, :, None]


def shrink(image: np.ndarray, max_side: int | None, nearest: bool = False) -> np.ndarray:
    """``image`` scaled down so its longer side is <= ``max_side`` (unchanged when already small)."""
    if max_side is None:
        return image
    height, width = image.shape[:2]
    scale = max_side / float(max(height, width))
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return cv2.resize(image, size, interpolation=interp)


def contour_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    max_side: int | None = None,
    colour: tuple[int, int, int] = CONTOUR_RGB,
) -> np.ndarray:
    """``uint8 (h, w, 3)``: the preview of ``image`` with the outline of bool ``mask (H, W)`` drawn on it.

    The line is about 1/256 of the preview's longer side (at least 1 px) so that it stays visible
    at any size; tiny anomalies still get a visible outline.
    """
    rgb = display_rgb(image, max_side)
    small = shrink(mask.astype(np.uint8) * 255, max_side)
    # area interpolation turns small specks into grey; keep every pixel that had any anomaly
    small = (small > 0).astype(np.uint8)
    contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(max(rgb.shape[:2]) / 256))
    out = np.ascontiguousarray(rgb)
    cv2.drawContours(out, contours, -1, colour, thickness, lineType=cv2.LINE_8)
    return out


def mask_preview(mask: np.ndarray, max_side: int | None = None) -> np.ndarray:
    """``uint8 (h, w, 3)`` white-on-black preview of bool ``mask (H, W)`` (specks never vanish)."""
    small = shrink(mask.astype(np.uint8) * 255, max_side)
    small = np.where(small > 0, 255, 0).astype(np.uint8)
    return np.repeat(small[:, :, None], 3, axis=2)


def heatmap_overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    low: float,
    high: float,
    opacity: float = 0.5,
    max_side: int | None = None,
) -> np.ndarray:
    """``uint8 (h, w, 3)``: ``anomaly_map (H, W)`` in the inferno colour map, blended over ``image``.

    The map is scaled linearly from ``low`` (transparent) to ``high`` (full ``opacity``); pass the
    same ``low``/``high`` for several images so that their colours compare. Values below ``low``
    leave the image as it is, so that a normal image looks clean.
    """
    from matplotlib import colormaps

    rgb = display_rgb(image).astype(np.float32) / 255.0
    amap = np.asarray(anomaly_map, dtype=np.float32)
    if amap.shape != rgb.shape[:2]:
        amap = cv2.resize(amap, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    span = max(float(high) - float(low), 1e-12)
    level = np.clip((amap - float(low)) / span, 0.0, 1.0)
    colours = colormaps["inferno"](level)[:, :, :3].astype(np.float32)
    weight = (opacity * level)[:, :, None]
    out = rgb * (1.0 - weight) + colours * weight
    return shrink(np.rint(out * 255.0).astype(np.uint8), max_side)


def region_from_layers(layers: Sequence[np.ndarray], height: int, width: int) -> np.ndarray | None:
    """bool ``(height, width)`` region painted in an editor's RGBA layers, or ``None`` when nothing is painted.

    A pixel is in the region when any layer is opaque there (alpha >= 128). Layers drawn on a
    smaller (preview) canvas are scaled up to the image with nearest-neighbour interpolation.
    """
    region = np.zeros((height, width), bool)
    for layer in layers:
        if layer is None:
            continue
        arr = np.asarray(layer)
        if arr.ndim != 3 or arr.shape[2] != 4:
            continue  # a layer without alpha carries no brush strokes
        painted = (arr[:, :, 3] >= 128).astype(np.uint8)
        if painted.shape != (height, width):
            painted = cv2.resize(painted, (width, height), interpolation=cv2.INTER_NEAREST)
        region |= painted.astype(bool)
    return region if region.any() else None
