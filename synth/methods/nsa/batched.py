"""NSA (``method.NSA``) rendered for a whole batch on any torch device.

What runs where:

* on the CPU, once per anomaly (``plan``, on the preparation threads): the partner (or the
  image itself) as the source, the object masks (``patches.object_masks``), the 8-bit source and
  the first placement; once per further placement attempt: the patch layout, by
  ``NSA.placement`` (the numpy path's rejection sampling from the spec's seed); once per render
  of the size search: the destination boxes (``NSA.dst_boxes``) and each source
  patch resized to its box (``patches.resized_patch``, OpenCV's area/bilinear filters). Geometry and
  patches are therefore the numpy path's, exactly;
* on the device: each patch's Poisson blend, ``poisson.seamless_clone`` (OpenCV's
  ``seamlessClone`` algorithm as a DST solve, normal or mixed clone, on the 8-bit window as the
  numpy path does), the patches in order, each into the result of the previous ones; the change
  the clones made added to the full-precision image (bit-identical where nothing changed), the
  region, quantisation and the measured changed area;
* the size search is ``sizing.fit``'s (knob = scale relative to the layout's first guess, at most
  ``patches.SCALE_UPPER``), batched: ``boxes.BoxBatch.run``.

Each patch is solved on its own (one FFT batch over its 3 channels): patches differ in size, and
solving each alone keeps an anomaly's bytes independent of the rest of its batch on every device
(a batched cuFFT plan may round differently from a single one).

Agreement with the numpy path (bounds asserted in ``tests/test_batched.py``): the Poisson solve
matches ``cv2.seamlessClone`` on the same inputs except where the exact value is within float32
rounding of an integer, there by one level (about 0.1 % of the solved pixels; which ones depends
on the CPU's FFT summation order). A patch laid over an earlier patch clones onto that
difference, and under mixed clone a one-level change flips which gradient is kept, so inside its
box the outputs can differ by more (5 levels seen). Through the size search a difference can
change a measured area by a few pixels and so the chosen scale; both still land in the bin.
Measured on one machine: of 96 anomalies at 160x160 (tests/test_batched.py), 63 are byte-identical to
``synth.synthesize(..., "nsa")``'s for the same seed, all in the same bin, masks at IoU >= 0.979
(mean 0.9998); the folder protocol on brick, grass and gravel (512x512, 15 outputs): 6 files
identical, every mask identical, the other values within one level. Larger anomalies solve more
pixels, so fewer are byte-identical. The test asserts: the requested bin, and at the same scale
at most one level apart outside boxes that overlap an earlier patch. Records carry
``"renderer": "torch"``; ``Rendering.label`` (NSA's binary/continuous/logistic label) is not
made here: the batch's masks and |difference| maps stand for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...batched.boxes import BoxBatch
from ...batched.layout import changed_in_batch, quantize_batch
from ...batched.steering import Rendered, Renders
from ...method import Scene, Spec
from ...partner import partner_image
from ...sizing import union_window
from .patches import MIN_PATCH, SCALE_UPPER, object_masks, resized_patch, to_u8
from .poisson import seamless_clone

_INV_255 = np.float32(1.0 / 255.0)


@dataclass(frozen=True)
class _NSAPlan:
    """One spec's CPU preparation: the source's name and 8-bit pixels ``(H, W, 3)``, the
    (destination, source) object masks or ``None``s, and placement attempt 0's (layout, scale)."""

    source: str
    source_u8: np.ndarray
    object_masks: tuple[np.ndarray | None, np.ndarray | None]
    first_layout: tuple[list, float]


