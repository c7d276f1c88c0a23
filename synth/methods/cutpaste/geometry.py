"""What CutPaste's numpy and batched renderers share: where the patch is cut from and how the
scar's rotation maps it (OpenCV's matrix), so both paths place and rotate alike."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ...method import Scene


def cut_box(scene: Scene, position: list[float], h: int, w: int) -> tuple[int, int, int, int]:
    """The ``h x w`` box the patch is cut from, at ``position`` (fractions of the free range)."""
    y0 = int(position[0] * (scene.height - h + 1))
    x0 = int(position[1] * (scene.width - w + 1))
    y0, x0 = min(y0, scene.height - h), min(x0, scene.width - w)
    return y0, y0 + h, x0, x0 + w


def rotation_box(h: int, w: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix, footprint)`` of rotating an ``h x w`` patch by ``angle`` degrees into its bounding
    box: OpenCV's float64 ``(2, 3)`` affine matrix, and the bool footprint ``(fh, fw)`` of the patch
    in that box (never empty). The batched renderer uses it too, so both rotate alike."""
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    out_w = max(1, int(math.ceil(h * sin + w * cos)))
    out_h = max(1, int(math.ceil(h * cos + w * sin)))
    matrix[0, 2] += out_w / 2.0 - w / 2.0
    matrix[1, 2] += out_h / 2.0 - h / 2.0
    ones = np.ones((h, w), np.float32)
    footprint = cv2.warpAffine(ones, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0.0) >= 0.5
    if not footprint.any():  # a 1-pixel strip can vanish under interpolation
        footprint[out_h // 2, out_w // 2] = True
    return matrix, footprint
