"""CutOut (DeVries & Taylor, 2017; algorithms.md §3): a square set to a constant.

The square's side is drawn from ``side_range`` (default 20-50 px) at ``reference_side`` 256 px
and scaled with the image's shorter side; it is placed on a pixel of the region when one is
given and kept inside the image. With a size bin the side is steered until the measured
changed area lies in the bin (pixels that already had the fill value do not count).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ...errors import InvalidParameterError
from ...method import Method, Rendering, Scene, Spec
from ...sizing import anchor_point, box_around, draw_target_fraction, fit, measure_window, shifted

FILLS = ("zero", "mean", "random")


class CutOut(Method):
    """CutOut: a square of constant colour.

    Options: ``side_range`` (default (20, 50) px at ``reference_side``, default 256);
    ``fill``: ``"zero"`` (default, black as in CutOut), ``"mean"`` (the image's mean colour),
    ``"random"`` (a uniform random colour drawn per anomaly) or a number in [0, 1] (gray level).
    """

    name = "cutout"
    samples_pixels = True
    batched = "synth.methods.cutout.batched:CutOutBatch"
    shapes = ("square",)
    modes = ("constant",)
    targets_size = True

    def __init__(self, side_range: Sequence[float] = (20, 50), reference_side: int = 256, fill: str | float = "zero") -> None:
        try:
            lo, hi = float(side_range[0]), float(side_range[1])
        except (TypeError, ValueError, IndexError):
            raise InvalidParameterError(f"side_range must be a (low, high) pair, got {side_range!r}") from None
        if not 1.0 <= lo <= hi:
            raise InvalidParameterError(f"side_range must satisfy 1 <= low <= high, got {side_range!r}")
        if reference_side < 1:
            raise InvalidParameterError("reference_side must be >= 1")
        if isinstance(fill, str):
            if fill not in FILLS:
                raise InvalidParameterError(f"fill must be one of {', '.join(FILLS)} or a number in [0, 1], got {fill!r}")
        elif not 0.0 <= float(fill) <= 1.0:
            raise InvalidParameterError(f"a numeric fill must lie in [0, 1], got {fill!r}")
        self.side_range = (lo, hi)
        self.reference_side = int(reference_side)
        self.fill = fill if isinstance(fill, str) else float(fill)

    def sample(self, rng, scene, *, shape=None, mode=None, size_bin=None, seed=0) -> Spec:
        shape = self._choose(rng, shape, self.shapes, "shape")
        mode = self._choose(rng, mode, self.modes, "mode")
        if self.fill == "zero":
            colour = [0.0] * scene.channels
        elif self.fill == "mean":
            colour = [float(v) for v in scene.image.reshape(-1, scene.channels).mean(axis=0)]
        elif self.fill == "random":
            colour = [float(v) for v in rng.random(scene.channels)]
        else:
            colour = [float(self.fill)] * scene.channels
        params = {
            "side": float(rng.uniform(*self.side_range)),
            "reference_side": self.reference_side,
            "fill": self.fill,
            "colour": colour,
            "anchor": [float(rng.random()), float(rng.random())],
        }
        if size_bin is not None:
            params["target_fraction"] = draw_target_fraction(rng, size_bin)
        return Spec(method=self.name, shape=shape, mode=mode, seed=seed, size_bin=size_bin, params=params)

    def render(self, scene: Scene, spec: Spec) -> Rendering:
        p = spec.params
        height, width = scene.height, scene.width
        side = p["side"] * min(height, width) / float(p["reference_side"])
        start = 1.0
        if spec.size_bin is not None:
            start = math.sqrt(p["target_fraction"] * height * width) / side
        colour = np.asarray(p["colour"][: scene.channels], np.float32)

        def render_at(scale: float, attempt: int):
            s = int(max(1, round(side * scale)))
            cy, cx = anchor_point(shifted(p["anchor"][0], attempt), scene, shifted(p["anchor"][1], attempt))
            window = box_around(cy + 0.5, cx + 0.5, s, s, height, width)
            h, w = window[1] - window[0], window[3] - window[2]
            values = np.broadcast_to(colour, (h, w, scene.channels)).astype(np.float32)
            values, changed = measure_window(scene, window, values)
            return int(changed.sum()), (window, values)

        (window, values), extra = fit(
            scene, spec, render_at, start=start, upper=max(height, width) / side,
            hint="the image already has the fill colour there; use fill='random' or another seed",
        )
        extra["box"] = list(window)
        return Rendering(image=values, extra=extra, window=window)
