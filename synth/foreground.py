"""Foreground (object) masks from a background brightness threshold, as in NSA and the
defect-map paper: ``|mean over channels - background| > threshold``, then a median filter to
remove the grain that a hard threshold leaves on textured objects.

Images are float32 ``(H, W, C)`` in [0, 1] (C = 1 or 3); masks are bool ``(H, W)``.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import InvalidParameterError

#: Border width (fraction of the shorter side) sampled to estimate the background brightness.
BORDER_FRACTION = 0.05
#: Default brightness threshold (0-1 units) between object and background.
DEFAULT_THRESHOLD = 0.1
#: A border whose brightness spread (interquartile range) exceeds this is not a flat background:
#: the image is treated as a texture and everything is foreground.
FLAT_BORDER_SPREAD = 0.08
#: With an estimated background, a mask that claims more than this share of the border is the
#: grain of a low-contrast texture, not an object: everything is foreground then.
MAX_BORDER_FOREGROUND = 0.1


def brightness(image: np.ndarray) -> np.ndarray:
    """Mean over channels, float32 ``(H, W)`` in [0, 1] (NSA's ``mean(RGB)``)."""
    if image.ndim == 2:
        return image.astype(np.float32, copy=False)
    return image.mean(axis=2, dtype=np.float32)


def _border(values: np.ndarray) -> np.ndarray:
    height, width = values.shape
    band = max(1, int(round(BORDER_FRACTION * min(height, width))))
    return np.concatenate(
        [values[:band].ravel(), values[-band:].ravel(), values[:, :band].ravel(), values[:, -band:].ravel()]
    )


def estimate_background(image: np.ndarray) -> float | None:
    """Background brightness (0-1) from the image border, or ``None`` when the border is not flat.

    A photographed object on a plain background has a border of nearly one brightness (its
    median is the background); a texture fills the border with varied values, which is
    reported as ``None`` ("no background").
    """
    border = _border(brightness(image))
    q1, median, q3 = np.percentile(border, [25, 50, 75])
    if q3 - q1 > FLAT_BORDER_SPREAD:
        return None
    return float(median)


def foreground_mask(
    image: np.ndarray,
    background: float | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    median_size: int = 7,
) -> np.ndarray:
    """bool ``(H, W)``: pixels whose brightness differs from ``background`` by more than ``threshold``.

    ``image``       float ``(H, W, C)`` or ``(H, W)`` in [0, 1].
    ``background``  brightness of the background in [0, 1]; ``None`` estimates it from the
                    border (``estimate_background``). With an estimate, an image whose border is
                    not flat, or whose mask covers more than 10 % of the border, is a texture and
                    the whole image is foreground (pass ``background`` to force a threshold).
    ``threshold``   in (0, 1): distance from the background that counts as object.
    ``median_size`` odd kernel of the median filter (1 = off); NSA uses 7.

    When the threshold leaves no foreground pixel at all the whole image is returned as
    foreground, so callers never receive an empty mask.
    """
    if not 0.0 < threshold < 1.0:
        raise InvalidParameterError(f"foreground threshold must lie in (0, 1), got {threshold}")
    if median_size < 1 or median_size % 2 == 0:
        raise InvalidParameterError(f"median_size must be a positive odd integer, got {median_size}")
    values = brightness(image)
    estimated = background is None
    if estimated:
        background = estimate_background(image)
        if background is None:
            return np.ones(values.shape, bool)
    elif not 0.0 <= background <= 1.0:
        raise InvalidParameterError(f"background brightness must lie in [0, 1], got {background}")
    mask = (np.abs(values - np.float32(background)) > threshold).astype(np.uint8)
    if median_size > 1:
        mask = cv2.medianBlur(mask, int(median_size))
    mask = mask.astype(bool)
    if estimated and _border(mask).mean() > MAX_BORDER_FOREGROUND:
        return np.ones(values.shape, bool)
    if not mask.any():
        return np.ones(values.shape, bool)
    return mask
