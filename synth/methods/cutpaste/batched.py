"""CutPaste and CutPaste-Scar rendered for a whole batch on any torch device.

Both are box methods (``boxes.BoxBatch``): the patch's size, source box, anchor and window are
computed by ``geometry``'s and ``synth.sizing``'s own functions on the CPU, the size search
is the batched ``sizing.fit``. On the device: cutting the patch out of the image, the colour
jitter (brightness, contrast around the patch's mean luma, saturation around the luma, hue
through HSV, in ``cutpaste.color_jitter``'s order and float32 arithmetic, OpenCV's RGB<->HSV and
RGB->gray formulas written out), the scar's rotation (``cv2.warpAffine`` bilinear with a
replicated border: source coordinates from the inverted matrix in float32 on the CPU, the four
taps gathered on the device), the region, quantisation and measurement.

Agreement with the numpy path: geometry is identical; values differ from OpenCV's vectorised
colour conversions and warp by float rounding only (at most a few 1e-6 before quantisation), so
a stored value rarely moves by one quantum, and a measured area at the edge of a size step can
then take the size search elsewhere. ``tests/test_batched.py`` measures the share of
byte-identical outputs and the agreement of the others.

The patch's mean luma is reduced over each anomaly's own patch alone, so one anomaly's bytes do
not depend on the other anomalies of its batch.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
import torch

from ...batched.boxes import BoxBatch, anchored_box
from ...batched.device import to_device
from .geometry import cut_box, rotation_box

_FLT_EPSILON = float(np.finfo(np.float32).eps)
#: cv2's HSV2RGB sector table: which of (v, p, q, t) becomes b, g, r in each of the six sectors
_SECTORS = ((1, 3, 0), (1, 0, 2), (3, 0, 1), (0, 2, 1), (0, 1, 3), (2, 1, 0))


def _luma(colour: torch.Tensor) -> torch.Tensor:
    """``synth.image.luminance`` (cv2 RGB2GRAY on float32) for ``(..., C)``: ``(...)``."""
    if colour.shape[-1] == 1:
        return colour[..., 0]
    r, g, b = colour[..., 0], colour[..., 1], colour[..., 2]
    return r * 0.299 + g * 0.587 + b * 0.114


def _rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """cv2.COLOR_RGB2HSV on float32 ``(..., 3)`` in [0, 1]: hue in degrees [0, 360), s, v in [0, 1]."""
    r, g, b = rgb.unbind(-1)
    v = torch.maximum(torch.maximum(r, g), b)
    vmin = torch.minimum(torch.minimum(r, g), b)
    diff = v - vmin
    s = diff / (v.abs() + _FLT_EPSILON)
    scale = (60.0 / (diff.double() + _FLT_EPSILON)).float()
    h = torch.where(v == r, (g - b) * scale, torch.where(v == g, (b - r) * scale + 120.0, (r - g) * scale + 240.0))
    h = torch.where(h < 0, h + 360.0, h)
    return torch.stack([h, s, v], dim=-1)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """cv2.COLOR_HSV2RGB on float32 ``(..., 3)`` (hue in degrees)."""
    h, s, v = hsv.unbind(-1)
    h = h * (6.0 / 360.0)
    h = torch.remainder(h, 6.0)  # hue is already in [0, 360) here: at most one wrap
    sector = torch.floor(h)
    frac = h - sector
    sector = sector.to(torch.int64).clamp(0, 5)
    tab = torch.stack([v, v * (1.0 - s), v * (1.0 - s * frac), v * (1.0 - s * (1.0 - frac))], dim=-1)
    order = torch.tensor(_SECTORS, device=hsv.device)[sector]  # (..., 3): b, g, r
    bgr = torch.gather(tab, -1, order)
    rgb = bgr.flip(-1)
    return torch.where((s == 0)[..., None], v[..., None].expand_as(rgb), rgb)


def color_jitter_batch(patches: torch.Tensor, sizes: np.ndarray, factors: dict[str, torch.Tensor]) -> torch.Tensor:
    """``cutpaste.color_jitter`` for ``n`` patches at once.

    ``patches`` float32 ``(n, h, w, C)`` in [0, 1], patch ``k`` in ``[:sizes[k, 0], :sizes[k, 1]]``
    (the rest is padding); ``factors`` float32 ``(n,)`` tensors ``brightness``, ``contrast``,
    ``saturation``, ``hue``. Returns float32 ``(n, h, w, C)`` in [0, 1].
    """
    def per(name):
        return factors[name][:, None, None, None]

    out = (patches * per("brightness")).clamp(0.0, 1.0)
    lum = _luma(out)
    # each patch's mean over its own pixels (float64, like a pairwise float32 sum up to rounding)
    means = torch.stack([lum[k, : int(hh), : int(ww)].double().mean() for k, (hh, ww) in enumerate(sizes)])
    mean = means.float()[:, None, None, None]
    out = ((out - mean) * per("contrast") + mean).clamp(0.0, 1.0)
    if out.shape[-1] == 3:
        gray = _luma(out)[..., None]
        out = ((out - gray) * per("saturation") + gray).clamp(0.0, 1.0)
        hsv = _rgb_to_hsv(out)
        hue = torch.remainder(hsv[..., 0] + (360.0 * factors["hue"])[:, None, None], 360.0)
        shifted = _hsv_to_rgb(torch.stack([hue, hsv[..., 1], hsv[..., 2]], dim=-1))
        out = torch.where((factors["hue"] != 0.0)[:, None, None, None], shifted, out)
    return out.clamp(0.0, 1.0)


class _PasteBatch(BoxBatch):
    """Common state: the jitter factors and the source boxes of each render."""

    def prepare(self) -> None:
        names = ("brightness", "contrast", "saturation", "hue")
        self.factors = {
            n: torch.tensor([np.float32(s.params["jitter"][n]) for s in self.specs], device=self.device) for n in names
        }

    def patch_size(self, i: int, scale: float) -> tuple[int, int]:
        raise NotImplementedError

    def source_box(self, i: int, scale: float) -> tuple[int, int, int, int]:
        h, w = self.patch_size(i, scale)
        return cut_box(self.scenes[i], self.specs[i].params["source_position"], h, w)

    def patches(self, t_idx: torch.Tensor, knob: np.ndarray, idx: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Jittered patches ``(n, ph, pw, C)`` (padded) and their sizes ``(n, 2)``."""
        dev = self.device
        src = np.array([self.source_box(int(i), float(k)) for i, k in zip(idx, knob)], np.int64).reshape(-1, 4)
        sizes = np.stack([src[:, 1] - src[:, 0], src[:, 3] - src[:, 2]], axis=1)
        ph, pw = int(sizes[:, 0].max()), int(sizes[:, 1].max())
        rows = (to_device(src[:, 0], dev)[:, None] + torch.arange(ph, device=dev)).clamp(max=self.height - 1)
        cols = (to_device(src[:, 2], dev)[:, None] + torch.arange(pw, device=dev)).clamp(max=self.width - 1)
        patch = self.colour[t_idx[:, None, None], rows[:, :, None], cols[:, None, :]]
        factors = {n: f[t_idx] for n, f in self.factors.items()}
        return color_jitter_batch(patch, sizes, factors), sizes


