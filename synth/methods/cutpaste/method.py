"""CutPaste and CutPaste-Scar (Li et al., CVPR 2021; algorithms.md §3).

A patch is cut from one place of the image, colour-jittered and pasted at another place:

* ``cutpaste``: a rectangle covering ``area_range`` (default 2-15 %) of the image with aspect
  ratio log-uniform in ``aspect_range`` (default [0.3, 1/0.3]).
* ``cutpaste_scar``: a thin rectangle, width ``width_range`` (default 2-16 px) and height
  ``height_range`` (default 10-25 px) at a ``reference_side`` of 256 px (scaled with the image's
  shorter side), rotated by ``angle_range`` (default ±45°).

Colour jitter (``jitter``, default 0.1 as in CutPaste): brightness and contrast factors in
[1 - j, 1 + j], saturation factor in [1 - j, 1 + j] and a hue shift in [-j, j] of the hue circle
(colour images only), applied in that fixed order.

With a size bin the patch is scaled (aspect and angle kept) until the measured changed area lies
in the bin. The paste lands on a pixel of the region when one is given.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import cv2
import numpy as np

from ...errors import InvalidParameterError
from ...image import luminance
from ...method import Method, Rendering, Scene, Spec
from ...sizebins import SizeBin
from ...sizing import anchor_point, box_around, draw_target_fraction, fit, measure_window, shifted
from .geometry import cut_box, rotation_box


def _range(value: Sequence[float], what: str, low: float = 0.0, high: float = math.inf) -> tuple[float, float]:
    try:
        lo, hi = float(value[0]), float(value[1])
    except (TypeError, ValueError, IndexError):
        raise InvalidParameterError(f"{what} must be a (low, high) pair, got {value!r}") from None
    if not (low <= lo <= hi <= high):
        raise InvalidParameterError(f"{what} must satisfy {low} <= low <= high <= {high}, got {value!r}")
    return lo, hi


def sample_jitter(rng: np.random.Generator, jitter: float) -> dict[str, float]:
    """Colour-jitter factors (JSON): brightness, contrast, saturation in [1-j, 1+j], hue in [-j, j]."""
    return {
        "brightness": float(rng.uniform(1.0 - jitter, 1.0 + jitter)),
        "contrast": float(rng.uniform(1.0 - jitter, 1.0 + jitter)),
        "saturation": float(rng.uniform(1.0 - jitter, 1.0 + jitter)),
        "hue": float(rng.uniform(-jitter, jitter)),
    }


def color_jitter(patch: np.ndarray, factors: dict[str, float]) -> np.ndarray:
    """Apply brightness, contrast, saturation and hue factors to float32 ``(h, w, C)`` in [0, 1]."""
    out = patch * np.float32(factors["brightness"])
    out = np.clip(out, 0.0, 1.0)
    mean = float(luminance(out).mean()) if out.size else 0.0
    out = np.clip((out - mean) * np.float32(factors["contrast"]) + mean, 0.0, 1.0)
    if out.shape[2] == 3:
        gray = luminance(np.ascontiguousarray(out, dtype=np.float32))[:, :, None]
        out = np.clip((out - gray) * np.float32(factors["saturation"]) + gray, 0.0, 1.0)
        if factors["hue"] != 0.0:
            hsv = cv2.cvtColor(np.ascontiguousarray(out, dtype=np.float32), cv2.COLOR_RGB2HSV)
            hsv[:, :, 0] = np.mod(hsv[:, :, 0] + np.float32(360.0 * factors["hue"]), 360.0)
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


class _PasteBase(Method):
    modes = ("paste",)
    targets_size = True

    def __init__(self, jitter: float) -> None:
        if not 0.0 <= jitter < 1.0:
            raise InvalidParameterError(f"jitter must lie in [0, 1), got {jitter}")
        self.jitter = float(jitter)

    def _common(self, rng: np.random.Generator, scene: Scene, size_bin: SizeBin | None) -> dict[str, Any]:
        params = {
            "source_position": [float(rng.random()), float(rng.random())],
            "anchor": [float(rng.random()), float(rng.random())],
            "jitter": sample_jitter(rng, self.jitter),
        }
        if size_bin is not None:
            params["target_fraction"] = draw_target_fraction(rng, size_bin)
        return params

    @staticmethod
    def _anchor(scene: Scene, anchor: list[float], attempt: int) -> tuple[int, int]:
        return anchor_point(shifted(anchor[0], attempt), scene, shifted(anchor[1], attempt))



class CutPaste(_PasteBase):
    """CutPaste: a colour-jittered rectangle of the image pasted elsewhere in it.

    Options: ``area_range`` (fractions of the image, default (0.02, 0.15), each in (0, 1]),
    ``aspect_range`` (width / height, default (0.3, 1/0.3), log-uniform), ``jitter`` in [0, 1)
    (default 0.1).
    """

    name = "cutpaste"
    batched = "synth.methods.cutpaste.batched:CutPasteBatch"
    shapes = ("rectangle",)

    def __init__(
        self,
        area_range: Sequence[float] = (0.02, 0.15),
        aspect_range: Sequence[float] = (0.3, 1 / 0.3),
        jitter: float = 0.1,
    ) -> None:
        super().__init__(jitter)
        self.area_range = _range(area_range, "area_range", 1e-6, 1.0)
        self.aspect_range = _range(aspect_range, "aspect_range", 1e-3)

    def sample(self, rng, scene, *, shape=None, mode=None, size_bin=None, seed=0) -> Spec:
        shape = self._choose(rng, shape, self.shapes, "shape")
        mode = self._choose(rng, mode, self.modes, "mode")
        params = {
            "area_fraction": float(rng.uniform(*self.area_range)),
            "aspect": float(math.exp(rng.uniform(math.log(self.aspect_range[0]), math.log(self.aspect_range[1])))),
        }
        params.update(self._common(rng, scene, size_bin))
        return Spec(method=self.name, shape=shape, mode=mode, seed=seed, size_bin=size_bin, params=params)

    def render(self, scene: Scene, spec: Spec) -> Rendering:
        p = spec.params
        height, width = scene.height, scene.width
        fraction = p.get("target_fraction", p["area_fraction"])

        def render_at(scale: float, attempt: int):
            area = fraction * height * width * scale * scale
            h = int(min(max(round(math.sqrt(area / p["aspect"])), 1), height))
            w = int(min(max(round(math.sqrt(area * p["aspect"])), 1), width))
            sy0, sy1, sx0, sx1 = cut_box(scene, p["source_position"], h, w)
            patch = color_jitter(scene.image[sy0:sy1, sx0:sx1], p["jitter"])
            cy, cx = self._anchor(scene, p["anchor"], attempt)
            window = box_around(cy + 0.5, cx + 0.5, h, w, height, width)
            values, changed = measure_window(scene, window, patch)
            return int(changed.sum()), (window, values, [sy0, sy1, sx0, sx1])

        max_scale = math.sqrt(1.0 / fraction)
        (window, values, source_box), extra = fit(
            scene, spec, render_at, upper=max_scale,
            hint="the pasted patch matches the image there (flat image?); try another seed",
        )
        extra["source_box"] = source_box
        extra["box"] = list(window)
        return Rendering(image=values, extra=extra, window=window)


class CutPasteScar(_PasteBase):
    """CutPaste-Scar: a thin, rotated, colour-jittered strip of the image pasted elsewhere in it.

    Options: ``width_range`` (default (2, 16) px), ``height_range`` (default (10, 25) px), both at
    ``reference_side`` (default 256) and scaled by ``min(H, W) / reference_side``;
    ``angle_range`` in degrees (default (-45, 45)); ``jitter`` in [0, 1) (default 0.1).
    """

    name = "cutpaste_scar"
    records_angle = True
    batched = "synth.methods.cutpaste.batched:CutPasteScarBatch"
    shapes = ("scar",)

    def __init__(
        self,
        width_range: Sequence[float] = (2, 16),
        height_range: Sequence[float] = (10, 25),
        angle_range: Sequence[float] = (-45.0, 45.0),
        reference_side: int = 256,
        jitter: float = 0.1,
    ) -> None:
        super().__init__(jitter)
        self.width_range = _range(width_range, "width_range", 1.0)
        self.height_range = _range(height_range, "height_range", 1.0)
        self.angle_range = _range(angle_range, "angle_range", -360.0, 360.0)
        if reference_side < 1:
            raise InvalidParameterError("reference_side must be >= 1")
        self.reference_side = int(reference_side)

    def sample(self, rng, scene, *, shape=None, mode=None, size_bin=None, seed=0) -> Spec:
        shape = self._choose(rng, shape, self.shapes, "shape")
        mode = self._choose(rng, mode, self.modes, "mode")
        params = {
            "width": float(rng.uniform(*self.width_range)),
            "height": float(rng.uniform(*self.height_range)),
            "angle": float(rng.uniform(*self.angle_range)),
            "reference_side": self.reference_side,
        }
        params.update(self._common(rng, scene, size_bin))
        return Spec(method=self.name, shape=shape, mode=mode, seed=seed, size_bin=size_bin, params=params)

    def render(self, scene: Scene, spec: Spec) -> Rendering:
        p = spec.params
        height, width = scene.height, scene.width
        factor = min(height, width) / float(p["reference_side"])
        angle = float(p["angle"])
        natural = 1.0
        start = 1.0
        if spec.size_bin is not None:
            drawn = p["width"] * p["height"] * factor * factor
            start = math.sqrt(p["target_fraction"] * height * width / drawn)

        def render_at(scale: float, attempt: int):
            h = int(min(max(round(p["height"] * factor * scale), 1), height))
            w = int(min(max(round(p["width"] * factor * scale), 1), width))
            sy0, sy1, sx0, sx1 = cut_box(scene, p["source_position"], h, w)
            patch = color_jitter(scene.image[sy0:sy1, sx0:sx1], p["jitter"])
            rotated, footprint = _rotate(patch, angle)
            cy, cx = self._anchor(scene, p["anchor"], attempt)
            fh, fw = footprint.shape
            y0, y1, x0, x1 = box_around(cy + 0.5, cx + 0.5, fh, fw, height, width)
            # a strip rotated larger than the image is cut to it
            rotated, footprint = rotated[: y1 - y0, : x1 - x0], footprint[: y1 - y0, : x1 - x0]
            source = scene.image[y0:y1, x0:x1]
            values = np.where(footprint[:, :, None], rotated, source)
            values, changed = measure_window(scene, (y0, y1, x0, x1), values)
            return int(changed.sum()), ((y0, y1, x0, x1), values, [sy0, sy1, sx0, sx1])

        max_scale = max(height, width) / max(1.0, min(p["width"], p["height"]) * factor)
        (window, values, source_box), extra = fit(
            scene, spec, render_at, natural=natural, start=start, upper=max_scale,
            hint="the pasted strip matches the image there (flat image?); try another seed",
        )
        extra["source_box"] = source_box
        return Rendering(image=values, angle=angle, extra=extra, window=window)


def _rotate(patch: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate a patch by ``angle`` degrees into its bounding box; return (values, bool footprint)."""
    matrix, footprint = rotation_box(patch.shape[0], patch.shape[1], angle)
    out_h, out_w = footprint.shape
    values = cv2.warpAffine(patch, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if values.ndim == 2:
        values = values[:, :, None]
    return values, footprint
