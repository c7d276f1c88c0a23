"""The second normal image that NSA, FPI and foreground Perlin blend from.

The folder protocol passes other images of the same folder as ``Scene.partners``; they may have
any size and are resized to the image. Without a partner a method falls back to the image
itself (NSA, which shifts and resizes its patches) or to the image rotated by 180 degrees (FPI
and foreground Perlin, whose same-location blend of an image with itself would change nothing).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from .method import Scene

Fallback = Literal["self", "rotate180"]


def partner_image(scene: Scene, index: int, fallback: Fallback) -> tuple[np.ndarray, str]:
    """float32 ``(H, W, C)`` partner for the scene and a short description for the params.

    ``index`` selects among ``scene.partners`` (modulo their count); ``-1`` or no partners use
    ``fallback``.
    """
    if scene.partners and index >= 0:
        partner = scene.partners[index % len(scene.partners)]
        if partner.shape[:2] != (scene.height, scene.width):
            shrink = partner.shape[0] * partner.shape[1] > scene.height * scene.width
            partner = cv2.resize(
                partner,
                (scene.width, scene.height),
                interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
            )
            if partner.ndim == 2:
                partner = partner[:, :, None]
        return np.ascontiguousarray(partner, dtype=np.float32), f"partner[{index % len(scene.partners)}]"
    if fallback == "self":
        return scene.image, "self"
    return np.ascontiguousarray(scene.image[::-1, ::-1]), "self_rotated_180"


def partner_choice(rng: np.random.Generator, scene: Scene) -> int:
    """Index of the partner to use (``-1`` when the scene has none)."""
    return int(rng.integers(len(scene.partners))) if scene.partners else -1
