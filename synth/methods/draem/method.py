"""DRAEM-style anomalies (Zavrtanik et al., ICCV 2021; algorithms.md §3).

Mask: Perlin noise with ``2**k`` periods per axis (``k`` uniform integer in
[``min_scale``, ``max_scale``), default [0, 6)), rotated by U(-90°, 90°), thresholded at
``threshold`` (0.5). Fill: an augmented texture image (``Scene.textures``, e.g. DTD) resized to the
image, with 3 of DRAEM's augmentations (gamma, brightness multiply/add, sharpen, hue/saturation,
solarize, posterize, invert, autocontrast, equalize, rotate). Without textures the fill is built
from the image itself (``fallback="tiles"``: its tiles shuffled on a random grid, then augmented)
or is procedural colour noise (``fallback="noise"``). Blend inside the mask:
``out = (1 - opacity) * image + opacity * texture``.

About the blend factor: DRAEM's code keeps the original with weight ``beta ~ U(0, 0.8)``, so the
texture weight (``opacity`` here) lies in (0.2, 1]; ``opacity_range`` defaults to that. (Written
as ``beta * T`` with beta in [0, 0.8) the texture could fade to nothing.)

Size: without a size bin the mask is the thresholded noise (its area is whatever the noise
gives, the record carries the measured bin; when the noise stays below the threshold everywhere,
which happens at 1-2 periods, the 1 % highest-noise pixels form the mask instead of none). With a size bin the threshold is moved (the mask
keeps the ``k`` highest-noise pixels) until the measured changed area lies in the bin.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import cv2
import numpy as np

from ...errors import InvalidParameterError
from ...image import luminance
from ...method import Method, Rendering, Scene, Spec
from ...perlin import rotated_noise
from ...sizing import RankedMask, Steering, bbox_window, draw_target_fraction, fit, measure_window

#: DRAEM's augmentation list; three distinct ones are applied to every texture.
AUGMENTATIONS = (
    "gamma",
    "brightness",
    "sharpen",
    "hue_saturation",
    "solarize",
    "posterize",
    "invert",
    "autocontrast",
    "equalize",
    "rotate",
)
FALLBACKS = ("tiles", "noise")
#: Share of the allowed pixels kept when the thresholded noise is empty (no size bin requested).
EMPTY_MASK_FALLBACK = 0.01
#: the size knob is the mask's pixel count, to which the changed area is roughly proportional
_PIXEL_COUNT = Steering(exponent=1.0)


def sample_augmentations(rng: np.random.Generator, count: int = 3) -> list[dict[str, Any]]:
    """Draw ``count`` distinct augmentations with their parameters (JSON)."""
    chosen = rng.choice(len(AUGMENTATIONS), size=count, replace=False)
    out = []
    for index in chosen:
        name = AUGMENTATIONS[int(index)]
        params: dict[str, Any] = {"name": name}
        if name == "gamma":
            params["gamma"] = float(rng.uniform(0.5, 2.0))
        elif name == "brightness":
            params["multiply"] = float(rng.uniform(0.8, 1.2))
            params["add"] = float(rng.uniform(-30, 30) / 255.0)
        elif name == "sharpen":
            params["amount"] = float(rng.uniform(0.1, 2.0))
        elif name == "hue_saturation":
            params["hue"] = float(rng.uniform(-50, 50) / 255.0)
            params["saturation"] = float(rng.uniform(-50, 50) / 255.0)
        elif name == "solarize":
            params["threshold"] = float(rng.uniform(32, 128) / 255.0)
        elif name == "posterize":
            params["bits"] = int(rng.integers(4, 9))
        elif name == "rotate":
            params["angle"] = float(rng.uniform(-45, 45))
        out.append(params)
    return out


def augment(texture: np.ndarray, augmentations: list[dict[str, Any]]) -> np.ndarray:
    """Apply drawn augmentations to float32 ``(H, W, C)`` in [0, 1]; returns the same layout."""
    out = texture.astype(np.float32, copy=True)
    for aug in augmentations:
        name = aug["name"]
        if name == "gamma":
            out = cv2.pow(np.clip(out, 0.0, 1.0), float(aug["gamma"])).reshape(out.shape)
        elif name == "brightness":
            out = out * np.float32(aug["multiply"]) + np.float32(aug["add"])
        elif name == "sharpen":
            blurred = cv2.GaussianBlur(out, (3, 3), 1.0).reshape(out.shape)
            out = out + np.float32(aug["amount"]) * (out - blurred)
        elif name == "hue_saturation":
            if out.shape[2] == 3:
                hsv = cv2.cvtColor(np.clip(out, 0, 1), cv2.COLOR_RGB2HSV)
                hsv[:, :, 0] = np.mod(hsv[:, :, 0] + np.float32(360.0 * aug["hue"]), 360.0)
                hsv[:, :, 1] = np.clip(hsv[:, :, 1] + np.float32(aug["saturation"]), 0.0, 1.0)
                out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        elif name == "solarize":
            out = np.where(out >= np.float32(aug["threshold"]), 1.0 - out, out)
        elif name == "posterize":
            levels = np.float32(2 ** int(aug["bits"]))
            out = np.floor(np.clip(out, 0, 1) * (levels - 1) + 0.5) / (levels - 1)
        elif name == "invert":
            out = 1.0 - out
        elif name == "autocontrast":
            # per-channel range via OpenCV: numpy's strided (N, C) reductions are ~10x slower
            ranges = [cv2.minMaxLoc(np.ascontiguousarray(out[:, :, c]))[:2] for c in range(out.shape[2])]
            lo = np.asarray([r[0] for r in ranges], np.float32)
            hi = np.asarray([r[1] for r in ranges], np.float32)
            out = (out - lo) / np.maximum(hi - lo, np.float32(1e-6))
        elif name == "equalize":
            u8 = np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)
            out = np.stack([cv2.equalizeHist(np.ascontiguousarray(u8[:, :, c])) for c in range(u8.shape[2])], axis=2)
            out = out.astype(np.float32) / 255.0
        elif name == "rotate":
            h, w = out.shape[:2]
            matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(aug["angle"]), 1.0)
            out = cv2.warpAffine(out, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        else:
            raise InvalidParameterError(f"unknown augmentation {name!r}")
        if out.ndim == 2:
            out = out[:, :, None]
        out = np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
    return out


def sample_fill(rng: np.random.Generator, scene: Scene, fallback: str) -> dict[str, Any]:
    """Draw the fill: which texture (or the fallback) and its augmentations."""
    fill: dict[str, Any] = {"augmentations": sample_augmentations(rng)}
    if scene.textures:
        fill["source"] = "texture"
        fill["texture_index"] = int(rng.integers(len(scene.textures)))
    else:
        fill["source"] = fallback
        fill["seed"] = int(rng.integers(0, 2**31 - 1))
        if fallback == "tiles":
            fill["grid"] = int(rng.integers(2, 9))
    return fill


def fill_image(scene: Scene, fill: dict[str, Any]) -> np.ndarray:
    """The augmented fill, float32 ``(H, W, C)`` matching the scene's image."""
    height, width, channels = scene.height, scene.width, scene.channels
    if fill["source"] == "texture":
        if not scene.textures:
            raise InvalidParameterError("this spec fills from a texture image but no textures were given")
        texture = scene.textures[fill["texture_index"] % len(scene.textures)]
        shrink = texture.shape[0] * texture.shape[1] > height * width
        base = cv2.resize(texture, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if base.ndim == 2:
            base = base[:, :, None]
        if channels == 1 and base.shape[2] == 3:
            base = luminance(base)[:, :, None]
    elif fill["source"] == "tiles":
        base = _shuffled_tiles(scene.image, int(fill["grid"]), int(fill["seed"]))
    elif fill["source"] == "noise":
        base = _noise_texture(height, width, channels, int(fill["seed"]))
    else:
        raise InvalidParameterError(f"unknown fill source {fill['source']!r}")
    return augment(np.ascontiguousarray(base, dtype=np.float32), fill["augmentations"])


def _shuffled_tiles(image: np.ndarray, grid: int, seed: int) -> np.ndarray:
    """The image cut into a ``grid x grid`` set of tiles, permuted (and flipped) at random."""
    height, width = image.shape[:2]
    rng = np.random.default_rng(seed)
    # an image smaller than the grid would give empty tiles; fewer tiles keep each >= 1 px
    grid = max(1, min(grid, height, width))
    ys = np.linspace(0, height, grid + 1).astype(int)
    xs = np.linspace(0, width, grid + 1).astype(int)
    cells = [(ys[i], ys[i + 1], xs[j], xs[j + 1]) for i in range(grid) for j in range(grid)]
    order = rng.permutation(len(cells))
    flips = rng.integers(0, 4, size=len(cells))
    out = np.empty_like(image)
    for (y0, y1, x0, x1), index, flip in zip(cells, order, flips):
        sy0, sy1, sx0, sx1 = cells[int(index)]
        tile = image[sy0:sy1, sx0:sx1]
        if flip & 1:
            tile = tile[::-1]
        if flip & 2:
            tile = tile[:, ::-1]
        out[y0:y1, x0:x1] = cv2.resize(tile, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR).reshape(y1 - y0, x1 - x0, -1)
    return out


def _noise_texture(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    """Procedural colour texture: per-channel fractal noise mapped to [0, 1]."""
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(channels):
        res = int(2 ** rng.integers(1, 5))
        layer = rotated_noise((height, width), (res, res), rng, octaves=4)
        layers.append(np.clip(0.5 + 0.5 * layer, 0.0, 1.0))
    return np.stack(layers, axis=2).astype(np.float32)


class DRAEM(Method):
    """DRAEM: Perlin-noise mask filled with an augmented texture image.

    Options: ``min_scale``, ``max_scale`` (integers, 0 <= min < max <= 8; default 0, 6) of the
    noise periods ``2**k``; ``threshold`` in (-1, 1) (default 0.5); ``opacity_range`` within
    (0, 1] (default (0.2, 1.0)): weight of the texture; ``fallback`` ``"tiles"`` (default) or
    ``"noise"`` when no textures are given; ``rotate`` (default True): rotate the noise by
    U(-90°, 90°).
    """

    #: the size knob's steering and the share kept from an empty noise mask (read by the
    #: batched renderer too)
    steering: ClassVar[Steering] = _PIXEL_COUNT
    empty_mask_fallback: ClassVar[float] = EMPTY_MASK_FALLBACK

    name = "draem"
    batched = "synth.methods.draem.batched:NoiseMaskBatch"
    shapes = ("perlin",)
    modes = ("texture_blend",)
    targets_size = True
    octaves = 1

    def __init__(
        self,
        min_scale: int = 0,
        max_scale: int = 6,
        threshold: float = 0.5,
        opacity_range: Sequence[float] = (0.2, 1.0),
        fallback: str = "tiles",
        rotate: bool = True,
    ) -> None:
        if not (0 <= int(min_scale) < int(max_scale) <= 8):
            raise InvalidParameterError(f"need 0 <= min_scale < max_scale <= 8, got {min_scale}, {max_scale}")
        if not -1.0 < threshold < 1.0:
            raise InvalidParameterError(f"threshold must lie in (-1, 1), got {threshold}")
        lo, hi = float(opacity_range[0]), float(opacity_range[1])
        if not 0.0 < lo <= hi <= 1.0:
            raise InvalidParameterError(f"opacity_range must satisfy 0 < low <= high <= 1, got {opacity_range!r}")
        if fallback not in FALLBACKS:
            raise InvalidParameterError(f"fallback must be one of {', '.join(FALLBACKS)}, got {fallback!r}")
        self.scales = (int(min_scale), int(max_scale))
        self.threshold = float(threshold)
        self.opacity_range = (lo, hi)
        self.fallback = fallback
        self.rotate = bool(rotate)

    # ---------------------------------------------------------------- draw
    def _noise_params(self, rng: np.random.Generator) -> dict[str, Any]:
        return {
            "scale_exponents": [int(rng.integers(*self.scales)), int(rng.integers(*self.scales))],
            "angle": float(rng.uniform(-90.0, 90.0)) if self.rotate else 0.0,
            "noise_seed": int(rng.integers(0, 2**31 - 1)),
            "threshold": self.threshold,
            "octaves": self.octaves,
        }

    def sample(self, rng, scene, *, shape=None, mode=None, size_bin=None, seed=0) -> Spec:
        shape = self._choose(rng, shape, self.shapes, "shape")
        mode = self._choose(rng, mode, self.modes, "mode")
        params = self._noise_params(rng)
        params["opacity"] = float(rng.uniform(*self.opacity_range))
        params["fill"] = sample_fill(rng, scene, self.fallback)
        if size_bin is not None:
            params["target_fraction"] = draw_target_fraction(rng, size_bin)
        return Spec(method=self.name, shape=shape, mode=mode, seed=seed, size_bin=size_bin, params=params)

    # ---------------------------------------------------------------- render
    def candidates(self, scene: Scene, spec: Spec) -> np.ndarray | None:
        """Pixels the mask may cover (the region); ``None`` = everywhere."""
        return scene.region

    def blend_source(self, scene: Scene, spec: Spec) -> np.ndarray:
        return fill_image(scene, spec.params["fill"])

    def render(self, scene: Scene, spec: Spec) -> Rendering:
        p = spec.params
        candidates = self.candidates(scene, spec)
        blend = self.blend_source(scene, spec)
        opacity = np.float32(p["opacity"])
        ranked_cache: dict[int, RankedMask] = {}

        def ranked(attempt: int) -> RankedMask:
            if attempt not in ranked_cache:
                ky, kx = p["scale_exponents"]
                noise = rotated_noise(
                    (scene.height, scene.width), (2**ky, 2**kx), [int(p["noise_seed"]), attempt],
                    angle=p["angle"], octaves=int(p.get("octaves", 1)), persistence=float(p.get("persistence", 0.5)),
                )
                ranked_cache[attempt] = RankedMask(noise, candidates)
            return ranked_cache[attempt]

        def render_at(knob: float, attempt: int):
            rm = ranked(attempt)
            if knob < 0:
                mask = rm.threshold_mask(p["threshold"])
                if not mask.any():
                    # at 1-2 noise periods the noise may stay below the threshold everywhere:
                    # keep the highest EMPTY_MASK_FALLBACK share of the allowed pixels instead
                    mask = rm.mask(max(1, int(round(EMPTY_MASK_FALLBACK * rm.count))))
            else:
                mask = rm.mask(knob)
            window = bbox_window(mask)
            y0, y1, x0, x1 = window
            source = scene.image[y0:y1, x0:x1]
            inside = mask[y0:y1, x0:x1, None]
            values = np.where(inside, (1.0 - opacity) * source + opacity * blend[y0:y1, x0:x1], source)
            values, changed = measure_window(scene, window, values)
            return int(changed.sum()), (window, values, int(mask.sum()))

        allowed = scene.height * scene.width if candidates is None else int(candidates.sum())
        start = 1.0
        if spec.size_bin is not None:
            start = max(1.0, p["target_fraction"] * scene.height * scene.width)
        (window, values, mask_pixels), extra = fit(
            scene, spec, render_at, natural=-1.0, start=start, steering=_PIXEL_COUNT, lower=1.0, upper=float(allowed),
            hint=self._hint(),
        )
        extra["mask_pixels"] = mask_pixels
        return Rendering(image=values, extra=extra, window=window)

    def _hint(self) -> str:
        return "the noise mask was empty or the fill equals the image; try another seed or a lower threshold"