class CutPasteBatch(_PasteBatch):
    """CutPaste (``method.CutPaste``): a jittered rectangle of the image pasted elsewhere."""

    def patch_size(self, i, scale):
        p = self.specs[i].params
        area = p.get("target_fraction", p["area_fraction"]) * self.height * self.width * scale * scale
        h = int(min(max(round(math.sqrt(area / p["aspect"])), 1), self.height))
        w = int(min(max(round(math.sqrt(area * p["aspect"])), 1), self.width))
        return h, w

    def box(self, i, scale, attempt):
        h, w = self.patch_size(i, scale)
        return anchored_box(self, i, attempt, h, w)

    def values(self, t_idx, source, rows, cols, boxes, knob):
        patch, _ = self.patches(t_idx, knob, t_idx.cpu().numpy())
        return patch[:, : source.shape[1], : source.shape[2]]

    def describe(self, i, box, knob):
        return {"source_box": list(self.source_box(i, knob)), "box": box}

    def limits(self):
        fractions = np.array([s.params.get("target_fraction", s.params["area_fraction"]) for s in self.specs])
        return np.ones(len(self.specs)), np.sqrt(1.0 / fractions)


@lru_cache(maxsize=256)
def _rotation(h: int, w: int, angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scar's rotation of an ``h x w`` patch by ``angle`` degrees (``cutpaste._rotation_box``'s
    matrix and bounding box): the bool footprint ``(fh, fw)`` exactly as the numpy path computes
    it, and float32 source coordinates ``(fh, fw)`` (row, column) of every output pixel."""
    matrix, footprint = rotation_box(h, w, angle)
    out_h, out_w = footprint.shape
    inverse = cv2.invertAffineTransform(matrix).astype(np.float32)
    x = np.arange(out_w, dtype=np.float32)[None]
    y = np.arange(out_h, dtype=np.float32)[:, None]
    sx = inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]
    sy = inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]
    for a in (footprint, sx, sy):
        a.setflags(write=False)
    return footprint, sy, sx


def _warp(patches: torch.Tensor, sizes: np.ndarray, coords: list[tuple[np.ndarray, np.ndarray]], fh: int, fw: int) -> torch.Tensor:
    """Bilinear samples ``(n, fh, fw, C)`` of each padded patch at its source coordinates, the
    taps clamped into the patch's own size (cv2's replicated border)."""
    dev = patches.device
    n = len(coords)
    sy = np.zeros((n, fh, fw), np.float32)
    sx = np.zeros((n, fh, fw), np.float32)
    for k, (cy, cx) in enumerate(coords):
        cy, cx = cy[:fh, :fw], cx[:fh, :fw]
        sy[k, : cy.shape[0], : cy.shape[1]] = cy
        sx[k, : cx.shape[0], : cx.shape[1]] = cx
    sy_t, sx_t = torch.from_numpy(sy).to(dev), torch.from_numpy(sx).to(dev)
    y0f, x0f = torch.floor(sy_t), torch.floor(sx_t)
    ay, ax = (sy_t - y0f)[..., None], (sx_t - x0f)[..., None]
    last_y = to_device(sizes[:, 0] - 1, dev)[:, None, None]
    last_x = to_device(sizes[:, 1] - 1, dev)[:, None, None]
    y0, x0 = y0f.to(torch.int64), x0f.to(torch.int64)
    ys = [torch.minimum(y.clamp(min=0), last_y) for y in (y0, y0 + 1)]
    xs = [torch.minimum(x.clamp(min=0), last_x) for x in (x0, x0 + 1)]
    k = torch.arange(n, device=dev)[:, None, None]
    a, b, c, d = (patches[k, y, x] for y in ys for x in xs)
    top = a + ax * (b - a)
    bottom = c + ax * (d - c)
    return top + ay * (bottom - top)


class CutPasteScarBatch(_PasteBatch):
    """CutPaste-Scar (``method.CutPasteScar``): a thin jittered strip, rotated, pasted."""

    def prepare(self) -> None:
        super().prepare()
        self.factor = np.array([min(self.height, self.width) / float(s.params["reference_side"]) for s in self.specs])

    def patch_size(self, i, scale):
        p = self.specs[i].params
        h = int(min(max(round(p["height"] * self.factor[i] * scale), 1), self.height))
        w = int(min(max(round(p["width"] * self.factor[i] * scale), 1), self.width))
        return h, w

    def rotation(self, i: int, scale: float):
        h, w = self.patch_size(i, scale)
        return _rotation(h, w, float(self.specs[i].params["angle"]))

    def box(self, i, scale, attempt):
        fh, fw = self.rotation(i, scale)[0].shape
        return anchored_box(self, i, attempt, fh, fw)

    def values(self, t_idx, source, rows, cols, boxes, knob):
        idx = t_idx.cpu().numpy()
        patch, sizes = self.patches(t_idx, knob, idx)
        _, wh, ww, _ = source.shape
        rotations = [self.rotation(int(i), float(k)) for i, k in zip(idx, knob)]
        rotated = _warp(patch, sizes, [(r[1], r[2]) for r in rotations], wh, ww)
        # a strip rotated larger than the image is cut to its window (the top-left part)
        footprint = np.zeros((len(idx), wh, ww), bool)
        for k, (fp, _, _) in enumerate(rotations):
            footprint[k, : min(fp.shape[0], wh), : min(fp.shape[1], ww)] = fp[:wh, :ww]
        inside = torch.from_numpy(footprint).to(self.device)[..., None]
        return torch.where(inside, rotated, source)

    def describe(self, i, box, knob):
        return {"source_box": list(self.source_box(i, knob))}

    def limits(self):
        starts, upper = np.ones(len(self.specs)), np.zeros(len(self.specs))
        for i, s in enumerate(self.specs):
            p = s.params
            if s.size_bin is not None:
                drawn = p["width"] * p["height"] * self.factor[i] * self.factor[i]
                starts[i] = math.sqrt(p["target_fraction"] * self.height * self.width / drawn)
            upper[i] = max(self.height, self.width) / max(1.0, min(p["width"], p["height"]) * self.factor[i])
        return starts, upper