class NSABatch(BoxBatch):
    """NSA: resized patches of a source image Poisson-blended into the image."""

    needs_pixels = True

    def __init__(self, method, *args, **kwargs) -> None:
        self.method = method
        super().__init__(method, *args, **kwargs)

    @staticmethod
    def plan(method, spec: Spec, scene: Scene, textures=()) -> _NSAPlan:
        """The source, object masks and first placement of one spec (CPU, thread-safe)."""
        source, name = partner_image(scene, int(spec.params["partner_index"]), "self")
        dst_mask, src_mask = object_masks(scene, source, spec.params["object_masks"])
        return _NSAPlan(name, to_u8(source), (dst_mask, src_mask), method.placement(scene, spec, 0, src_mask, dst_mask))

    def prepare(self) -> None:
        self.layouts: dict[tuple[int, int], tuple[list, float]] = {
            (i, 0): plan.first_layout for i, plan in enumerate(self.plans)
        }

    def _layout(self, i: int, attempt: int) -> tuple[list, float]:
        if (i, attempt) not in self.layouts:
            dst_mask, src_mask = self.plans[i].object_masks
            self.layouts[(i, attempt)] = self.method.placement(self.scenes[i], self.specs[i], attempt, src_mask, dst_mask)
        return self.layouts[(i, attempt)]

    def _clone(self, i: int, knob: float, attempt: int) -> tuple[tuple[int, int, int, int], torch.Tensor, dict]:
        """The window and its blended float32 values ``(h, w, C)`` (before region and
        quantisation): ``NSA._clone`` with the device's Poisson solve."""
        scene, spec = self.scenes[i], self.specs[i]
        layout, first_guess = self._layout(i, attempt)
        boxes = self.method.dst_boxes(scene, layout, knob)
        window = union_window(boxes, self.height, self.width, pad=1)
        wy0, wy1, wx0, wx1 = window
        original = self.colour[i, wy0:wy1, wx0:wx1]
        dst8 = torch.round(original.clamp(0.0, 1.0) * 255.0).permute(2, 0, 1)
        if dst8.shape[0] == 1:
            dst8 = dst8.expand(3, -1, -1)  # gray is cloned as three equal channels
        current = dst8.clone()
        mixed = spec.mode == "mixed_clone"
        for pt, (y0, y1, x0, x1) in zip(layout, boxes):
            h, w = y1 - y0, x1 - x0
            if h < MIN_PATCH or w < MIN_PATCH:
                continue  # the image is too small for this patch
            sy0, sy1, sx0, sx1 = pt.src
            patch = resized_patch(self.plans[i].source_u8[sy0:sy1, sx0:sx1], h, w)
            # the clone's ROI is the mask: the box without its outer ring
            inner = torch.from_numpy(np.ascontiguousarray(patch[1:-1, 1:-1])).to(self.device)
            ys, xs = slice(y0 - wy0 + 1, y1 - wy0 - 1), slice(x0 - wx0 + 1, x1 - wx0 - 1)
            current[:, ys, xs] = seamless_clone(current[:, ys, xs], inner.permute(2, 0, 1).float(), mixed)
        delta = (current - dst8)[: self.channels].permute(1, 2, 0)
        values = original + delta * torch.tensor(_INV_255, device=self.device)
        # bit-identical outside what the clones changed (16-bit / float inputs)
        values = torch.where((delta != 0).any(dim=-1, keepdim=True), values, original)
        return window, values, self.method.describe_layout(scene, layout, first_guess, knob)

    def render(self, idx, knob, attempt) -> Renders:
        n = len(idx)
        area, oy, ox = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
        outputs, changes, infos = [], [], []
        for k, (i, kn, a) in enumerate(zip(idx.tolist(), knob.tolist(), attempt.tolist())):
            (y0, y1, x0, x1), values, info = self._clone(i, kn, a)
            source = self.colour[i, y0:y1, x0:x1]
            values = values.clamp(0.0, 1.0)
            if self.regions is not None:
                values = torch.where(self.regions[i, y0:y1, x0:x1, None], values, source)
            out = quantize_batch(values, self.quantum)
            changed = changed_in_batch(source, out)
            area[k], oy[k], ox[k] = float(changed.sum()), y0, x0
            outputs.append(out)
            changes.append(changed)
            infos.append(info)
        return Renders(area, oy, ox, outputs, changes, infos)

    def limits(self):
        b = len(self.specs)
        return np.ones(b), np.full(b, SCALE_UPPER)

    def extra(self, i, rendered):
        return {"source": self.plans[i].source, "renderer": "torch"}

    def run(self) -> list[Rendered | None]:
        # the numpy path's record keys: the knob is recorded as ``scale`` (first guess x knob),
        # ``scale_steps`` also without a size bin
        results = []
        for r in super().run():
            if r is not None:
                info = {k: v for k, v in r.info.items() if k != "size_knob"}
                info.setdefault("scale_steps", 1)
                r = Rendered(r.oy, r.ox, r.output, r.changed, r.knob, r.attempt, r.steps, info)
            results.append(r)
        return results
