"""The batched renderer of box-shaped anomalies (CutOut, FPI, CutPaste, NSA, DRAEM build on it).

A box's geometry (anchor pixel, golden-ratio retries, box kept inside the image) is computed by
``synth.sizing``'s own functions on the CPU, the fill or blend, region, quantisation and
measurement on the device, and the size search is ``sizing.fit``'s, batched: the outputs are
byte-identical to the numpy path's (``tests/test_batched.py`` checks it).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..method import Method, Scene, Spec
from ..sizing import PLACEMENT_ATTEMPTS, Steering, anchor_point, box_around, pixel_targets, shifted
from .device import to_device
from .layout import changed_in_batch, channels_last, quantize_batch
from .steering import Rendered, Renders, steer_batch


class BoxBatch:
    """The device state of one batch of a box method; subclasses define the box and its values."""

    #: the renderer reads the images' pixels on the CPU (``Scene.image``), not only on the device
    needs_pixels = False

    def __init__(
        self,
        method: Method,
        colour: torch.Tensor,
        regions: torch.Tensor | None,
        specs: Sequence[Spec],
        scenes: Sequence[Scene],
        quantum: float,
        textures: Sequence[np.ndarray] = (),
        plans: Sequence[Any] | None = None,
    ) -> None:
        self.device = colour.device
        self.colour = channels_last(colour)  # (B, H, W, C)
        self.regions = regions
        self.quantum = quantum
        self.specs, self.scenes = list(specs), list(scenes)
        self.height, self.width = int(colour.shape[2]), int(colour.shape[3])
        self.channels = int(colour.shape[1])
        self.plans = list(plans) if plans is not None else [
            self.plan(method, spec, scene, textures) for spec, scene in zip(self.specs, self.scenes)
        ]
        self.prepare()

    @staticmethod
    def plan(method: Method, spec: Spec, scene: Scene, textures: Sequence[np.ndarray] = ()) -> Any:
        """One spec's CPU preparation, made on ``prepare.PlanPool`` threads before the batch
        renders (thread-safe: reads the spec and scene, writes nothing shared); ``self.plans[i]``.
        The box methods' constants are cheap and made for the batch in ``prepare``."""
        return None

    def prepare(self) -> None:
        """Batch constants on the device (sizes, fills, partners), from the specs and plans."""

    def box(self, i: int, scale: float, attempt: int) -> tuple[int, int, int, int]:
        """The window ``(y0, y1, x0, x1)`` of anomaly ``i`` at ``scale``, as the method places it."""
        raise NotImplementedError

    def values(
        self, t_idx: torch.Tensor, source: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
        boxes: np.ndarray, knob: np.ndarray,
    ) -> torch.Tensor:
        """The box's new values ``(n, h, w, C)`` (before the region and quantisation); ``boxes``
        ``(n, 4)`` the windows ``box`` gave for the anomalies' knobs ``knob``; pixels outside a
        window (the batch's padding) may hold anything, they are never stored."""
        raise NotImplementedError

    def describe(self, i: int, box: list[int], knob: float) -> dict:
        """What the record says about one render (the numpy method's ``extra`` keys)."""
        return {"box": box}

    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """First knob and largest knob of each anomaly's size search (the method's ``fit`` call)."""
        raise NotImplementedError

    def extra(self, i: int, rendered: Rendered) -> dict:
        return {}

    def search(self) -> tuple[Steering, np.ndarray, np.ndarray]:
        """The size search's policy, smallest knobs and knobs without a size bin (``fit``'s
        ``steering``, ``lower`` and ``natural``)."""
        b = len(self.specs)
        return Steering(), np.full(b, 1e-3), np.ones(b)

    def render(self, idx: np.ndarray, knob: np.ndarray, attempt: np.ndarray) -> Renders:
        dev = self.device
        boxes = np.array(
            [self.box(int(i), float(k), int(a)) for i, k, a in zip(idx, knob, attempt)], np.int64
        ).reshape(-1, 4)
        h, w = boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]
        wh, ww = int(h.max()), int(w.max())
        t_idx = to_device(idx, dev)
        rows = to_device(boxes[:, 0], dev)[:, None] + torch.arange(wh, device=dev)[None]
        cols = to_device(boxes[:, 2], dev)[:, None] + torch.arange(ww, device=dev)[None]
        valid = (rows < to_device(boxes[:, 1], dev)[:, None])[:, :, None] & (
            cols < to_device(boxes[:, 3], dev)[:, None]
        )[:, None, :]
        rows, cols = rows.clamp(max=self.height - 1), cols.clamp(max=self.width - 1)
        source = self.colour[t_idx[:, None, None], rows[:, :, None], cols[:, None, :]]
        inside = valid
        if self.regions is not None:
            inside = inside & self.regions[t_idx[:, None, None], rows[:, :, None], cols[:, None, :]]
        values = self.values(t_idx, source, rows, cols, boxes, knob).clamp(0.0, 1.0)
        out = quantize_batch(torch.where(inside[..., None], values, source), self.quantum)
        changed = changed_in_batch(source, out) & valid
        area = changed.sum(dim=(1, 2)).cpu().numpy()
        outputs = [out[k, : h[k], : w[k]] for k in range(len(idx))]
        masks = [changed[k, : h[k], : w[k]] for k in range(len(idx))]
        infos = [self.describe(int(i), b.tolist(), float(k)) for i, b, k in zip(idx, boxes, knob)]
        return Renders(area, boxes[:, 0], boxes[:, 2], outputs, masks, infos)

    def run(self) -> list[Rendered | None]:
        b = len(self.specs)
        sized = np.array([s.size_bin is not None for s in self.specs])
        target, lo, hi = np.ones(b), np.zeros(b), np.zeros(b)
        for i, (spec, scene) in enumerate(zip(self.specs, self.scenes)):
            if spec.size_bin is not None:
                lo[i], hi[i], target[i] = pixel_targets(spec.size_bin, spec.params["target_fraction"], scene)
        starts, upper = self.limits()
        steering, lower, natural = self.search()
        found = steer_batch(
            self.render, target=target, lo=lo, hi=hi, start=lambda idx, attempt: starts[idx],
            lower=lower, upper=upper,
            steering=steering, attempts=PLACEMENT_ATTEMPTS, sized=sized, natural=natural,
            # anomalies of similar target size share a render, so a small box is not padded to
            # the window of the largest one in the batch
            bucket=np.floor(np.log2(np.maximum(target, 1.0))).astype(np.int64),
        )
        results = []
        for i, (r, is_sized) in enumerate(zip(found, sized)):
            if r is None:
                results.append(None)
                continue
            info = {"size_knob": float(r.knob), "placement_attempt": r.attempt}
            if is_sized:
                info["scale_steps"] = r.steps
            info.update(self.extra(i, r))
            info.update(r.info)
            results.append(Rendered(r.oy, r.ox, r.output, r.changed, r.knob, r.attempt, r.steps, info))
        return results


def anchored_box(batch: BoxBatch, i: int, attempt: int, h: int, w: int) -> tuple[int, int, int, int]:
    """An ``h x w`` box around the spec's anchor pixel for ``attempt``, inside the image."""
    p, scene = batch.specs[i].params, batch.scenes[i]
    cy, cx = anchor_point(shifted(p["anchor"][0], attempt), scene, shifted(p["anchor"][1], attempt))
    return box_around(cy + 0.5, cx + 0.5, h, w, batch.height, batch.width)
