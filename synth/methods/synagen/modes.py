"""SYNAGEN pixel manipulations (algorithms.md §1.5). Values are float32 in [0, 1].

Factor draw: with p = 0.5 one gray factor for all channels, else one per channel; each factor is
U(0.3, 0.8) (darker) with p = 0.5, else U(1.2, 1.5) (brighter). "Upscaled noise" is a U[0, 1) grid
of side in [50, H) resized bilinearly to the image size.

The multiplicative noise of ``transparent_noise`` / ``transparent_color_noise`` lies in
``noise_range``, default [1.0, 1.5) as in the reference implementation (the paper text says
[0.5, 1.5]; pass ``noise_range=(0.5, 1.5)`` to ``Synagen`` for that).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import cv2
import numpy as np

MODES = (
    "transparent",
    "transparent_noise",
    "transparent_color_noise",
    "mean_noise",
    "gray_noise",
    "texture",
)
#: Modes drawn when the caller does not name one (``texture`` needs user images).
DEFAULT_MODES = MODES[:5]


def _factor(rng: np.random.Generator) -> float:
    if rng.random() < 0.5:
        return float(rng.uniform(0.3, 0.8))
    return float(rng.uniform(1.2, 1.5))


def sample_mode(
    rng: np.random.Generator,
    mode: str,
    height: int,
    noise_range: tuple[float, float],
    n_textures: int,
) -> dict[str, Any]:
    """Draw a mode's parameters (JSON types): factors, noise grid, noise seed, texture choice."""
    if mode == "transparent_noise":
        gray = True
    elif mode == "transparent_color_noise":
        gray = False
    else:
        gray = bool(rng.random() < 0.5)
    if gray:
        factors = [_factor(rng)] * 3
    else:
        factors = [_factor(rng) for _ in range(3)]
    lo_side = min(50, max(2, height - 1))
    params: dict[str, Any] = {
        "factors": factors,
        "gray_factor": gray,
        "noise_grid": int(rng.integers(lo_side, max(lo_side + 1, height))),
        "noise_seed": int(rng.integers(0, 2**31 - 1)),
        "noise_range": [float(noise_range[0]), float(noise_range[1])],
    }
    if mode == "texture":
        params["texture_index"] = int(rng.integers(n_textures))
        params["texture_offset"] = [float(rng.random()), float(rng.random())]
    return params


def noise_field(params: dict[str, Any], height: int, width: int) -> np.ndarray:
    """float32 ``(H, W)`` upscaled U[0, 1) noise for the whole image (read-only: the protocol
    renders one drawn anomaly in five sizes, which share it)."""
    return _noise_field(int(params["noise_grid"]), int(params["noise_seed"]), height, width)


@lru_cache(maxsize=4)
def _noise_field(side: int, seed: int, height: int, width: int) -> np.ndarray:
    grid = np.random.default_rng(seed).random((side, side), dtype=np.float32)
    field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
    field.setflags(write=False)
    return field


def texture_field(texture: np.ndarray, offset: list[float], height: int, width: int, channels: int) -> np.ndarray:
    """The texture scaled to cover the image and cropped at ``offset`` -> float32 ``(H, W, C)``."""
    th, tw = texture.shape[:2]
    scale = max(height / th, width / tw)
    new_w, new_h = max(width, int(np.ceil(tw * scale))), max(height, int(np.ceil(th * scale)))
    resized = cv2.resize(texture, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    x0 = int(offset[0] * (new_w - width + 1)) if new_w > width else 0
    y0 = int(offset[1] * (new_h - height + 1)) if new_h > height else 0
    x0, y0 = min(x0, new_w - width), min(y0, new_h - height)
    crop = resized[y0 : y0 + height, x0 : x0 + width]
    if channels == 1 and crop.shape[2] == 3:
        crop = (crop[:, :, 0] * 0.299 + crop[:, :, 1] * 0.587 + crop[:, :, 2] * 0.114)[:, :, None]
    return np.ascontiguousarray(crop, dtype=np.float32)


def manipulate(
    mode: str,
    params: dict[str, Any],
    source: np.ndarray,
    inside: np.ndarray,
    noise: np.ndarray | None,
    texture: np.ndarray | None,
) -> np.ndarray:
    """Manipulated values for a window: ``source`` float32 ``(h, w, C)``, ``inside`` bool ``(h, w)``.

    Returns float32 ``(h, w, C)`` clipped to [0, 1]; only pixels under ``inside`` are used later.
    """
    channels = source.shape[2]
    factors = np.asarray(params["factors"][:channels] if channels == 3 else params["factors"][:1], np.float32)
    lo, hi = params["noise_range"]
    if mode == "transparent":
        out = source * factors
    elif mode in ("transparent_noise", "transparent_color_noise"):
        n = (np.float32(lo) + np.float32(hi - lo) * noise)[:, :, None]
        out = source * factors * n
    elif mode == "mean_noise":
        mean = source[inside].mean(axis=0) if inside.any() else source.reshape(-1, channels).mean(axis=0)
        out = (mean * factors)[None, None, :] + np.float32(0.2) * noise[:, :, None]
    elif mode == "gray_noise":
        out = np.repeat(noise[:, :, None], channels, axis=2)
    elif mode == "texture":
        out = texture
    else:  # validated in sample(); a spec edited by hand can still get here
        raise ValueError(f"unknown SYNAGEN mode {mode!r}")
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
