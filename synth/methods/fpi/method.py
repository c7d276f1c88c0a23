"""FPI, Foreign Patch Interpolation (Tan et al., MELBA 2022; algorithms.md §3).

The patch at the same location of a second normal image is linearly interpolated into the image,
``out = (1 - alpha) * image + alpha * partner`` with ``alpha ~ U(alpha_range)`` (default
(0.05, 0.95)); the soft label (``Rendering.label``) is ``alpha`` on the patch.

Patch half-sizes follow NSA's truncated Gamma (as in NSA's FPI baseline): ``clip((gamma_lower +
Gamma(gamma_shape, gamma_scale)) * side, width_bounds)``. Without a partner image the image rotated
by 180 degrees is the partner (the same-location patch of the image itself would change nothing).
With a size bin the patch is scaled until the measured changed area lies in the bin.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ...errors import InvalidParameterError
from ...method import Method, Rendering, Scene, Spec
from ...partner import partner_choice, partner_image
from ...sizing import anchor_point, box_around, draw_target_fraction, fit, measure_window, shifted


class FPI(Method):
    """Foreign patch interpolation from another normal image; label = interpolation factor.

    Options: ``alpha_range`` within [0, 1] (default (0.05, 0.95)); ``width_bounds`` half-height and
    half-width fraction bounds, each 0 < lo <= hi <= 0.5 (default ((0.03, 0.4), (0.03, 0.4)));
    ``gamma_shape``, ``gamma_scale``, ``gamma_lower`` (default 2, 0.05, 0.03).
    """

    name = "fpi"
    batched = "synth.methods.fpi.batched:FPIBatch"
    shapes = ("patch",)
    modes = ("interpolation",)
    targets_size = True
    needs_partner = True

    def __init__(
        self,
        alpha_range: Sequence[float] = (0.05, 0.95),
        width_bounds: Sequence[Sequence[float]] = ((0.03, 0.4), (0.03, 0.4)),
        gamma_shape: float = 2.0,
        gamma_scale: float = 0.05,
        gamma_lower: float = 0.03,
    ) -> None:
        lo, hi = float(alpha_range[0]), float(alpha_range[1])
        if not 0.0 <= lo <= hi <= 1.0:
            raise InvalidParameterError(f"alpha_range must satisfy 0 <= low <= high <= 1, got {alpha_range!r}")
        try:
            bounds = tuple((float(a), float(b)) for a, b in width_bounds)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"width_bounds must be ((lo, hi), (lo, hi)), got {width_bounds!r}") from None
        if len(bounds) != 2 or not all(0.0 < a <= b <= 0.5 for a, b in bounds):
            raise InvalidParameterError(f"width_bounds must hold two (lo, hi) with 0 < lo <= hi <= 0.5, got {width_bounds!r}")
        if gamma_shape <= 0 or gamma_scale <= 0 or gamma_lower < 0:
            raise InvalidParameterError("gamma_shape and gamma_scale must be > 0 and gamma_lower >= 0")
        self.alpha_range = (lo, hi)
        self.width_bounds = bounds
        self.gamma = (float(gamma_shape), float(gamma_scale), float(gamma_lower))

    def sample(self, rng, scene, *, shape=None, mode=None, size_bin=None, seed=0) -> Spec:
        shape = self._choose(rng, shape, self.shapes, "shape")
        mode = self._choose(rng, mode, self.modes, "mode")
        g_shape, g_scale, g_lower = self.gamma
        half = [float(np.clip(g_lower + rng.gamma(g_shape, g_scale), lo, hi)) for lo, hi in self.width_bounds]
        params = {
            "half_size": half,
            "alpha": float(rng.uniform(*self.alpha_range)),
            "anchor": [float(rng.random()), float(rng.random())],
            "partner_index": partner_choice(rng, scene),
        }
        if size_bin is not None:
            params["target_fraction"] = draw_target_fraction(rng, size_bin)
        return Spec(method=self.name, shape=shape, mode=mode, seed=seed, size_bin=size_bin, params=params)

    def render(self, scene: Scene, spec: Spec) -> Rendering:
        p = spec.params
        height, width = scene.height, scene.width
        partner, partner_name = partner_image(scene, int(p["partner_index"]), "rotate180")
        alpha = np.float32(p["alpha"])
        h0 = 2.0 * p["half_size"][0] * height
        w0 = 2.0 * p["half_size"][1] * width
        start = 1.0
        if spec.size_bin is not None:
            start = math.sqrt(p["target_fraction"] * height * width / (h0 * w0))

        def render_at(scale: float, attempt: int):
            h = int(min(max(round(h0 * scale), 1), height))
            w = int(min(max(round(w0 * scale), 1), width))
            cy, cx = anchor_point(shifted(p["anchor"][0], attempt), scene, shifted(p["anchor"][1], attempt))
            window = y0, y1, x0, x1 = box_around(cy + 0.5, cx + 0.5, h, w, height, width)
            source = scene.image[y0:y1, x0:x1]
            values = (1.0 - alpha) * source + alpha * partner[y0:y1, x0:x1]
            values, changed = measure_window(scene, window, values)
            return int(changed.sum()), (window, values)

        (window, values), extra = fit(
            scene, spec, render_at, start=start, upper=max(height / h0, width / w0),
            hint="the partner equals the image there; pass a different partner image",
        )
        extra["source"] = partner_name
        extra["box"] = list(window)
        label = np.full(values.shape[:2], float(alpha), np.float32)
        return Rendering(image=values, label=label, extra=extra, window=window)
