"""Fractal-noise anomalies: DRAEM's texture fill inside a multi-octave noise mask.

The mask is fractal (fBm) Perlin noise: ``octaves`` layers (drawn in ``octave_range``, default
3-5), each with twice the periods and ``persistence`` (0.5) times the amplitude of the previous,
base periods ``2**k`` with ``k`` in [``min_scale``, ``max_scale``) (default [0, 3)), rotated by
U(-90°, 90°) and thresholded at ``threshold`` (0.5). Finer octaves give ragged, fragmented
edges where DRAEM's single-octave masks are smooth blobs. Fill, blend and size-bin steering are
DRAEM's (``synth.methods.draem.method``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ...errors import InvalidParameterError
from ..draem.method import DRAEM


class Fractal(DRAEM):
    """Fractal noise mask, DRAEM-style texture fill.

    Options: ``octave_range`` (1 <= low <= high <= 8, default (3, 5)); ``persistence`` in (0, 1]
    (default 0.5); ``min_scale``, ``max_scale`` (default 0, 3); ``threshold``, ``opacity_range``,
    ``fallback``, ``rotate`` as for ``draem``.
    """

    name = "fractal"
    shapes = ("fractal",)
    modes = ("texture_blend",)

    def __init__(
        self,
        octave_range: Sequence[int] = (3, 5),
        persistence: float = 0.5,
        min_scale: int = 0,
        max_scale: int = 3,
        threshold: float = 0.5,
        opacity_range: Sequence[float] = (0.2, 1.0),
        fallback: str = "tiles",
        rotate: bool = True,
    ) -> None:
        super().__init__(min_scale, max_scale, threshold, opacity_range, fallback, rotate)
        lo, hi = int(octave_range[0]), int(octave_range[1])
        if not 1 <= lo <= hi <= 8:
            raise InvalidParameterError(f"octave_range must satisfy 1 <= low <= high <= 8, got {octave_range!r}")
        if not 0.0 < persistence <= 1.0:
            raise InvalidParameterError(f"persistence must lie in (0, 1], got {persistence}")
        self.octave_range = (lo, hi)
        self.persistence = float(persistence)

    def _noise_params(self, rng: np.random.Generator) -> dict[str, Any]:
        params = super()._noise_params(rng)
        params["octaves"] = int(rng.integers(self.octave_range[0], self.octave_range[1] + 1))
        params["persistence"] = self.persistence
        return params
