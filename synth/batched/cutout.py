"""CutOut rendered for a whole batch on any torch device.

The square's geometry (anchor pixel, golden-ratio retries, box kept inside the image) is computed
by ``synth.sizing``'s own functions on the CPU, the fill, region, quantisation and measurement
on the device, and the size search is ``sizing.fit``'s, batched: the outputs are byte-identical
to the numpy path's (``tests/test_batched.py`` checks it).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..cutout import CutOut
from ..method import Scene, Spec
from ..sizing import PLACEMENT_ATTEMPTS, Steering, anchor_point, box_around, pixel_bounds, shifted, target_pixels
from .layout import changed_pixels, quantize
from .steering import Rendered, Renders, steer_batch


class CutOutBatch:
    """The device state of one CutOut batch."""

    def __init__(
        self,
        method: CutOut,
        colour: torch.Tensor,
        regions: torch.Tensor | None,
        specs: Sequence[Spec],
        scenes: Sequence[Scene],
        quantum: float,
        textures: Sequence[np.ndarray] = (),
    ) -> None:
        self.device = colour.device
        self.colour = colour.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C)
        self.regions = regions
        self.quantum = quantum
        self.specs, self.scenes = list(specs), list(scenes)
        self.height, self.width = int(colour.shape[2]), int(colour.shape[3])
        channels = int(colour.shape[1])
        self.sides = np.array(
            [s.params["side"] * min(self.height, self.width) / float(s.params["reference_side"]) for s in specs]
        )
        self.fill = torch.tensor(
            np.array([np.asarray(s.params["colour"][:channels], np.float32) for s in specs]), device=self.device
        )

    def _boxes(self, idx: np.ndarray, knob: np.ndarray, attempt: np.ndarray) -> np.ndarray:
        """``(n, 4)`` windows ``(y0, y1, x0, x1)``, exactly as ``CutOut.render`` places them."""
        boxes = []
        for i, scale, a in zip(idx, knob, attempt):
            p, scene = self.specs[i].params, self.scenes[i]
            s = int(max(1, round(self.sides[i] * float(scale))))
            cy, cx = anchor_point(shifted(p["anchor"][0], int(a)), scene, shifted(p["anchor"][1], int(a)))
            boxes.append(box_around(cy + 0.5, cx + 0.5, s, s, self.height, self.width))
        return np.array(boxes, np.int64).reshape(-1, 4)

    def render(self, idx: np.ndarray, knob: np.ndarray, attempt: np.ndarray) -> Renders:
        dev = self.device
        boxes = self._boxes(idx, knob, attempt)
        h, w = boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]
        wh, ww = int(h.max()), int(w.max())
        t_idx = torch.as_tensor(idx, device=dev)
        rows = torch.as_tensor(boxes[:, 0], device=dev)[:, None] + torch.arange(wh, device=dev)[None]
        cols = torch.as_tensor(boxes[:, 2], device=dev)[:, None] + torch.arange(ww, device=dev)[None]
        valid = (rows < torch.as_tensor(boxes[:, 1], device=dev)[:, None])[:, :, None] & (
            cols < torch.as_tensor(boxes[:, 3], device=dev)[:, None]
        )[:, None, :]
        rows, cols = rows.clamp(max=self.height - 1), cols.clamp(max=self.width - 1)
        source = self.colour[t_idx[:, None, None], rows[:, :, None], cols[:, None, :]]
        inside = valid
        if self.regions is not None:
            inside = inside & self.regions[t_idx[:, None, None], rows[:, :, None], cols[:, None, :]]
        out = quantize(torch.where(inside[..., None], self.fill[t_idx][:, None, None, :], source), self.quantum)
        changed = changed_pixels(source, out) & valid
        area = changed.sum(dim=(1, 2)).cpu().numpy()
        outputs = [out[k, : h[k], : w[k]] for k in range(len(idx))]
        masks = [changed[k, : h[k], : w[k]] for k in range(len(idx))]
        return Renders(area, boxes[:, 0], boxes[:, 2], outputs, masks, [{"box": b.tolist()} for b in boxes])

    def run(self) -> list[Rendered | None]:
        b = len(self.specs)
        sized = np.array([s.size_bin is not None for s in self.specs])
        target, lo, hi = np.ones(b), np.zeros(b), np.zeros(b)
        for i, (spec, scene) in enumerate(zip(self.specs, self.scenes)):
            if spec.size_bin is not None:
                lo[i], hi[i] = pixel_bounds(spec.size_bin, scene)
                target[i] = target_pixels(spec.size_bin, spec.params["target_fraction"], scene)
        # CutOut.render's arithmetic, in its order
        starts = np.array([
            math.sqrt(s.params.get("target_fraction", 0.0) * self.height * self.width) for s in self.specs
        ]) / self.sides
        found = steer_batch(
            self.render, target=target, lo=lo, hi=hi, start=lambda idx, attempt: starts[idx],
            lower=np.full(b, 1e-3), upper=max(self.height, self.width) / self.sides,
            steering=Steering(), attempts=PLACEMENT_ATTEMPTS, sized=sized, natural=np.ones(b),
        )
        results = []
        for r, is_sized in zip(found, sized):
            if r is None:
                results.append(None)
                continue
            info = {"size_knob": float(r.knob), "placement_attempt": r.attempt}
            if is_sized:
                info["scale_steps"] = r.steps
            results.append(Rendered(r.oy, r.ox, r.output, r.changed, r.knob, r.attempt, r.steps, {**info, **r.info}))
        return results
