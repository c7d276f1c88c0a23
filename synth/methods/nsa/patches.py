"""What NSA's numpy and batched renderers share: the object masks, the 8-bit source and
the patch resized to its box (OpenCV's area/bilinear filters), and the size search's bounds."""

from __future__ import annotations

import cv2
import numpy as np

from ...foreground import foreground_mask
from ...method import Scene

#: Largest size knob of the size search (a multiple of the first guess).
SCALE_UPPER = 64.0
#: Smallest patch side: seamlessClone fails on masks thinner than 3 pixels inside the zero ring.
MIN_PATCH = 5


def object_masks(scene: Scene, source: np.ndarray, setting: str | list[float]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(destination, source) object masks, or (None, None) when the constraints are off."""
    if setting == "off":
        return None, None
    if setting == "estimate":
        dst = scene.foreground if scene.foreground is not None else foreground_mask(scene.image)
        return dst, (dst if source is scene.image else foreground_mask(source))
    background, threshold = float(setting[0]), float(setting[1])
    dst = scene.foreground if scene.foreground is not None else foreground_mask(scene.image, background, threshold)
    return dst, foreground_mask(source, background, threshold)


def resized_patch(patch: np.ndarray, h: int, w: int) -> np.ndarray:
    """An 8-bit source patch ``(ph, pw, 3)`` resized to its ``h x w`` destination box (area
    filter when it shrinks, bilinear when it grows)."""
    shrink = h * w < patch.shape[0] * patch.shape[1]
    return cv2.resize(patch, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def to_u8(image: np.ndarray) -> np.ndarray:
    """float ``(H, W, C)`` in [0, 1] -> uint8 ``(H, W, 3)`` (gray repeated) for OpenCV."""
    u8 = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if u8.shape[2] == 1:
        u8 = np.repeat(u8, 3, axis=2)
    return np.ascontiguousarray(u8)
