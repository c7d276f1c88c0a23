"""Perlin and fractal (multi-octave) gradient noise, seeded, any image size.

A small generator usable on its own (like anomalib's ``perlin.py``): every function takes an
explicit ``seed`` (an ``int``, a list of ints, or a ``numpy.random.Generator``) and never touches global random state,
so the same seed gives the same bytes.

>>> import numpy as np
>>> from synth.perlin import perlin_noise
>>> n = perlin_noise((120, 200), (4, 8), seed=3)
>>> n.shape, n.dtype
((120, 200), dtype('float32'))

References: K. Perlin, "Improving noise", SIGGRAPH 2002 (the quintic fade curve); DRAEM
(Zavrtanik et al., ICCV 2021) thresholds such noise at 0.5 to make anomaly masks.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

#: Samples per noise period before resizing to the requested size (see ``perlin_noise``).
_SAMPLES_PER_PERIOD = 16


def _rng(seed: "int | Sequence[int] | np.random.Generator") -> np.random.Generator:
    """A generator from an int, a sequence of ints (entropy for a ``SeedSequence``) or itself."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (list, tuple)):
        return np.random.default_rng([int(s) for s in seed])
    return np.random.default_rng(int(seed))


def _fade(t: np.ndarray) -> np.ndarray:
    # 6t^5 - 15t^4 + 10t^3: zero first and second derivative at the lattice points
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(
    shape: tuple[int, int],
    res: tuple[int, int],
    seed: "int | np.random.Generator",
) -> np.ndarray:
    """2-D gradient noise of ``shape = (H, W)`` with ``res = (ry, rx)`` periods along each axis.

    Returns float32 ``(H, W)`` with values in [-1, 1] (raw 2-D Perlin noise is bounded by
    sqrt(1/2); it is scaled by sqrt(2) as in DRAEM, so thresholds such as 0.5 mean the same),
    mean ~0. ``H`` and ``W`` need not be multiples of ``res``. ``res`` entries must be >= 1.

    The field is smooth at the scale of one period, so it is evaluated on at most
    ``_SAMPLES_PER_PERIOD`` samples per period and resized (bicubic) to ``(H, W)``; this keeps
    large, low-frequency fields cheap.
    """
    height, width = int(shape[0]), int(shape[1])
    ry, rx = int(res[0]), int(res[1])
    if height < 1 or width < 1:
        raise ValueError(f"noise shape must be positive, got {shape}")
    if ry < 1 or rx < 1:
        raise ValueError(f"noise resolution must be >= 1 period per axis, got {res}")
    rng = _rng(seed)
    full_h, full_w = height, width
    height = min(height, ry * _SAMPLES_PER_PERIOD)
    width = min(width, rx * _SAMPLES_PER_PERIOD)
    angles = rng.uniform(0.0, 2.0 * np.pi, size=(ry + 1, rx + 1))
    gy, gx = np.sin(angles).astype(np.float32), np.cos(angles).astype(np.float32)
    # lattice coordinates of every pixel: res periods across the image
    ys = (np.arange(height, dtype=np.float64) + 0.5) * (ry / height)
    xs = (np.arange(width, dtype=np.float64) + 0.5) * (rx / width)
    iy = np.minimum(ys.astype(np.int64), ry - 1)
    ix = np.minimum(xs.astype(np.int64), rx - 1)
    fy = (ys - iy).astype(np.float32)[:, None]
    fx = (xs - ix).astype(np.float32)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        sel = np.ix_(iy + dy, ix + dx)
        return gx[sel] * (fx - dx) + gy[sel] * (fy - dy)

    u, v = _fade(fx), _fade(fy)
    top = corner(0, 0) + u * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + u * (corner(1, 1) - corner(1, 0))
    field = (top + v * (bottom - top)) * np.float32(math.sqrt(2.0))
    if (height, width) != (full_h, full_w):
        field = np.clip(cv2.resize(field, (full_w, full_h), interpolation=cv2.INTER_CUBIC), -1.0, 1.0)
    return field.astype(np.float32, copy=False)


def fractal_noise(
    shape: tuple[int, int],
    res: tuple[int, int],
    seed: "int | np.random.Generator",
    octaves: int = 4,
    persistence: float = 0.5,
    lacunarity: int = 2,
) -> np.ndarray:
    """Sum of ``octaves`` Perlin layers; octave ``o`` has ``res * lacunarity**o`` periods and
    amplitude ``persistence**o``. Returns float32 ``(H, W)``, values in about
    ``[-1, 1] * sum(persistence**o)``.
    """
    if octaves < 1:
        raise ValueError(f"octaves must be >= 1, got {octaves}")
    if lacunarity < 1:
        raise ValueError(f"lacunarity must be >= 1, got {lacunarity}")
    rng = _rng(seed)
    total = np.zeros((int(shape[0]), int(shape[1])), np.float32)
    amplitude = 1.0
    for octave in range(int(octaves)):
        factor = int(lacunarity) ** octave
        ry = min(int(res[0]) * factor, max(1, int(shape[0]) // 2))
        rx = min(int(res[1]) * factor, max(1, int(shape[1]) // 2))
        total += np.float32(amplitude) * perlin_noise(shape, (ry, rx), rng)
        amplitude *= float(persistence)
    return total


def rotated_noise(
    shape: tuple[int, int],
    res: tuple[int, int],
    seed: "int | Sequence[int] | np.random.Generator",
    angle: float = 0.0,
    octaves: int = 1,
    persistence: float = 0.5,
    lacunarity: int = 2,
) -> np.ndarray:
    """Perlin (``octaves = 1``) or fractal noise rotated by ``angle`` degrees, float32 ``(H, W)``.

    The field is generated on a square that covers the image at every angle and cropped after
    rotation, so no corner is left empty; ``res`` stays the number of periods across the image.
    Generation and rotation run at the resolution the finest octave needs
    (``_SAMPLES_PER_PERIOD`` samples per period) and the result is resized to ``(H, W)``.
    """
    height, width = int(shape[0]), int(shape[1])
    if angle % 360.0 == 0.0:
        return fractal_noise((height, width), res, seed, octaves, persistence, lacunarity)
    finest = max(int(res[0]), int(res[1])) * int(lacunarity) ** (int(octaves) - 1)
    factor = min(1.0, _SAMPLES_PER_PERIOD * finest / max(height, width))
    work_h, work_w = max(2, int(math.ceil(height * factor))), max(2, int(math.ceil(width * factor)))
    side = int(math.ceil(math.hypot(work_h, work_w))) + 2
    big_res = (
        max(1, int(round(res[0] * side / work_h))),
        max(1, int(round(res[1] * side / work_w))),
    )
    big = fractal_noise((side, side), big_res, seed, octaves, persistence, lacunarity)
    matrix = cv2.getRotationMatrix2D((side / 2.0, side / 2.0), float(angle), 1.0)
    matrix[0, 2] -= (side - work_w) / 2.0
    matrix[1, 2] -= (side - work_h) / 2.0
    field = cv2.warpAffine(big, matrix, (work_w, work_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if (work_h, work_w) != (height, width):
        field = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    return field.astype(np.float32, copy=False)
