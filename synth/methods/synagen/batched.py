"""SYNAGEN rendered for a whole batch at once, on any torch device.

The specs are the ones ``Synagen.sample`` draws, so parameter distributions are those of the
numpy path. What runs where:

* on the CPU, once per spec, as its plan (``_plan``, made on ``prepare.PlanPool`` threads while
  the device renders, see ``prepare``): the shape panel and its rotation (``rotated_shape``,
  shared with the numpy path; made once per drawn shape, so its five sizes cost one panel, also
  when their plans are made at the same time), its summed-area table, the noise grid from the
  spec's ``noise_seed`` and the texture crop;
* on the device, for every render of the size search: scaling and placing the shape as
  ``cv2.resize`` does (shrinking: the exact box average of ``INTER_AREA``, read from the
  summed-area table with four bilinear taps; enlarging: ``INTER_LINEAR``), thresholded at the
  coverage threshold, the mode's manipulation, the contour band's 3x3 Gaussian blur, the region,
  quantisation and the measured changed area — all anomalies of the batch in one set of tensor
  operations;
* on the CPU between renders: the size search itself (``sizing.correct`` on float64 numpy
  vectors of the batch, the same policy as the numpy path), so every device takes the same steps
  for the same measured areas. Each render step reads the device twice (the placed shapes'
  boxes, which position them, and the measured areas), whatever the batch size. ``mean_noise``'s
  mean colour is the numpy path's float32 sum in pixel order on the CPU and the exact mean on a
  GPU (``_footprint_means``).

Per-pixel work is written with separate elementwise operations and gathers (no convolutions, no
``grid_sample`` with batch-dependent normalisation, no transcendental functions), so one anomaly's
bytes do not depend on which other anomalies share its batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from ...batched.device import to_device
from ...batched.layout import changed_in_batch, channels_last, quantize_batch
from ...batched.prepare import made_once
from ...batched.steering import Rendered, Renders, steer_batch
from ...errors import InvalidParameterError
from ...method import Method, Scene, Spec
from ...sizebins import SizeBin
from ...sizing import pixel_targets, shifted
from .modes import texture_field
from .scaling import scaled_shape

#: pixels kept around the placed shape: the contour band reaches 1 pixel out, its blur 1 more
_MARGIN = 3
#: cv2.getGaussianKernel(3, 2.0), the contour band's blur
_GAUSS = (0.31916777, 0.36166446, 0.31916777)


@dataclass(frozen=True)
class _Plan:
    """Everything about one spec that the device loop needs, prepared on the CPU."""

    spec: Spec
    crop: np.ndarray
    table: np.ndarray
    crop_hw: tuple[int, int]
    shape_areas: tuple[float, ...]
    target_px: float
    lo_px: int
    hi_px: int
    max_scale: float
    factors: tuple[float, ...]
    noise_range: tuple[float, float]
    noise: np.ndarray | None
    texture: np.ndarray | None


@made_once(maxsize=32)
def _shape(shape: str, params_json: str, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The rotated shape ``(h, w)`` float32 and its summed-area table ``(h + 1, w + 1)`` float64:
    ``T[i, j]`` is the sum of ``crop[:i, :j]``, so any box average (also over fractional pixels)
    is four bilinear reads. Made once per drawn shape, also when the plan threads of its five
    size bins ask for it at the same time."""
    scaled = scaled_shape(shape, params_json, angle)  # the numpy path's crop and table
    return scaled.crop, scaled.table


