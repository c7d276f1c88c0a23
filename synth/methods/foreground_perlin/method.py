"""Foreground Perlin cut-and-blend (defect-map paper, Appl. Sci. 2023, and MemSeg; algorithms.md §3).

A second normal image ``A`` is the anomaly source. With the foreground masks ``I_M`` (of the image)
and ``A_M`` (of ``A``) and a thresholded Perlin mask ``P_M`` (DRAEM's generator),
``M2 = A_M * P_M * I_M`` and ``I_a = beta * A * M2 + (1 - beta) * I * M2 + I * (1 - M2)``.

``I_M`` is ``Scene.foreground`` when given, else estimated like ``A_M`` by the background
brightness threshold + median filter of ``synth.foreground`` (texture images: everything is
foreground). Without a partner image the image rotated by 180 degrees is ``A``.

``beta`` is drawn from ``beta_range``. The paper draws beta in [0, 0.8); the default here starts
at 0.1 because below that a blend changes almost no stored 8-bit pixel (``0.05 * |A - I|`` is
under 1/255 for most contrasts) and the "anomaly" would be empty; pass ``beta_range=(0.0, 0.8)``
for the paper's exact range.

With a size bin the Perlin threshold is moved until the measured changed area lies in the bin.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from ...errors import InvalidParameterError, RegionError
from ...foreground import foreground_mask
from ...method import Rendering, Scene, Spec
from ...partner import partner_choice, partner_image
from ...sizing import draw_target_fraction
from ..draem.method import DRAEM


class ForegroundPerlin(DRAEM):
    """Perlin mask restricted to the foreground of both images; cut-and-blend from a partner.

    Options: ``beta_range`` within [0, 1] (default (0.1, 0.8)); ``min_scale``, ``max_scale``,
    ``threshold``, ``rotate`` as for ``draem``; ``background`` brightness (0-1) and
    ``foreground_threshold`` (default 0.1) for the estimated foreground masks (``None``: the
    background is estimated from the image border).
    """

    name = "foreground_perlin"
    shapes = ("perlin",)
    modes = ("cut_blend",)
    needs_partner = True

    def __init__(
        self,
        beta_range: Sequence[float] = (0.1, 0.8),
        min_scale: int = 0,
        max_scale: int = 6,
        threshold: float = 0.5,
        rotate: bool = True,
        background: float | None = None,
        foreground_threshold: float = 0.1,
    ) -> None:
        lo, hi = float(beta_range[0]), float(beta_range[1])
        if not 0.0 <= lo <= hi <= 1.0 or hi == 0.0:
            raise InvalidParameterError(f"beta_range must satisfy 0 <= low <= high <= 1, high > 0; got {beta_range!r}")
        super().__init__(min_scale, max_scale, threshold, (max(lo, 1e-6), max(hi, 1e-6)), "tiles", rotate)
        self.beta_range = (lo, hi)
        self.background = None if background is None else float(background)
        self.foreground_threshold = float(foreground_threshold)

    def sample(self, rng, scene, *, shape=None, mode=None, size_bin=None, seed=0) -> Spec:
        shape = self._choose(rng, shape, self.shapes, "shape")
        mode = self._choose(rng, mode, self.modes, "mode")
        params: dict[str, Any] = self._noise_params(rng)
        params["opacity"] = float(rng.uniform(*self.beta_range))  # beta of the paper
        params["partner_index"] = partner_choice(rng, scene)
        params["background"] = self.background
        params["foreground_threshold"] = self.foreground_threshold
        if size_bin is not None:
            params["target_fraction"] = draw_target_fraction(rng, size_bin)
        return Spec(method=self.name, shape=shape, mode=mode, seed=seed, size_bin=size_bin, params=params)

    def _partner(self, scene: Scene, spec: Spec) -> np.ndarray:
        partner, _ = partner_image(scene, int(spec.params["partner_index"]), "rotate180")
        return partner

    def candidates(self, scene: Scene, spec: Spec) -> np.ndarray:
        p = spec.params
        own = scene.foreground
        if own is None:
            own = foreground_mask(scene.image, p["background"], p["foreground_threshold"])
        other = foreground_mask(self._partner(scene, spec), p["background"], p["foreground_threshold"])
        allowed = own & other
        if scene.region is not None:
            allowed &= scene.region
        if not allowed.any():
            raise RegionError(
                "the foreground of the image and of its partner (and the region) do not overlap; "
                "pass a partner image showing the same object, or a foreground mask"
            )
        return allowed

    def blend_source(self, scene: Scene, spec: Spec) -> np.ndarray:
        return self._partner(scene, spec)

    def render(self, scene: Scene, spec: Spec) -> Rendering:
        rendering = super().render(scene, spec)
        _, name = partner_image(scene, int(spec.params["partner_index"]), "rotate180")
        return replace(rendering, extra={**rendering.extra, "source": name})

    def _hint(self) -> str:
        return "beta is small or the partner equals the image inside the foreground; try another seed or partner"
