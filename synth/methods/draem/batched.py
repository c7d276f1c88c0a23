"""The noise-mask methods, DRAEM, fractal and foreground Perlin, rendered for a batch on any
torch device.

What runs where, so that the outputs are the numpy path's bytes:

* on the CPU, once per anomaly and placement attempt (the first attempt's as the spec's plan,
  made on ``prepare.PlanPool`` threads together with the fill): the noise field, by ``synth.perlin``'s own
  ``rotated_noise`` from the spec's integer seeds (its OpenCV resampling is not reproduced on the
  device); the fill (``draem.fill_image``: the resized, augmented texture, the shuffled tiles of
  the image or the procedural noise texture, by OpenCV) or, for foreground Perlin, the partner
  image and the estimated foreground masks (``synth.foreground``). These read the image's
  pixels, so the batch is copied to the host once per ``render_batch`` for these methods;
* on the device, for every render of the size search and all anomalies of the step together:
  ranking the noise (a sort, exact on any device), the mask of the ``k`` highest-noise allowed
  pixels (or the thresholded noise without a size bin), the blend
  ``(1 - opacity) * image + opacity * fill`` in float32, the region, quantisation and the
  measured changed area (two host reads per step: the masks' boxes, then the areas);
* the size search is ``sizing.fit``'s, batched (``boxes.BoxBatch.run``).

Every step is the numpy path's operation in the same precision, so outputs are byte-identical
(``tests/test_batched.py``). Each anomaly's masks and windows are computed on its own tensors, so
its bytes do not depend on the batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from ...batched.boxes import BoxBatch
from ...batched.device import to_device
from ...batched.layout import changed_in_batch, quantize_batch
from ...batched.steering import Renders
from ...method import Scene, Spec
from ...partner import partner_image
from ...perlin import rotated_noise
from ...sizing import Steering


@dataclass(frozen=True)
class _NoisePlan:
    """One spec's CPU preparation: the candidate pixels (``None``: all), the fill ``(H, W, C)``
    float32 and the noise field of placement attempt 0 ``(H, W)`` float32."""

    candidates: np.ndarray | None
    blend: np.ndarray
    noise: np.ndarray


def _noise(spec: Spec, height: int, width: int, attempt: int) -> np.ndarray:
    """The numpy path's noise field for one placement attempt (``DRAEM.render``'s call)."""
    p = spec.params
    ky, kx = p["scale_exponents"]
    return rotated_noise(
        (height, width), (2**ky, 2**kx), [int(p["noise_seed"]), attempt],
        angle=p["angle"], octaves=int(p.get("octaves", 1)), persistence=float(p.get("persistence", 0.5)),
    )


class _Ranked:
    """``sizing.RankedMask`` on the device: masks of one noise field by pixel count."""

    def __init__(self, noise: torch.Tensor, candidates: torch.Tensor | None) -> None:
        self.noise = noise
        self.candidates = candidates
        self.count = int(noise.numel() if candidates is None else int(candidates.sum()))
        self._sorted: torch.Tensor | None = None

    def threshold_mask(self, threshold: float) -> torch.Tensor:
        # the threshold in the noise's float32, as numpy compares a float32 array with a float
        mask = self.noise > torch.tensor(threshold, dtype=self.noise.dtype, device=self.noise.device)
        return mask if self.candidates is None else mask & self.candidates

    def cut(self, k: float) -> torch.Tensor:
        """The noise value of the ``k``-th highest candidate (0-d, on the device: no sync)."""
        k = int(min(max(round(k), 1), self.count))
        if self._sorted is None:
            values = self.noise[self.candidates] if self.candidates is not None else self.noise.reshape(-1)
            self._sorted = torch.sort(values).values
        return self._sorted[self.count - k]

    def mask(self, k: float) -> torch.Tensor:
        mask = self.noise >= self.cut(k)
        return mask if self.candidates is None else mask & self.candidates


class NoiseMaskBatch(BoxBatch):
    """DRAEM (``method.DRAEM``) and its subclasses fractal and foreground Perlin: a thresholded
    noise mask filled by blending towards a fill image; the knob is the mask's pixel count."""

    needs_pixels = True

    def __init__(self, method, *args, **kwargs) -> None:
        self.method = method
        super().__init__(method, *args, **kwargs)

    @staticmethod
    def plan(method, spec: Spec, scene: Scene, textures=()) -> _NoisePlan:
        """The numpy path's candidates, fill and first noise field for one spec (CPU)."""
        candidates = method.candidates(scene, spec)
        return _NoisePlan(
            candidates=None if candidates is None else np.ascontiguousarray(candidates),
            blend=np.ascontiguousarray(method.blend_source(scene, spec)),
            noise=_noise(spec, scene.height, scene.width, 0),
        )

    @staticmethod
    def plan_key(spec: Spec) -> tuple:
        """What the plan depends on besides the scene: all but the size (``target_fraction``,
        ``size_bin``), so the protocol's five bins of one draw share one plan."""
        params = {k: v for k, v in spec.params.items() if k != "target_fraction"}
        return (spec.method, spec.shape, spec.mode, json.dumps(params, sort_keys=True))

    def prepare(self) -> None:
        dev = self.device
        self.opacity = torch.tensor(np.array([s.params["opacity"] for s in self.specs], np.float32), device=dev)
        # anomalies sharing a plan (one draw in several bins) share its device copies and rankings
        distinct: dict[int, int] = {}
        self.plan_row = np.array([distinct.setdefault(id(plan), len(distinct)) for plan in self.plans], np.int64)
        firsts = [self.plans[int(np.flatnonzero(self.plan_row == r)[0])] for r in range(len(distinct))]
        shared = [None if plan.candidates is None else torch.from_numpy(plan.candidates).to(dev) for plan in firsts]
        self.candidates: list[torch.Tensor | None] = [shared[r] for r in self.plan_row]
        self.allowed = np.array([
            scene.height * scene.width if plan.candidates is None else int(plan.candidates.sum())
            for plan, scene in zip(self.plans, self.scenes)
        ], np.float64)
        # the distinct fills (P, H, W, C), copied to the device at once; ``fill_rows`` picks each anomaly's
        self.blends = torch.from_numpy(np.stack([plan.blend for plan in firsts])).to(dev)
        self.fill_rows = to_device(self.plan_row, dev)
        self.ranked: dict[tuple[int, int], _Ranked] = {}

    def _ranked(self, i: int, attempt: int) -> _Ranked:
        key = (int(self.plan_row[i]), attempt)
        if key not in self.ranked:
            # the first attempt's noise was planned; later placement attempts are rare
            noise = self.plans[i].noise if attempt == 0 else _noise(self.specs[i], self.height, self.width, attempt)
            self.ranked[key] = _Ranked(torch.from_numpy(noise).to(self.device), self.candidates[i])
        return self.ranked[key]

    def _mask(self, i: int, knob: float, attempt: int) -> torch.Tensor:
        rm = self._ranked(i, attempt)
        if knob >= 0:
            return rm.mask(knob)
        mask = rm.threshold_mask(self.specs[i].params["threshold"])
        if not bool(mask.any()):
            # DRAEM.render's fallback for noise that stays below the threshold everywhere
            mask = rm.mask(max(1, int(round(self.method.empty_mask_fallback * rm.count))))
        return mask

    def render(self, idx, knob, attempt) -> Renders:
        """All anomalies ``idx`` in one set of tensor operations: two host reads per call (the
        masks' boxes, then the areas), not several per anomaly."""
        dev, n = self.device, len(idx)
        ranked = [self._ranked(i, a) for i, a in zip(idx.tolist(), attempt.tolist())]
        noise = torch.stack([rm.noise for rm in ranked])
        by_rank = [k for k, kn in enumerate(knob.tolist()) if kn >= 0]
        masks = torch.zeros((n, self.height, self.width), dtype=torch.bool, device=dev)
        if by_rank:
            cuts = torch.stack([ranked[k].cut(knob[k]) for k in by_rank])
            masks[by_rank] = noise[by_rank] >= cuts[:, None, None]
        for k in (k for k in range(n) if knob[k] < 0):  # no size bin: the thresholded noise
            masks[k] = self._mask(int(idx[k]), float(knob[k]), int(attempt[k]))
        if any(self.candidates[i] is not None for i in idx.tolist()):
            allowed = torch.stack([
                torch.ones_like(masks[0]) if self.candidates[i] is None else self.candidates[i] for i in idx.tolist()
            ])
            masks &= allowed
        # each mask's box (``sizing.bbox_window``; an empty mask: the whole image) and pixel count
        rows_any, cols_any = masks.any(dim=2), masks.any(dim=1)
        first = lambda a: a.to(torch.int8).argmax(dim=1)  # noqa: E731
        last = lambda a: a.shape[1] - 1 - a.flip(1).to(torch.int8).argmax(dim=1)  # noqa: E731
        facts = torch.stack([
            first(rows_any), last(rows_any) + 1, first(cols_any), last(cols_any) + 1, rows_any.any(dim=1).to(torch.int64),
            masks.sum(dim=(1, 2)),
        ], dim=1).cpu().numpy()
        empty = facts[:, 4] == 0
        boxes = facts[:, :4].copy()
        boxes[empty] = (0, self.height, 0, self.width)
        mask_pixels = facts[:, 5]
        h, w = boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]
        wh, ww = int(h.max()), int(w.max())
        t_idx = to_device(idx, dev)
        opacity = self.opacity[t_idx][:, None, None, None]
        if 2 * wh * ww > self.height * self.width:
            # large boxes: whole images (plain copies) cost less than gathering padded windows
            starts = np.zeros((n, 2), np.int64)
            valid = torch.ones((n, self.height, self.width), dtype=torch.bool, device=dev)
            source = self.colour.index_select(0, t_idx)
            inside = masks[..., None]
            fill = self.blends.index_select(0, self.fill_rows[t_idx])
            region = None if self.regions is None else self.regions.index_select(0, t_idx)
        else:
            starts = boxes[:, [0, 2]]
            rows = to_device(boxes[:, 0], dev)[:, None] + torch.arange(wh, device=dev)[None]
            cols = to_device(boxes[:, 2], dev)[:, None] + torch.arange(ww, device=dev)[None]
            valid = (rows < to_device(boxes[:, 1], dev)[:, None])[:, :, None] & (
                cols < to_device(boxes[:, 3], dev)[:, None]
            )[:, None, :]
            rows, cols = rows.clamp(max=self.height - 1)[:, :, None], cols.clamp(max=self.width - 1)[:, None, :]
            at = (t_idx[:, None, None], rows, cols)
            source = self.colour[at]
            inside = masks[torch.arange(n, device=dev)[:, None, None], rows, cols][..., None]
            fill = self.blends[(self.fill_rows[t_idx][:, None, None], rows, cols)]
            region = None if self.regions is None else self.regions[at]
        # the numpy path's float32 blend, pixel by pixel (pixels outside a box are never stored)
        blended = (1.0 - opacity) * source + opacity * fill
        values = torch.where(inside, blended, source).clamp(0.0, 1.0)
        if region is not None:
            values = torch.where(region[..., None], values, source)
        out = quantize_batch(values, self.quantum)
        changed = changed_in_batch(source, out) & valid
        area = changed.sum(dim=(1, 2)).cpu().numpy().astype(np.float64)
        y0 = boxes[:, 0] - starts[:, 0]
        x0 = boxes[:, 2] - starts[:, 1]
        outputs = [out[k, y0[k] : y0[k] + h[k], x0[k] : x0[k] + w[k]] for k in range(n)]
        changes = [changed[k, y0[k] : y0[k] + h[k], x0[k] : x0[k] + w[k]] for k in range(n)]
        infos = [{"mask_pixels": int(m)} for m in mask_pixels]
        return Renders(area, boxes[:, 0], boxes[:, 2], outputs, changes, infos)

    def limits(self):
        starts = np.ones(len(self.specs))
        for i, (spec, scene) in enumerate(zip(self.specs, self.scenes)):
            if spec.size_bin is not None:
                starts[i] = max(1.0, spec.params["target_fraction"] * scene.height * scene.width)
        return starts, self.allowed.astype(np.float64)

    def search(self) -> tuple[Steering, np.ndarray, np.ndarray]:
        b = len(self.specs)
        return self.method.steering, np.ones(b), np.full(b, -1.0)

    def extra(self, i, rendered):
        if self.method.name != "foreground_perlin":
            return {}
        return {"source": partner_image(self.scenes[i], int(self.specs[i].params["partner_index"]), "rotate180")[1]}
