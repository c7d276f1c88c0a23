"""Region masks: the pixels where an anomaly may appear (e.g. the object, not the background)."""

from __future__ import annotations

import numpy as np

from .errors import RegionError


def normalize_region(region: np.ndarray | None, height: int, width: int) -> np.ndarray | None:
    """Return a ``bool (H, W)`` allowed-pixel mask, or ``None`` for "everywhere".

    Accepts bool, uint8, uint16 or float masks, ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3|4)``.
    A pixel is allowed when any colour channel is at least half of the dtype's range (>= 128 for
    uint8, >= 0.5 for floats, True for bool), which tolerates JPEG noise around 0/255 masks.
    """
    if region is None:
        return None
    region = np.asarray(region)
    if region.ndim == 3:
        if region.shape[2] == 4:  # RGBA mask image: ignore alpha
            region = region[:, :, :3]
        region = region.max(axis=2)
    if region.ndim != 2:
        raise RegionError(f"region mask must be (H, W) or (H, W, C), got shape {region.shape}")
    if region.shape != (height, width):
        raise RegionError(
            f"region mask is {region.shape[1]}x{region.shape[0]} but the image is {width}x{height}; "
            "they must have the same size"
        )
    if region.dtype == bool:
        allowed = region
    elif region.dtype == np.uint8:
        allowed = region >= 128
    elif region.dtype == np.uint16:
        allowed = region >= 32768
    elif region.dtype.kind == "f":
        allowed = region >= 0.5
    elif region.dtype.kind in "iu":
        allowed = region > 0
    else:
        raise RegionError(f"region mask dtype {region.dtype} is not supported")
    allowed = np.ascontiguousarray(allowed, dtype=bool)
    if not allowed.any():
        raise RegionError(
            "region mask has 0 allowed pixels; pass a mask whose allowed pixels are white "
            "(>= 128 in 8-bit) covering at least the anomaly size"
        )
    return allowed
