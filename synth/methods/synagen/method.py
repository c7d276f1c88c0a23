"""SYNAGEN as a ``Method``: draw shape, mode, angle, placement and target size; render exactly.

Rendering measures the *final* changed area (after rotation, clipping to the image and region,
manipulation, edge smoothing and quantisation) and corrects the scale until the area lies in the
requested size bin, where the reference implementation rescales once and never measures. The
recorded ``area_fraction`` is always the measured one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import cv2
import numpy as np

from ...change import changed_pixels
from ...errors import InvalidParameterError
from ...method import Method, Rendering, Scene, Spec
from ...sizebins import DEFAULT_BINS, SizeBin, require_bins
from ...sizing import Steering, fit, shifted, target_fraction, target_pixels
from .modes import DEFAULT_MODES, MODES, manipulate, noise_field, sample_mode, texture_field
from .scaling import MAX_SHAPE_SPAN, ScaledShape, scaled_shape
from .shapes import SHAPES, sample_shape

_PLACEMENT_ATTEMPTS = 6
_COVERAGE_THRESHOLDS = (0.5, 0.3, 0.7)
#: SYNAGEN's size search: accepted distance from the drawn target as a share of the bin's width
#: (sizes stay spread evenly over the bin without chasing an exact pixel count); a render counts
#: as too small only below the bin; shapes whose area jumps with scale (rough) may never get
#: within the tolerance, so at most 2 renders refine after the first in-bin one; the largest scale
#: only clamps the knob, it does not bound the bracket.
STEERING = Steering(root="sqrt", tolerance_of="bin", bracket_by="bin", refine_steps=2, open_bracket=True)
_KERNEL3 = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class _Window:
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


class Synagen(Method):
    """SYNAGEN (4 shapes x 5 modes (+ texture) x size bins).

    ``bins``         bins drawn from when a call names none (equally often).
    ``noise_range``  range of the multiplicative noise of the *transparent noise* modes.
    ``smooth_band``  width in pixels of the contour band that takes blurred values (0 = off).
    """

    #: the size search (``synth.sizing.Steering``), placement attempts and the shape mask's
    #: coverage threshold per attempt; the batched renderer reads them here
    steering: ClassVar[Steering] = STEERING
    placement_attempts: ClassVar[int] = _PLACEMENT_ATTEMPTS
    coverage_thresholds: ClassVar[tuple[float, ...]] = _COVERAGE_THRESHOLDS

    name = "synagen"
    records_angle = True
    batched = "synth.methods.synagen.batched:SynagenBatch"
    shapes = SHAPES
    modes = MODES
    targets_size = True
    default_shapes = SHAPES
    default_modes = DEFAULT_MODES  # texture mode needs --textures: asked for by name

    def __init__(
        self,
        bins: Sequence[SizeBin] = DEFAULT_BINS,
        noise_range: tuple[float, float] = (1.0, 1.5),
        smooth_band: int = 3,
    ) -> None:
        lo, hi = float(noise_range[0]), float(noise_range[1])
        if not (0.0 <= lo < hi):
            raise InvalidParameterError(f"noise_range must satisfy 0 <= low < high, got {noise_range}")
        if smooth_band < 0:
            raise InvalidParameterError("smooth_band must be >= 0")
        self.bins = require_bins(bins)
        self.noise_range = (lo, hi)
        self.smooth_band = int(smooth_band)

    # ---------------------------------------------------------------- draw
    def sample(
        self,
        rng: np.random.Generator,
        scene: Scene,
        *,
        shape: str | None = None,
        mode: str | None = None,
        size_bin: SizeBin | None = None,
        seed: int = 0,
    ) -> Spec:
        shape = self._choose(rng, shape, SHAPES, "shape")
        mode = self._choose(rng, mode, DEFAULT_MODES if mode is None else MODES, "mode")
        if mode == "texture" and not scene.textures:
            raise InvalidParameterError(
                "mode 'texture' needs texture images: pass textures=[...] (CLI: --textures DIR)"
            )
        # Order of draws matters: everything but the size comes first, so one seed rendered in
        # several bins gives the same anomaly at several sizes (the paper's protocol).
        shape_params = sample_shape(rng, shape)
        mode_params = sample_mode(rng, mode, scene.height, self.noise_range, len(scene.textures))
        angle = float(rng.uniform(0.0, 360.0))
        position = [float(rng.random()), float(rng.random())]
        anchor = [float(rng.random()), float(rng.random())]
        size_u = float(rng.random())
        if size_bin is None:
            size_bin = self.bins[int(rng.integers(len(self.bins)))]
        params = {
            "shape_params": shape_params,
            "mode_params": mode_params,
            "angle": angle,
            "position": position,
            "anchor": anchor,
            "target_fraction": target_fraction(size_bin, size_u),
            "smooth_band": self.smooth_band,
        }
        return Spec(method=self.name, shape=shape, mode=mode, seed=seed, size_bin=size_bin, params=params)

    # ---------------------------------------------------------------- render
    def render(self, scene: Scene, spec: Spec) -> Rendering:
        p = spec.params
        height, width = scene.height, scene.width
        size_bin = spec.size_bin or SizeBin.parse("0.02-15%")
        target_px = target_pixels(size_bin, p["target_fraction"], scene)

        # rotation does not depend on the scale: rotate once at panel resolution, then only
        # resize while searching for the scale
        scaled = scaled_shape(spec.shape, json.dumps(p["shape_params"], sort_keys=True), float(p["angle"]))
        shape_crop = scaled.crop
        shape_area = float((shape_crop > 0.5).sum())

        mode_params = p["mode_params"]
        noise = noise_field(mode_params, height, width) if spec.mode != "transparent" and spec.mode != "texture" else None
        texture = None
        if spec.mode == "texture":
            if not scene.textures:
                raise InvalidParameterError("this spec uses mode 'texture' but no textures were given")
            tex = scene.textures[mode_params["texture_index"] % len(scene.textures)]
            texture = texture_field(tex, mode_params["texture_offset"], height, width, scene.channels)
        region_pixels = None if scene.region is None else np.flatnonzero(scene.region)
        max_scale = MAX_SHAPE_SPAN * max(height, width) / max(shape_crop.shape)

        def placement(attempt: int) -> tuple[list[float], list[float], float]:
            # Thin shapes gain or lose whole strokes at some scales, so the area can jump over a
            # narrow bin; another coverage threshold moves the jumps (recorded with the result).
            threshold = _COVERAGE_THRESHOLDS[attempt % len(_COVERAGE_THRESHOLDS)]
            position = [shifted(u, attempt) for u in p["position"]]
            anchor = [shifted(u, attempt) for u in p["anchor"]]
            return position, anchor, threshold

        # A placement depends on the scale only through the resized shape's size (and whether it
        # shrinks): the size search revisits sizes (the prediction's last one is the measured
        # loop's first), so each is placed and rendered once.
        placements: dict[tuple, Any] = {}
        renders: dict[tuple, Any] = {}

        def size_key(scale: float, attempt: int) -> tuple:
            h, w = shape_crop.shape
            return attempt, max(1, int(round(w * scale))), max(1, int(round(h * scale))), scale < 1.0

        def place_at(scale: float, attempt: int):
            key = size_key(scale, attempt)
            if key not in placements:
                position, anchor, threshold = placement(attempt)
                placements[key] = self._place(scaled, scale, position, anchor, scene, region_pixels, threshold)
            return placements[key]

        def start(attempt: int) -> float:
            return self._predict_scale(
                lambda scale: place_at(scale, attempt), math.sqrt(target_px / shape_area), target_px, max_scale, scene,
            )

        def render_at(scale: float, attempt: int):
            key = size_key(scale, attempt)
            if key not in renders:
                placed = place_at(scale, attempt)
                if placed is None:
                    renders[key] = (0, None)
                else:
                    footprint, window = placed
                    out_window, changed = self._manipulate(scene, spec.mode, mode_params, footprint, window, noise, texture)
                    renders[key] = (int(changed.sum()), (window, out_window, placement(attempt)[2]))
            return renders[key]

        (window, out_window, threshold), fitted = fit(
            scene, spec, render_at, start=start, lower=0.0, upper=max_scale, attempts=_PLACEMENT_ATTEMPTS,
            steering=STEERING, size_bin=size_bin, what=f"{spec.shape}/{spec.mode}",
            hint=lambda: self._hint(placements.values(), height, width),
        )
        extra = {
            "scale": fitted["size_knob"],
            "placement_attempt": fitted["placement_attempt"],
            "coverage_threshold": threshold,
            "scale_steps": fitted["scale_steps"],
        }
        return Rendering(
            image=out_window,
            angle=float(p["angle"]),
            extra=extra,
            window=(window.y0, window.y1, window.x0, window.x1),
        )

    # ---------------------------------------------------------------- pieces
    @staticmethod
    def _hint(placed: Any, height: int, width: int) -> str:
        """What to try after a failed size search, from the placements it made."""
        whole = _Window(0, height, 0, width)
        if any(p is not None and p[1] == whole for p in placed):
            return ("The drawn shape already spans the whole image and still changes too few pixels: "
                    "the shape is sparse, or the mode leaves many pixels as they are (e.g. black "
                    "pixels cannot be darkened); try another seed, shape or mode, or a smaller bin")
        return ("The image may be too flat for this mode (e.g. black pixels cannot be darkened) or the "
                "region too fragmented; try another seed, mode or bin")

    @staticmethod
    def _place(
        shape: ScaledShape,
        scale: float,
        position: list[float],
        anchor: list[float],
        scene: Scene,
        region_pixels: np.ndarray | None,
        threshold: float = 0.5,
    ) -> tuple[np.ndarray, _Window] | None:
        """Scale and position the (rotated) shape; return its bool footprint in a window of the image."""
        rotated = shape.mask(scale, threshold)
        bx, by, bw, bh = cv2.boundingRect(rotated.view(np.uint8))
        if bw == 0 or bh == 0:
            return None
        fp = rotated[by : by + bh, bx : bx + bw]
        fh, fw = fp.shape
        height, width = scene.height, scene.width
        if region_pixels is None:
            x0 = _offset(position[0], width, fw)
            y0 = _offset(position[1], height, fh)
        else:
            target = int(region_pixels[min(int(anchor[0] * len(region_pixels)), len(region_pixels) - 1)])
            ty, tx = divmod(target, width)
            fy, fx = np.nonzero(fp)
            k = min(int(anchor[1] * len(fx)), len(fx) - 1)
            x0, y0 = tx - int(fx[k]), ty - int(fy[k])
        # clip to the image, keep a 2-pixel margin for the smoothing band
        margin = 2
        wx0, wy0 = max(0, x0 - margin), max(0, y0 - margin)
        wx1, wy1 = min(width, x0 + fw + margin), min(height, y0 + fh + margin)
        if wx1 <= wx0 or wy1 <= wy0:
            return None
        footprint = np.zeros((wy1 - wy0, wx1 - wx0), bool)
        sx0, sy0 = max(0, x0) - x0, max(0, y0) - y0
        sx1, sy1 = min(width, x0 + fw) - x0, min(height, y0 + fh) - y0
        if sx1 <= sx0 or sy1 <= sy0:
            return None
        footprint[max(0, y0) - wy0 : max(0, y0) - wy0 + (sy1 - sy0), max(0, x0) - wx0 : max(0, x0) - wx0 + (sx1 - sx0)] = fp[sy0:sy1, sx0:sx1]
        window = _Window(wy0, wy1, wx0, wx1)
        if scene.region is not None:
            footprint &= scene.region[window.slices]
        if not footprint.any():
            return None
        return footprint, window

    def _predict_scale(
        self,
        place_at: Callable[[float], tuple[np.ndarray, _Window] | None],
        scale: float,
        target_px: float,
        max_scale: float,
        scene: Scene,
    ) -> float:
        """A starting scale from the placed footprint (``place_at(scale)``) plus its outer
        smoothing band.

        Placing is much cheaper than manipulating, so a few placement-only steps get the scale
        close before the measured loop starts; the loop still decides on the measured area.
        """
        outer = max(1, self.smooth_band // 3) if self.smooth_band > 0 else 0
        for _ in range(4):
            scale = min(scale, max_scale)
            placed = place_at(scale)
            if placed is None:
                return scale
            footprint, window = placed
            grown = footprint
            if outer:
                grown = cv2.dilate(footprint.astype(np.uint8), _KERNEL3, iterations=outer) > 0
                if scene.region is not None:
                    grown &= scene.region[window.slices]
            predicted = int(grown.sum())
            if predicted == 0 or abs(predicted - target_px) <= 0.05 * target_px:
                return scale
            scale *= math.sqrt(target_px / predicted)
        return min(scale, max_scale)

    def _manipulate(
        self,
        scene: Scene,
        mode: str,
        mode_params: dict[str, Any],
        footprint: np.ndarray,
        window: _Window,
        noise: np.ndarray | None,
        texture: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Manipulate and smooth one window; return (new window values, changed-pixel mask)."""
        sl = window.slices
        source = scene.image[sl]
        manip = manipulate(
            mode,
            mode_params,
            source,
            footprint,
            None if noise is None else noise[sl],
            None if texture is None else texture[sl],
        )
        out = np.where(footprint[:, :, None], manip, source)
        if self.smooth_band > 0:
            # A thin band on the contour takes blurred values; the interior keeps the manipulation.
            fp8 = footprint.astype(np.uint8)
            outer = max(1, self.smooth_band // 3)
            inner = max(1, self.smooth_band - outer)
            band = (cv2.dilate(fp8, _KERNEL3, iterations=outer) > 0) & ~(cv2.erode(fp8, _KERNEL3, iterations=inner, borderType=cv2.BORDER_CONSTANT, borderValue=1) > 0)
            blurred = cv2.GaussianBlur(out, (3, 3), 2.0, borderType=cv2.BORDER_REFLECT)
            if blurred.ndim == 2:
                blurred = blurred[:, :, None]
            out = np.where(band[:, :, None], blurred, out)
        if scene.region is not None:
            out = np.where(scene.region[sl][:, :, None], out, source)
        changed = changed_pixels(source, out, scene.quantum, scene.min_change)
        return out.astype(np.float32, copy=False), changed


def _offset(u: float, size: int, extent: int) -> int:
    """Uniform top-left offset: inside the image when the extent fits, else a clipped overhang."""
    lo, hi = min(0, size - extent), max(0, size - extent)
    return lo + min(int(u * (hi - lo + 1)), hi - lo)