def _plan(method: Method, spec: Spec, scene: Scene, textures: Sequence[np.ndarray] = ()) -> _Plan:
    """One spec's CPU preparation (thread-safe: reads the spec and scene, writes nothing shared)."""
    if spec.method != "synagen":
        raise InvalidParameterError(f"the SYNAGEN batch renderer got a {spec.method!r} spec")
    p = spec.params
    size_bin = spec.size_bin or SizeBin.parse("0.02-15%")
    lo_px, hi_px, target_px = pixel_targets(size_bin, p["target_fraction"], scene)
    crop, table = _shape(spec.shape, json.dumps(p["shape_params"], sort_keys=True), float(p["angle"]))
    mode_params = p["mode_params"]
    noise = None
    if spec.mode not in ("transparent", "texture"):
        side = mode_params["noise_grid"]
        noise = np.random.default_rng(mode_params["noise_seed"]).random((side, side), dtype=np.float32)
    texture = None
    if spec.mode == "texture":
        if not textures:
            raise InvalidParameterError("this spec uses mode 'texture' but no textures were given")
        tex = textures[mode_params["texture_index"] % len(textures)]
        texture = texture_field(tex, mode_params["texture_offset"], scene.height, scene.width, scene.channels)
    channels = scene.channels
    factors = mode_params["factors"][:channels] if channels == 3 else mode_params["factors"][:1]
    return _Plan(
        spec=spec,
        crop=crop,
        table=table,
        crop_hw=crop.shape,
        shape_areas=(float((crop > 0.5).sum()),),
        target_px=float(target_px),
        lo_px=int(lo_px),
        hi_px=int(hi_px),
        max_scale=4.0 * max(scene.height, scene.width) / max(crop.shape),
        factors=tuple(float(f) for f in factors),
        noise_range=(float(mode_params["noise_range"][0]), float(mode_params["noise_range"][1])),
        noise=noise,
        texture=texture,
    )


@dataclass(frozen=True)
class _Packed:
    """2-D arrays of different sizes in one flat device tensor: array ``k`` holds
    ``flat[offsets[k] : offsets[k] + rows_k * cols[k]]`` row by row; ``row[i]`` is the array of
    anomaly ``i`` (anomalies sharing an array, such as one drawn shape's five bins, share a row)."""

    flat: torch.Tensor
    offsets: torch.Tensor
    cols: torch.Tensor
    row: np.ndarray


