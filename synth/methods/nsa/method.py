"""NSA, Natural Synthetic Anomalies (Schlüter et al., ECCV 2022; algorithms.md §2).

A rectangular patch of a second normal image (the *source*; the image itself when there is no
partner) is resized and blended into the image with Poisson image editing (OpenCV
``seamlessClone``): ``normal_clone`` for objects, ``mixed_clone`` for textures. The first patch
is always added, each of up to ``n_patches - 1`` further ones with p = 0.5.

Patch half-sizes: ``clip((gamma_lower + Gamma(gamma_shape, gamma_scale)) * side, width_bounds)``
(the paper's Eq. 5 writes full widths, ``0.06 + Gamma(2, 0.1)``; halved, that is the default
0.03 + Gamma(2, 0.05) used here, with the bounds of ``presets`` also as half-sizes).
Source centre uniform, redrawn (up to ``attempts`` times) until the patch holds more than
``t_object`` object pixels; resize factor ``clip(N(1, resize_sigma), resize_bounds)`` limited so
the patch stays within the bounds (paper Eq. 9); destination centre uniform, redrawn until the
destination patch holds more than ``t_object`` object pixels and more than ``t_overlap`` of the
source patch's object pixels land on object pixels. When no candidate satisfies the constraints
the best one seen is used (the reference implementation gives up and returns the image
unchanged). Object masks: ``|mean over channels - background| > threshold``, median filter 7,
only for images with a flat background (see ``synth.foreground``); the paper's Eq. 8 prints
``<``, which would select the background. ``Scene.foreground``, when given, is the image's mask.

Precision: ``seamlessClone`` works on 8-bit images. The clone is computed on the 8-bit version of
the window around the patches, and the *change* it makes (clone minus 8-bit input) is added to the
full-precision image, only on the pixels the clone changed. So 16-bit and float images keep their
full precision everywhere outside the changed pixels (bit-identical there), and the blended
values inside carry 8-bit precision of the Poisson solution. Channel order does not matter to
Poisson blending (each channel is solved on its own); gray images are cloned as three equal
channels.

Labels (``Rendering.label``, NSA Eq. 13-14), all median filtered (kernel 5):
``binary``     1 where ``mean_c |Δ| > label_tolerance``;
``continuous`` ``mean_c |Δ|`` in [0, 1] units (the paper's unbounded 0-255 values divided by 255);
``logistic``   ``binary / (1 + exp(-k (255 mean_c |Δ| - x0)))`` with ``logistic = (k, x0)`` in
               0-255 units (paper default k = 1/3, x0 = 7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from ...errors import InvalidParameterError
from ...foreground import foreground_mask
from ...method import Method, Rendering, Scene, Spec
from ...partner import partner_choice, partner_image
from ...sizebins import SizeBin
from ...sizing import (
    Window,
    box_around,
    draw_target_fraction,
    fit,
    measure_window,
    target_pixels,
    union_window,
)
from .patches import MIN_PATCH, SCALE_UPPER, object_masks, resized_patch, to_u8
from .presets import NSA_PRESETS

LABELS = ("binary", "continuous", "logistic")
_CLONE_FLAGS = {"normal_clone": cv2.NORMAL_CLONE, "mixed_clone": cv2.MIXED_CLONE}
_OBJECT_RESIZE = (0.7, 1.3)
_TEXTURE_RESIZE = (0.5, 2.0)
#: Share of a patch that a Poisson clone typically changes; only the first size guess uses it.
_EXPECTED_CHANGE = 0.7
_PLACEMENT_ATTEMPTS = 4


@dataclass(frozen=True)
class _Patch:
    src: tuple[int, int, int, int]  # y0, y1, x0, x1 in the source image
    dst_centre: tuple[float, float]  # cy, cx in the image
    dst_size: tuple[int, int]  # h, w before the size-bin scale
    object_score: float


class NSA(Method):
    """Natural Synthetic Anomalies: Poisson-blended, resized patches from a second normal image.

    Options (keyword arguments, JSON/YAML friendly):

    ``preset``          MVTec AD category (``bottle`` ... ``zipper``, ``carpet`` ... ``wood``) whose
                        paper settings fill every option not given explicitly.
    ``kind``            ``"object"`` / ``"texture"`` / ``None`` (auto: object when the image has a
                        flat background or a foreground mask is given). Chooses the default mode
                        (``normal_clone`` / ``mixed_clone``) and resize bounds.
    ``width_bounds``    ((min, max), (min, max)) half-height and half-width fractions, each in
                        (0, 0.5]; default ((0.03, 0.4), (0.03, 0.4)).
    ``gamma_shape``, ``gamma_scale``, ``gamma_lower``  patch half-size distribution, default 2, 0.05, 0.03.
    ``resize_bounds``   (low, high) with 0 < low <= 1 <= high; default (0.7, 1.3) objects, (0.5, 2) textures.
    ``resize_sigma``    standard deviation of the resize factor around 1 (default 0.5).
    ``n_patches``       1-10, default 3 (objects) / 4 (textures).
    ``t_object``        [0, 1), default 0.25.   ``t_overlap``  [0, 1), default 0.25.
    ``background``      (brightness, threshold) in 0-255 units for object masks, or ``None`` to
                        estimate the background from the image border (texture images get none).
    ``object_masks``    False disables the object constraints entirely.
    ``label``           ``"binary"`` (default), ``"continuous"`` or ``"logistic"``.
    ``logistic``        (k, x0) in 0-255 units, default (1/3, 7).
    ``label_tolerance`` mean absolute change (0-1 units) for a positive label, default 1/255.
    ``attempts``        rejection-sampling tries per patch (default 200).
    """

    name = "nsa"
    samples_pixels = True
    batched = "synth.methods.nsa.batched:NSABatch"
    shapes = ("patch",)
    modes = ("normal_clone", "mixed_clone")
    targets_size = True
    needs_partner = True

    def __init__(
        self,
        preset: str | None = None,
        *,
        kind: str | None = None,
        width_bounds: Sequence[Sequence[float]] | None = None,
        gamma_shape: float = 2.0,
        gamma_scale: float = 0.05,
        gamma_lower: float = 0.03,
        resize_bounds: Sequence[float] | None = None,
        resize_sigma: float = 0.5,
        n_patches: int | None = None,
        t_object: float | None = None,
        t_overlap: float | None = None,
        background: Sequence[float] | None = None,
        object_masks: bool = True,
        label: str = "binary",
        logistic: Sequence[float] | None = None,
        label_tolerance: float = 1.0 / 255.0,
        attempts: int = 200,
    ) -> None:
        settings: dict[str, Any] = {}
        if preset is not None:
            if preset not in NSA_PRESETS:
                raise InvalidParameterError(
                    f"unknown NSA preset {preset!r}; choose from {', '.join(sorted(NSA_PRESETS))}"
                )
            settings = dict(NSA_PRESETS[preset])
        self.preset = preset
        self.kind = kind if kind is not None else settings.get("kind")
        if self.kind not in (None, "object", "texture"):
            raise InvalidParameterError(f"kind must be 'object', 'texture' or None, got {self.kind!r}")
        bounds = width_bounds if width_bounds is not None else settings.get("width_bounds", ((0.03, 0.4), (0.03, 0.4)))
        try:
            self.width_bounds = tuple((float(lo), float(hi)) for lo, hi in bounds)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"width_bounds must be ((lo, hi), (lo, hi)), got {bounds!r}") from None
        if len(self.width_bounds) != 2 or not all(0.0 < lo <= hi <= 0.5 for lo, hi in self.width_bounds):
            raise InvalidParameterError(
                f"width_bounds must be two (lo, hi) half-size fractions with 0 < lo <= hi <= 0.5, got {bounds!r}"
            )
        if gamma_shape <= 0 or gamma_scale <= 0 or gamma_lower < 0:
            raise InvalidParameterError("gamma_shape and gamma_scale must be > 0 and gamma_lower >= 0")
        self.gamma = (float(gamma_shape), float(gamma_scale), float(gamma_lower))
        self.resize_bounds = None if resize_bounds is None else (float(resize_bounds[0]), float(resize_bounds[1]))
        if self.resize_bounds is not None and not (0.0 < self.resize_bounds[0] <= 1.0 <= self.resize_bounds[1]):
            raise InvalidParameterError(f"resize_bounds must satisfy 0 < low <= 1 <= high, got {resize_bounds}")
        if resize_sigma < 0:
            raise InvalidParameterError("resize_sigma must be >= 0")
        self.resize_sigma = float(resize_sigma)
        self.n_patches = n_patches if n_patches is not None else settings.get("n_patches")
        if self.n_patches is not None and not (1 <= int(self.n_patches) <= 10):
            raise InvalidParameterError(f"n_patches must lie in 1..10, got {self.n_patches}")
        self.t_object = float(t_object if t_object is not None else settings.get("t_object", 0.25))
        self.t_overlap = float(t_overlap if t_overlap is not None else settings.get("t_overlap", 0.25))
        if not (0.0 <= self.t_object < 1.0 and 0.0 <= self.t_overlap < 1.0):
            raise InvalidParameterError("t_object and t_overlap must lie in [0, 1)")
        bg = background if background is not None else settings.get("background")
        self.preset_has_background = preset is not None
        self.background = None if bg is None else (float(bg[0]) / 255.0, float(bg[1]) / 255.0)
        self.object_masks = bool(object_masks)
        if label not in LABELS:
            raise InvalidParameterError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
        self.label = label
        lg = logistic if logistic is not None else settings.get("logistic", (1.0 / 3.0, 7.0))
        self.logistic = (float(lg[0]), float(lg[1]))
        if not 0.0 <= label_tolerance < 1.0:
            raise InvalidParameterError("label_tolerance must lie in [0, 1)")
        self.label_tolerance = float(label_tolerance)
        if attempts < 1:
            raise InvalidParameterError("attempts must be >= 1")
        self.attempts = int(attempts)

    # ---------------------------------------------------------------- draw
    def _scene_kind(self, scene: Scene) -> str:
        if self.kind is not None:
            return self.kind
        if scene.foreground is not None:
            return "object"
        # the same test the object masks use: no flat background (or a mask that is mostly
        # border grain) means the whole image is foreground, i.e. a texture
        return "texture" if foreground_mask(scene.image).all() else "object"

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
        shape = self._choose(rng, shape, self.shapes, "shape")
        kind = self._scene_kind(scene)
        if mode is None:
            mode = "normal_clone" if kind == "object" else "mixed_clone"
        mode = self._choose(rng, mode, self.modes, "mode")
        n_max = int(self.n_patches if self.n_patches is not None else (3 if kind == "object" else 4))
        g_shape, g_scale, g_lower = self.gamma
        resize_bounds = self.resize_bounds or (_OBJECT_RESIZE if kind == "object" else _TEXTURE_RESIZE)
        patches = []
        for i in range(n_max):
            add = i == 0 or bool(rng.random() < 0.5)
            half = [
                float(np.clip(g_lower + rng.gamma(g_shape, g_scale), lo, hi)) for lo, hi in self.width_bounds
            ]
            resize = float(np.clip(rng.normal(1.0, self.resize_sigma), *resize_bounds))
            if add:
                patches.append({"half_size": half, "resize": resize})
        params: dict[str, Any] = {
            "preset": self.preset,
            "kind": kind,
            "patches": patches,
            "width_bounds": [list(b) for b in self.width_bounds],
            "t_object": self.t_object,
            "t_overlap": self.t_overlap,
            "object_masks": self._mask_setting(kind),
            "attempts": self.attempts,
            "placement_seed": int(rng.integers(0, 2**31 - 1)),
            "partner_index": partner_choice(rng, scene),
            "label": self.label,
            "logistic": list(self.logistic),
            "label_tolerance": self.label_tolerance,
        }
        if size_bin is not None:
            params["target_fraction"] = draw_target_fraction(rng, size_bin)
        return Spec(method=self.name, shape=shape, mode=mode, seed=seed, size_bin=size_bin, params=params)

    # ---------------------------------------------------------------- render
    def render(self, scene: Scene, spec: Spec) -> Rendering:
        p = spec.params
        if spec.mode not in _CLONE_FLAGS:
            raise InvalidParameterError(f"unknown NSA mode {spec.mode!r}")
        source, partner_name = partner_image(scene, int(p["partner_index"]), "self")
        dst_mask, src_mask = object_masks(scene, source, p["object_masks"])
        layouts: dict[int, tuple[list[_Patch], float]] = {}

        def render_at(scale: float, attempt: int) -> tuple[int, tuple]:
            if attempt not in layouts:
                layouts[attempt] = self.placement(scene, spec, attempt, src_mask, dst_mask)
            layout, first_guess = layouts[attempt]
            window, values = self._clone(scene, spec.mode, source, layout, scale)
            values, changed = measure_window(scene, window, values)
            return int(changed.sum()), (window, values, changed, layout, first_guess)

        (window, values, changed, layout, first_guess), fitted = fit(
            scene, spec, render_at, upper=SCALE_UPPER, attempts=_PLACEMENT_ATTEMPTS,
            hint="Poisson blending of similar regions changes few pixels; try another seed, a partner "
            "image or a larger bin" if spec.size_bin is not None else
            "the source and destination may be too similar (flat image); pass a partner image or another seed",
        )
        extra = self.describe(
            scene, layout, first_guess, fitted["size_knob"], partner_name, fitted["placement_attempt"],
            fitted.get("scale_steps", 1),
        )
        label = self._label(scene, window, values, changed, p)
        return Rendering(image=values, label=label, extra=extra, window=window)

    def placement(
        self, scene: Scene, spec: Spec, attempt: int, src_mask: np.ndarray | None, dst_mask: np.ndarray | None
    ) -> tuple[list[_Patch], float]:
        """The patch layout of placement ``attempt`` and the scale it was drawn at (the size
        search's knob multiplies that scale); ``src_mask``/``dst_mask`` from ``_object_masks``."""
        p = spec.params
        height, width = scene.height, scene.width
        # the later attempts of a size request blend only the first patch, at an aspect ratio
        # of at most 3: several minimum-size patches, or a strip a few pixels thin (whose
        # Poisson solution barely differs from its border), can jump over the small bins
        patches = p["patches"]
        if spec.size_bin is not None and attempt >= _PLACEMENT_ATTEMPTS // 2:
            patches = [_limit_aspect(p["patches"][0], height, width, 3.0)]
        first_guess = 1.0
        if spec.size_bin is not None:
            target_px = target_pixels(spec.size_bin, p["target_fraction"], scene)
            drawn_area = sum(
                4.0 * pt["half_size"][0] * height * pt["half_size"][1] * width * pt["resize"] ** 2 for pt in patches
            )
            first_guess = math.sqrt(target_px / (_EXPECTED_CHANGE * max(drawn_area, 1.0)))
        layout = self._layout(scene, p, patches, first_guess, src_mask, dst_mask, attempt, bounded=spec.size_bin is None)
        return layout, first_guess

    def describe(
        self, scene: Scene, layout: list[_Patch], first_guess: float, knob: float, source: str, attempt: int, steps: int
    ) -> dict[str, Any]:
        """The rendering's ``extra`` (record params) for the layout blended at size knob ``knob``."""
        return {
            "source": source,
            "placement_attempt": attempt,
            "scale_steps": steps,
            **self.describe_layout(scene, layout, first_guess, knob),
        }

    def describe_layout(self, scene: Scene, layout: list[_Patch], first_guess: float, knob: float) -> dict[str, Any]:
        """The record params of one render: patches blended, overall scale, boxes, object scores."""
        return {
            "patches_used": len(layout),
            "scale": float(first_guess * knob),
            "boxes": [list(b) for b in self.dst_boxes(scene, layout, knob)],
            "object_scores": [round(pt.object_score, 4) for pt in layout],
        }

    # ---------------------------------------------------------------- pieces
    def _mask_setting(self, kind: str) -> str | list[float]:
        """How object masks are made: "off", "estimate" or [background, threshold] in 0-1 units."""
        if not self.object_masks or kind == "texture":
            return "off"
        if self.background is not None:
            return [self.background[0], self.background[1]]
        if self.preset_has_background:
            return "off"  # the preset says: no object masks for this category
        return "estimate"

    def _layout(
        self,
        scene: Scene,
        p: dict[str, Any],
        patches: list[dict[str, Any]],
        scale: float,
        src_mask: np.ndarray | None,
        dst_mask: np.ndarray | None,
        attempt: int,
        bounded: bool,
    ) -> list[_Patch]:
        """Choose source boxes and destination centres (rejection sampling from the spec's seed)."""
        rng = np.random.default_rng([int(p["placement_seed"]), attempt])
        height, width = scene.height, scene.width
        (hmin, hmax), (wmin, wmax) = p["width_bounds"]
        region_pixels = None if scene.region is None else np.flatnonzero(scene.region)
        layout = []
        for pt in patches:
            hy, hx = pt["half_size"]
            h = _clamp_size(2 * hy * height * scale, height)
            w = _clamp_size(2 * hx * width * scale, width)
            best: tuple[float, tuple[int, int, int, int]] | None = None
            for _ in range(int(p["attempts"])):
                cy = rng.uniform(hmin * height, height - hmin * height)
                cx = rng.uniform(wmin * width, width - wmin * width)
                box = box_around(cy, cx, h, w, height, width)
                score = 1.0 if src_mask is None else float(src_mask[box[0] : box[1], box[2] : box[3]].mean())
                if best is None or score > best[0]:
                    best = (score, box)
                if score > p["t_object"] or src_mask is None:
                    break
            src_score, src_box = best
            # paper Eq. 9: resize, but keep the patch inside the width bounds (unless a size bin
            # asks for another size)
            s = pt["resize"]
            if bounded:
                s = max(2 * hmin * height / h, 2 * wmin * width / w, min(s, 2 * hmax * height / h, 2 * wmax * width / w))
            dh = _clamp_size(s * (src_box[1] - src_box[0]), height)
            dw = _clamp_size(s * (src_box[3] - src_box[2]), width)
            src_obj = None
            if src_mask is not None and dst_mask is not None:
                crop = src_mask[src_box[0] : src_box[1], src_box[2] : src_box[3]].astype(np.uint8)
                src_obj = cv2.resize(crop, (dw, dh), interpolation=cv2.INTER_NEAREST).astype(bool)
            best_dst: tuple[float, tuple[float, float]] | None = None
            for _ in range(int(p["attempts"])):
                if region_pixels is not None:
                    index = int(region_pixels[int(rng.integers(len(region_pixels)))])
                    cy, cx = divmod(index, width)
                    cy, cx = cy + 0.5, cx + 0.5
                else:
                    cy = rng.uniform(dh / 2.0 + 1, height - dh / 2.0 - 1) if height > dh + 2 else height / 2.0
                    cx = rng.uniform(dw / 2.0 + 1, width - dw / 2.0 - 1) if width > dw + 2 else width / 2.0
                score = 1.0
                if dst_mask is not None:
                    y0, y1, x0, x1 = box_around(cy, cx, dh, dw, height, width, margin=1)
                    window = dst_mask[y0:y1, x0:x1]
                    obj = float(window.mean())
                    overlap = 1.0
                    if src_obj is not None and src_obj.shape == window.shape and src_obj.any():
                        overlap = float((window & src_obj).sum() / src_obj.sum())
                    score = min(obj / max(p["t_object"], 1e-6), overlap / max(p["t_overlap"], 1e-6))
                if best_dst is None or score > best_dst[0]:
                    best_dst = (score, (cy, cx))
                if score > 1.0 or dst_mask is None:
                    break
            layout.append(_Patch(src=src_box, dst_centre=best_dst[1], dst_size=(dh, dw), object_score=min(src_score, best_dst[0])))
        return layout

    @staticmethod
    def dst_boxes(scene: Scene, layout: list[_Patch], scale: float) -> list[tuple[int, int, int, int]]:
        boxes = []
        for pt in layout:
            h = _clamp_size(pt.dst_size[0] * scale, scene.height)
            w = _clamp_size(pt.dst_size[1] * scale, scene.width)
            boxes.append(box_around(pt.dst_centre[0], pt.dst_centre[1], h, w, scene.height, scene.width, margin=1))
        return boxes

    def _clone(
        self,
        scene: Scene,
        mode: str,
        source: np.ndarray,
        layout: list[_Patch],
        scale: float,
    ) -> tuple[Window, np.ndarray]:
        """Blend every patch (in order) into the window around them; return (window, float values)."""
        boxes = self.dst_boxes(scene, layout, scale)
        window = union_window(boxes, scene.height, scene.width, pad=1)
        wy0, wy1, wx0, wx1 = window
        original = scene.image[wy0:wy1, wx0:wx1]
        dst8 = to_u8(original)
        current = dst8.copy()
        flag = _CLONE_FLAGS[mode]
        for pt, (y0, y1, x0, x1) in zip(layout, boxes):
            h, w = y1 - y0, x1 - x0
            if h < MIN_PATCH or w < MIN_PATCH:
                continue  # the image is too small for this patch
            sy0, sy1, sx0, sx1 = pt.src
            patch = resized_patch(to_u8(source[sy0:sy1, sx0:sx1]), h, w)
            canvas = current.copy()
            canvas[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0] = patch
            mask = np.zeros(current.shape[:2], np.uint8)
            # the outer ring stays zero: OpenCV needs destination pixels around the solved region
            mask[y0 - wy0 + 1 : y1 - wy0 - 1, x0 - wx0 + 1 : x1 - wx0 - 1] = 255
            centre = (x0 - wx0 + 1 + (w - 2) // 2, y0 - wy0 + 1 + (h - 2) // 2)
            current = cv2.seamlessClone(canvas, current, mask, centre, flag)
        delta = current.astype(np.float32) - dst8.astype(np.float32)
        if scene.channels == 1:
            delta = delta[:, :, :1]
        values = original + delta * np.float32(1.0 / 255.0)
        # bit-identical outside what the clone changed (16-bit / float inputs)
        values = np.where((delta != 0).any(axis=2, keepdims=True), values, original)
        return window, values.astype(np.float32, copy=False)

    def _label(self, scene: Scene, window: Window, values: np.ndarray, changed: np.ndarray, p: dict[str, Any]) -> np.ndarray:
        y0, y1, x0, x1 = window
        mean_delta = np.abs(values - scene.image[y0:y1, x0:x1]).mean(axis=2).astype(np.float32)
        binary = (mean_delta > p["label_tolerance"]).astype(np.uint8)
        binary = cv2.medianBlur(binary, 5).astype(np.float32)
        if p["label"] == "binary":
            return binary
        continuous = cv2.medianBlur(mean_delta, 5) * binary
        if p["label"] == "continuous":
            return continuous.astype(np.float32)
        k, x0_ = p["logistic"]
        return (binary / (1.0 + np.exp(-k * (255.0 * continuous - x0_)))).astype(np.float32)


def _limit_aspect(patch: dict[str, Any], height: int, width: int, limit: float) -> dict[str, Any]:
    """The patch with its pixel aspect ratio clipped to [1/limit, limit], area kept."""
    ph, pw = patch["half_size"][0] * height, patch["half_size"][1] * width
    ratio = min(max(ph / pw, 1.0 / limit), limit)
    area = ph * pw
    return {**patch, "half_size": [math.sqrt(area * ratio) / height, math.sqrt(area / ratio) / width]}


def _clamp_size(value: float, side: int) -> int:
    # seamlessClone (OpenCV 4.x/5.x) fails on masks thinner than 3 pixels; with the zero ring
    # that means patches of at least 5 pixels
    return int(min(max(round(value), MIN_PATCH), max(MIN_PATCH, side - 2)))