def _packed(arrays: Sequence[np.ndarray | None], device: torch.device, dtype=np.float32) -> _Packed:
    """Pack each distinct array once (``None``: a 1x1 zero); copied to the device at once. Packing
    without padding to the largest keeps the copy to the arrays' own size (a batch's shape
    tables, float64 and up to ~900 px a side, would otherwise cost hundreds of MB per batch)."""
    distinct: dict[int, int] = {}
    parts: list[np.ndarray] = []
    row = np.zeros(len(arrays), np.int64)
    for i, a in enumerate(arrays):
        key = id(a)
        if key not in distinct:
            distinct[key] = len(parts)
            parts.append(np.zeros((1, 1), dtype) if a is None else np.asarray(a, dtype))
        row[i] = distinct[key]
    sizes = np.array([p.size for p in parts], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.concatenate([p.reshape(-1) for p in parts])
    return _Packed(
        torch.from_numpy(flat).to(device), torch.from_numpy(offsets).to(device),
        to_device([p.shape[1] for p in parts], device), row,
    )


def _taps(coords: torch.Tensor, size: torch.Tensor, border: bool) -> tuple[torch.Tensor, ...]:
    """Bilinear taps along one axis: ``(i0, i1, w1, valid0, valid1)`` for sample positions.

    ``border``: positions are clamped into ``[0, size - 1]`` (cv2's replicated border); else taps
    outside the data get weight 0 (the shape is 0 beyond its crop).
    """
    last = (size - 1).clamp(min=0).to(coords.dtype)[:, None]
    if border:
        coords = torch.minimum(torch.clamp(coords, min=0.0), last)
    i0 = torch.floor(coords)
    w1 = coords - i0
    i1 = i0 + 1
    v0 = ((i0 >= 0) & (i0 <= last)).to(coords.dtype)
    v1 = ((i1 >= 0) & (i1 <= last)).to(coords.dtype)
    i0 = torch.minimum(torch.clamp(i0, min=0.0), last).to(torch.int64)
    i1 = torch.minimum(torch.clamp(i1, min=0.0), last).to(torch.int64)
    return i0, i1, w1, v0, v1


def _bilinear(data: _Packed, samples: torch.Tensor, ys: tuple, xs: tuple) -> torch.Tensor:
    """Sample the packed arrays ``samples`` (rows of ``data``) at the separable positions given by
    ``_taps``: ``(n, h, w)`` (only the taps are read, not the arrays' whole extent)."""
    y0, y1, wy, vy0, vy1 = ys
    x0, x1, wx, vx0, vx1 = xs
    flat = data.flat
    # weights in the data's precision (float64 for summed-area tables, whose values are large)
    wy0, wy1 = ((1.0 - wy) * vy0).to(flat.dtype), (wy * vy1).to(flat.dtype)
    wx0, wx1 = ((1.0 - wx) * vx0).to(flat.dtype), (wx * vx1).to(flat.dtype)
    base = data.offsets[samples][:, None]
    stride = data.cols[samples][:, None]

    def tap(yi, xi):
        return torch.take(flat, (base + yi * stride)[:, :, None] + xi[:, None, :])

    top = tap(y0, x0) * wx0[:, None, :] + tap(y0, x1) * wx1[:, None, :]
    bottom = tap(y1, x0) * wx0[:, None, :] + tap(y1, x1) * wx1[:, None, :]
    return top * wy0[:, :, None] + bottom * wy1[:, :, None]


def _windows(data: torch.Tensor, idx: np.ndarray, oy: np.ndarray, ox: np.ndarray, h: int, w: int) -> torch.Tensor:
    """``data[i, oy:oy+h, ox:ox+w]`` for each anomaly ``i`` of ``idx`` (windows inside the image),
    as one gather (a copy: the values are the data's, whatever the batch)."""
    dev = data.device
    rows = to_device(oy, dev)[:, None] + torch.arange(h, device=dev)[None]
    cols = to_device(ox, dev)[:, None] + torch.arange(w, device=dev)[None]
    return data[to_device(idx, dev)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _shifted_windows(canvas: torch.Tensor, dy: np.ndarray, dx: np.ndarray, h: int, w: int) -> torch.Tensor:
    """``(n, h, w)`` windows of the ``(n, hc, wc)`` canvases starting at ``(dy, dx)``, zero outside
    (one gather for the batch)."""
    n, hc, wc = canvas.shape
    dev = canvas.device
    rows = to_device(dy, dev)[:, None] + torch.arange(h, device=dev)[None]
    cols = to_device(dx, dev)[:, None] + torch.arange(w, device=dev)[None]
    inside = ((rows >= 0) & (rows < hc))[:, :, None] & ((cols >= 0) & (cols < wc))[:, None, :]
    picked = canvas[
        torch.arange(n, device=dev)[:, None, None], rows.clamp(0, hc - 1)[:, :, None], cols.clamp(0, wc - 1)[:, None, :]
    ]
    return picked & inside if picked.dtype == torch.bool else torch.where(inside, picked, torch.zeros_like(picked))


def _footprint_means(source: torch.Tensor, footprint: torch.Tensor, quantum: float) -> torch.Tensor:
    """float32 ``(n, C)``: each window's mean colour under its footprint (an empty footprint
    changes nothing, so its mean is never used).

    On the CPU it is taken as the numpy path takes it (``source[inside].mean(axis=0)``: float32
    sums in row-major pixel order; no copy), so the outputs are the numpy path's. On a GPU,
    copying every step's windows to the host would cost more than rendering them, so the mean is
    the exact one of the stored values (integer sums; float64 for float images) taken on the
    device: it can differ from the numpy path's float32 sum in the last bit, which moves a stored
    value by one quantum now and then (within the stated CUDA-CPU tolerance), and it does not
    depend on the batch."""
    if source.device.type == "cpu":
        src, fp = source.numpy(), footprint.numpy()
        means = np.zeros((len(src), src.shape[-1]), np.float32)
        for k in range(len(src)):
            if fp[k].any():
                means[k] = src[k][fp[k]].mean(axis=0)
        return torch.from_numpy(means)
    return _exact_means(source, footprint, quantum)


def _exact_means(source: torch.Tensor, footprint: torch.Tensor, quantum: float) -> torch.Tensor:
    """``_footprint_means`` on a GPU: sums of the stored integers are exact, so the mean does not
    depend on the window's padding or the order of the device's reduction."""
    fp = footprint[..., None]
    count = fp.sum(dim=(1, 2)).clamp(min=1)
    if quantum > 0:
        levels = torch.round(source * (1.0 / quantum)).to(torch.int64)
        return ((levels * fp).sum(dim=(1, 2)).to(torch.float64) * quantum / count).to(torch.float32)
    return ((source * fp).to(torch.float64).sum(dim=(1, 2)) / count).to(torch.float32)


def _dilate(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    out = mask[:, None].to(torch.float32)
    for _ in range(iterations):
        out = torch.nn.functional.max_pool2d(out, 3, stride=1, padding=1)
    return out[:, 0] > 0


def _erode(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    # outside the window counts as inside the shape (cv2's border value 1 for the erosion)
    out = 1.0 - mask[:, None].to(torch.float32)
    for _ in range(iterations):
        out = torch.nn.functional.max_pool2d(out, 3, stride=1, padding=1)
    return out[:, 0] == 0


def _blur3(values: torch.Tensor) -> torch.Tensor:
    """cv2.GaussianBlur(values, (3, 3), 2.0, BORDER_REFLECT) for ``(n, h, w, C)`` (separable)."""
    a, b, c = _GAUSS
    padded = torch.cat([values[:, :, :1], values, values[:, :, -1:]], dim=2)
    rows = padded[:, :, :-2] * a + padded[:, :, 1:-1] * b + padded[:, :, 2:] * c
    padded = torch.cat([rows[:, :1], rows, rows[:, -1:]], dim=1)
    return padded[:, :-2] * a + padded[:, 1:-1] * b + padded[:, 2:] * c


class SynagenBatch:
    """The device state of one batch: images, regions, shape pyramids, noise, textures."""

    #: one spec's CPU preparation, made on ``prepare.PlanPool`` threads
    plan = staticmethod(_plan)

    def __init__(
        self,
        method: Method,
        colour: torch.Tensor,
        regions: torch.Tensor | None,
        specs: Sequence[Spec],
        scenes: Sequence[Scene],
        quantum: float,
        textures: Sequence[np.ndarray],
        plans: Sequence[_Plan] | None = None,
    ) -> None:
        self.method = method
        self.device = colour.device
        self.colour = channels_last(colour)  # (B, H, W, C): the numpy layout
        self.regions = regions
        self.quantum = quantum
        self.height, self.width = int(colour.shape[2]), int(colour.shape[3])
        self.plans = list(plans) if plans is not None else [
            _plan(method, spec, scene, textures) for spec, scene in zip(specs, scenes)
        ]
        b = len(self.plans)
        self.crops = _packed([plan.crop for plan in self.plans], self.device)
        self.tables = _packed([plan.table for plan in self.plans], self.device, np.float64)
        self.crop_hw = np.array([plan.crop_hw for plan in self.plans], np.int64)
        self.noise = _packed([plan.noise for plan in self.plans], self.device)
        self.noise_side = torch.tensor(
            [0 if plan.noise is None else plan.noise.shape[0] for plan in self.plans], device=self.device
        )
        self.texture = None
        if any(plan.texture is not None for plan in self.plans):
            tex = np.zeros((b, self.height, self.width, self.colour.shape[3]), np.float32)
            for i, plan in enumerate(self.plans):
                if plan.texture is not None:
                    tex[i] = plan.texture
            self.texture = torch.from_numpy(tex).to(self.device)
        self.factors = torch.tensor([plan.factors for plan in self.plans], dtype=torch.float32, device=self.device)
        self.noise_lo = torch.tensor([plan.noise_range[0] for plan in self.plans], dtype=torch.float32, device=self.device)
        self.noise_hi = torch.tensor([plan.noise_range[1] for plan in self.plans], dtype=torch.float32, device=self.device)
        self.modes = [plan.spec.mode for plan in self.plans]
        self.region_cumsum = None
        if regions is not None:
            self.region_cumsum = regions.reshape(b, -1).to(torch.int64).cumsum(dim=1)
            self.region_count = self.region_cumsum[:, -1].cpu().numpy()

    # ---------------------------------------------------------------- placement
    def _shape_at(self, idx: np.ndarray, scale: np.ndarray, attempt: np.ndarray):
        """The scaled, thresholded shapes on local canvases ``(n, hn, wn)`` (origin = the resized
        crop's top-left, as ``cv2.resize`` would make it) and their bounding boxes."""
        dev = self.device
        ch, cw = self.crop_hw[idx, 0], self.crop_hw[idx, 1]
        new_h = np.maximum(1, np.round(ch * scale)).astype(np.int64)
        new_w = np.maximum(1, np.round(cw * scale)).astype(np.int64)
        threshold = np.array(self.method.coverage_thresholds, np.float32)[attempt % len(self.method.coverage_thresholds)]
        hn, wn = int(new_h.max()), int(new_w.max())
        ly = torch.arange(hn, device=dev, dtype=torch.float64)[None]
        lx = torch.arange(wn, device=dev, dtype=torch.float64)[None]
        table_rows = to_device(self.tables.row[idx], dev)
        crop_rows = to_device(self.crops.row[idx], dev)
        sy = to_device(ch / new_h, dev)[:, None]
        sx = to_device(cw / new_w, dev)[:, None]
        t_ch, t_cw = to_device(ch, dev), to_device(cw, dev)
        coverage = torch.empty((len(idx), hn, wn), dtype=torch.float32, device=dev)
        shrink = scale < 1.0  # cv2.resize's choice between INTER_AREA and INTER_LINEAR
        for group, is_area in ((np.flatnonzero(shrink), True), (np.flatnonzero(~shrink), False)):
            if not len(group):
                continue
            g = to_device(group, dev)
            if is_area:
                # the box [l * s, (l + 1) * s) of crop pixels behind each resized pixel
                # the table at the boxes' four corners in one read: rows [y0; y1], columns [x0; x1]
                ys = torch.cat([ly * sy[g], (ly + 1) * sy[g]], dim=1)
                xs = torch.cat([lx * sx[g], (lx + 1) * sx[g]], dim=1)
                corners = _bilinear(
                    self.tables, table_rows[g], _taps(ys, t_ch[g] + 1, border=True), _taps(xs, t_cw[g] + 1, border=True)
                )
                i00, i01 = corners[:, :hn, :wn], corners[:, :hn, wn:]
                i10, i11 = corners[:, hn:, :wn], corners[:, hn:, wn:]
                total = i11 - i01 - i10 + i00
                coverage[g] = (total / (sy[g][:, :, None] * sx[g][:, None, :])).to(torch.float32)
            else:
                cy, cx = (ly + 0.5) * sy[g] - 0.5, (lx + 0.5) * sx[g] - 0.5
                coverage[g] = _bilinear(
                    self.crops, crop_rows[g], _taps(cy, t_ch[g], border=True), _taps(cx, t_cw[g], border=True)
                )
        inside = (ly < to_device(new_h, dev)[:, None])[:, :, None] & (
            lx < to_device(new_w, dev)[:, None]
        )[:, None, :]
        shapes = (coverage > to_device(threshold, dev)[:, None, None]) & inside
        rows_any, cols_any = shapes.any(dim=2), shapes.any(dim=1)
        first = lambda a: a.to(torch.int8).argmax(dim=1)  # noqa: E731
        last = lambda a: a.shape[1] - 1 - a.flip(1).to(torch.int8).argmax(dim=1)  # noqa: E731
        box = torch.stack([first(rows_any), last(rows_any), first(cols_any), last(cols_any), rows_any.any(dim=1)], 1)
        box = box.cpu().numpy()
        return shapes, box[:, 0], box[:, 1] + 1, box[:, 2], box[:, 3] + 1, box[:, 4].astype(bool)

    def _origin(self, idx, attempt, shapes, by0, by1, bx0, bx1) -> tuple[np.ndarray, np.ndarray]:
        """Image position of each local canvas's origin, as ``Synagen._place`` positions the
        footprint: uniform offsets without a region, else a footprint pixel on a region pixel."""
        if self.regions is None:
            def offset(u, size, extent):
                lo, hi = np.minimum(0, size - extent), np.maximum(0, size - extent)
                return lo + np.minimum((u * (hi - lo + 1)).astype(np.int64), hi - lo)

            pos = shifted(np.array([self.plans[i].spec.params["position"] for i in idx], np.float64).reshape(-1, 2), attempt[:, None])
            return offset(pos[:, 1], self.height, by1 - by0) - by0, offset(pos[:, 0], self.width, bx1 - bx0) - bx0
        dev = self.device
        anchors = np.array([self.plans[i].spec.params["anchor"] for i in idx], np.float64).reshape(-1, 2)
        u = shifted(anchors, attempt[:, None])
        count = self.region_count[idx]
        k = np.minimum((u[:, 0] * count).astype(np.int64), count - 1)
        cumsum = self.region_cumsum[to_device(idx, dev)]
        flat = torch.searchsorted(cumsum, to_device(k + 1, dev)[:, None]).cpu().numpy()[:, 0]
        ty, tx = np.divmod(flat, self.width)
        local = shapes.reshape(len(idx), -1).to(torch.int64).cumsum(dim=1)
        n_fp = local[:, -1].cpu().numpy()
        kf = np.minimum((u[:, 1] * n_fp).astype(np.int64), np.maximum(n_fp - 1, 0))
        at = torch.searchsorted(local, to_device(kf + 1, dev)[:, None]).cpu().numpy()[:, 0]
        fy, fx = np.divmod(at, shapes.shape[2])
        return ty - fy, tx - fx

    # ---------------------------------------------------------------- render (device)
    def _placed(self, idx: np.ndarray, scale: np.ndarray, attempt: np.ndarray):
        """The placed shapes on windows of the image: ``(footprint, region, oy, ox, wh, ww)``
        (``region`` ``None`` without regions; an empty footprint = ``Synagen._place``'s None)."""
        H, W, dev = self.height, self.width, self.device
        shapes, by0, by1, bx0, bx1, placed = self._shape_at(idx, scale, attempt)
        oy0, ox0 = self._origin(idx, attempt, shapes, by0, by1, bx0, bx1)
        top = np.clip(oy0 + by0 - _MARGIN, 0, H)
        left = np.clip(ox0 + bx0 - _MARGIN, 0, W)
        bottom = np.clip(oy0 + by1 + _MARGIN, 0, H)
        right = np.clip(ox0 + bx1 + _MARGIN, 0, W)
        wh = int(min(H, max(1, (bottom - top).max())))
        ww = int(min(W, max(1, (right - left).max())))
        oy = np.minimum(top, H - wh)
        ox = np.minimum(left, W - ww)
        # the shape moved onto the window (an integer shift of the local canvas)
        footprint = _shifted_windows(shapes, oy - oy0, ox - ox0, wh, ww)
        footprint &= to_device(placed, dev)[:, None, None]
        region = None
        if self.regions is not None:
            region = _windows(self.regions, idx, oy, ox, wh, ww)
            footprint &= region
        return footprint, region, oy, ox, wh, ww

    def predict(self, idx: np.ndarray, attempt: np.ndarray) -> np.ndarray:
        """First scales of the size search, as ``Synagen._predict_scale``: up to 4 placement-only
        corrections of the footprint grown by the band's outer width."""
        band = self.method.smooth_band
        outer = max(1, band // 3) if band > 0 else 0
        target = np.array([self.plans[i].target_px for i in idx])
        upper = np.array([self.plans[i].max_scale for i in idx])
        scale = np.sqrt(target / np.array([max(self.plans[i].shape_areas[0], 1.0) for i in idx]))
        active = np.ones(len(idx), bool)
        for _ in range(4):
            scale = np.where(active, np.minimum(scale, upper), scale)
            rows = np.flatnonzero(active)
            if not len(rows):
                break
            footprint, region, *_ = self._placed(idx[rows], scale[rows], attempt[rows])
            grown = _dilate(footprint, outer) if outer else footprint
            if outer and region is not None:
                grown &= region
            # one host read for both
            counts = torch.stack([grown.sum(dim=(1, 2)), footprint.sum(dim=(1, 2))]).cpu().numpy()
            predicted, placed = counts[0].astype(np.float64), counts[1] > 0
            t = target[rows]
            done = ~placed | (predicted == 0) | (np.abs(predicted - t) <= 0.05 * t)
            with np.errstate(divide="ignore", invalid="ignore"):
                scale[rows[~done]] = scale[rows[~done]] * np.sqrt(t[~done] / predicted[~done])
            active[rows[done]] = False
        return np.where(active, np.minimum(scale, upper), scale)

    def render(self, idx: np.ndarray, scale: np.ndarray, attempt: np.ndarray):
        """Render the anomalies ``idx`` at ``scale``; return areas and the window tensors."""
        H, W, dev = self.height, self.width, self.device
        footprint, region, oy, ox, wh, ww = self._placed(idx, scale, attempt)
        t_idx = to_device(idx, dev)
        rows = to_device(oy, dev)[:, None] + torch.arange(wh, device=dev)[None]  # (n, wh)
        cols = to_device(ox, dev)[:, None] + torch.arange(ww, device=dev)[None]  # (n, ww)
        source = _windows(self.colour, idx, oy, ox, wh, ww)  # (n, wh, ww, C)

        # the mode's manipulation (synagen.modes.manipulate, per anomaly)
        modes = [self.modes[i] for i in idx]
        factors = self.factors[t_idx][:, None, None, :]
        noise = None
        if any(m not in ("transparent", "texture") for m in modes):
            side = self.noise_side[t_idx]
            fy = ((rows.to(torch.float64) + 0.5) * (side[:, None] / H)) - 0.5
            fx = ((cols.to(torch.float64) + 0.5) * (side[:, None] / W)) - 0.5
            noise_rows = to_device(self.noise.row[idx], dev)
            noise = _bilinear(self.noise, noise_rows, _taps(fy, side, border=True), _taps(fx, side, border=True))[..., None]
        manip = torch.empty_like(source)
        for mode in set(modes):
            sel = to_device([j for j, m in enumerate(modes) if m == mode], dev)
            src, f = source[sel], factors[sel]
            if mode == "transparent":
                out = src * f
            elif mode in ("transparent_noise", "transparent_color_noise"):
                lo = self.noise_lo[t_idx[sel]][:, None, None, None]
                hi = self.noise_hi[t_idx[sel]][:, None, None, None]
                out = src * f * (lo + (hi - lo) * noise[sel])
            elif mode == "mean_noise":
                mean = _footprint_means(src, footprint[sel], self.quantum)
                out = (mean[:, None, None, :] * f) + 0.2 * noise[sel]
            elif mode == "gray_noise":
                out = noise[sel].expand_as(src)
            elif mode == "texture":
                picked = sel.cpu().numpy()
                out = _windows(self.texture, idx[picked], oy[picked], ox[picked], wh, ww)
            else:
                raise InvalidParameterError(f"unknown SYNAGEN mode {mode!r}")
            manip[sel] = out.clamp(0.0, 1.0)
        out = torch.where(footprint[..., None], manip, source)
        band_width = self.method.smooth_band
        if band_width > 0:
            outer = max(1, band_width // 3)
            inner = max(1, band_width - outer)
            band = _dilate(footprint, outer) & ~_erode(footprint, inner)
            out = torch.where(band[..., None], _blur3(out), out)
        if region is not None:
            out = torch.where(region[..., None], out, source)
        out = quantize_batch(out, self.quantum)
        changed = changed_in_batch(source, out)
        area = changed.sum(dim=(1, 2)).cpu().numpy()
        return area, oy, ox, out, changed

    # ---------------------------------------------------------------- the size search
    def run(self) -> list[Rendered | None]:
        """Steer every anomaly into its bin together; ``None`` for one that no placement fits."""
        target = np.array([p.target_px for p in self.plans])
        lo = np.array([p.lo_px for p in self.plans], np.float64)
        hi = np.array([p.hi_px for p in self.plans], np.float64)
        upper = np.array([p.max_scale for p in self.plans])

        bucket = np.floor(np.log2(np.maximum(hi, 1.0)) / 2.0).astype(np.int64)

        def start(idx: np.ndarray, attempt: np.ndarray) -> np.ndarray:
            scale = np.zeros(len(idx))
            for group in np.split(np.arange(len(idx)), np.flatnonzero(np.diff(bucket[idx])) + 1):
                scale[group] = self.predict(idx[group], attempt[group])
            return scale

        def render(idx: np.ndarray, knob: np.ndarray, attempt: np.ndarray) -> Renders:
            area, oy, ox, out, changed = self.render(idx, knob, attempt)
            return Renders(area, oy, ox, out, changed)

        found = steer_batch(
            render, target=target, lo=lo, hi=hi, start=start, lower=np.zeros(len(target)), upper=upper,
            steering=self.method.steering, attempts=self.method.placement_attempts,
            bucket=bucket,
        )
        return [
            None if r is None else replace(r, info={
                "scale": r.knob,
                "placement_attempt": r.attempt,
                "coverage_threshold": float(self.method.coverage_thresholds[r.attempt % len(self.method.coverage_thresholds)]),
                "scale_steps": r.steps,
                "renderer": "torch",
            })
            for r in found
        ]
