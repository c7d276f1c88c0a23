"""The noise-mask methods, DRAEM, fractal and foreground Perlin, rendered for a batch on any
torch device.

What runs where, so that the outputs are the numpy path's bytes:

* on the CPU, once per anomaly and placement attempt: the noise field, by ``synth.perlin``'s own
  ``rotated_noise`` from the spec's integer seeds (its OpenCV resampling is not reproduced on the
  device); the fill (``draem.fill_image``: the resized, augmented texture, the shuffled tiles of
  the image or the procedural noise texture, by OpenCV) or, for foreground Perlin, the partner
  image and the estimated foreground masks (``synth.foreground``). These read the image's
  pixels, so the batch is copied to the host once per ``render_batch`` for these methods;
* on the device, for every render of the size search: ranking the noise (a sort, exact on any
  device), the mask of the ``k`` highest-noise allowed pixels (or the thresholded noise without
  a size bin), the blend ``(1 - opacity) * image + opacity * fill`` in float32, the region,
  quantisation and the measured changed area;
* the size search is ``sizing.fit``'s, batched (``boxes._BoxBatch.run``).

Every step is the numpy path's operation in the same precision, so outputs are byte-identical
(``tests/test_batched.py``). Each anomaly's masks and windows are computed on its own tensors, so
its bytes do not depend on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..draem import _PIXEL_COUNT, EMPTY_MASK_FALLBACK
from ..method import Scene, Spec
from ..partner import partner_image
from ..perlin import rotated_noise
from ..sizing import Steering
from .boxes import _BoxBatch
from .layout import changed_pixels, quantize
from .steering import Renders


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

    def mask(self, k: float) -> torch.Tensor:
        k = int(min(max(round(k), 1), self.count))
        if self._sorted is None:
            values = self.noise[self.candidates] if self.candidates is not None else self.noise.reshape(-1)
            self._sorted = torch.sort(values).values
        mask = self.noise >= self._sorted[self.count - k]
        return mask if self.candidates is None else mask & self.candidates


class NoiseMaskBatch(_BoxBatch):
    """DRAEM (``synth.draem``) and its subclasses fractal and foreground Perlin: a thresholded
    noise mask filled by blending towards a fill image; the knob is the mask's pixel count."""

    needs_pixels = True

    def __init__(self, method, *args, **kwargs) -> None:
        self.method = method
        super().__init__(method, *args, **kwargs)

    @staticmethod
    def plan(method, spec: Spec, scene: Scene, textures=()) -> _NoisePlan:
        """The numpy path's candidates, fill and first noise field for one spec (CPU)."""
        candidates = method._candidates(scene, spec)
        return _NoisePlan(
            candidates=None if candidates is None else np.ascontiguousarray(candidates),
            blend=np.ascontiguousarray(method._blend_source(scene, spec)),
            noise=_noise(spec, scene.height, scene.width, 0),
        )

    def prepare(self) -> None:
        dev = self.device
        self.opacity = [torch.tensor(np.float32(s.params["opacity"]), device=dev) for s in self.specs]
        self.candidates: list[torch.Tensor | None] = []
        self.blends: list[torch.Tensor] = []
        self.allowed = np.zeros(len(self.specs))
        for i, (plan, scene) in enumerate(zip(self.plans, self.scenes)):
            candidates = plan.candidates
            self.candidates.append(None if candidates is None else torch.from_numpy(candidates).to(dev))
            self.allowed[i] = scene.height * scene.width if candidates is None else int(candidates.sum())
            self.blends.append(torch.from_numpy(plan.blend).to(dev))
        self.ranked: dict[tuple[int, int], _Ranked] = {}

    def _ranked(self, i: int, attempt: int) -> _Ranked:
        if (i, attempt) not in self.ranked:
            # the first attempt's noise was planned; later placement attempts are rare
            noise = self.plans[i].noise if attempt == 0 else _noise(self.specs[i], self.height, self.width, attempt)
            self.ranked[(i, attempt)] = _Ranked(torch.from_numpy(noise).to(self.device), self.candidates[i])
        return self.ranked[(i, attempt)]

    def _mask(self, i: int, knob: float, attempt: int) -> torch.Tensor:
        rm = self._ranked(i, attempt)
        if knob >= 0:
            return rm.mask(knob)
        mask = rm.threshold_mask(self.specs[i].params["threshold"])
        if not bool(mask.any()):
            # DRAEM.render's fallback for noise that stays below the threshold everywhere
            mask = rm.mask(max(1, int(round(EMPTY_MASK_FALLBACK * rm.count))))
        return mask

    def render(self, idx, knob, attempt) -> Renders:
        n = len(idx)
        area, oy, ox = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
        outputs, changes, infos = [], [], []
        for k, (i, kn, a) in enumerate(zip(idx.tolist(), knob.tolist(), attempt.tolist())):
            mask = self._mask(i, kn, a)
            rows = torch.nonzero(mask.any(dim=1)).flatten()
            cols = torch.nonzero(mask.any(dim=0)).flatten()
            if rows.numel() == 0:  # ``sizing.bbox_window`` of an empty mask: the whole image
                y0, y1, x0, x1 = 0, self.height, 0, self.width
            else:
                y0, y1 = int(rows[0]), int(rows[-1]) + 1
                x0, x1 = int(cols[0]), int(cols[-1]) + 1
            source = self.colour[i, y0:y1, x0:x1]
            inside = mask[y0:y1, x0:x1, None]
            opacity = self.opacity[i]
            blended = (1.0 - opacity) * source + opacity * self.blends[i][y0:y1, x0:x1]
            values = torch.where(inside, blended, source).clamp(0.0, 1.0)
            if self.regions is not None:
                values = torch.where(self.regions[i, y0:y1, x0:x1, None], values, source)
            out = quantize(values, self.quantum)
            changed = changed_pixels(source, out)
            area[k], oy[k], ox[k] = float(changed.sum()), y0, x0
            outputs.append(out)
            changes.append(changed)
            infos.append({"mask_pixels": int(mask.sum())})
        return Renders(area, oy, ox, outputs, changes, infos)

    def limits(self):
        starts = np.ones(len(self.specs))
        for i, (spec, scene) in enumerate(zip(self.specs, self.scenes)):
            if spec.size_bin is not None:
                starts[i] = max(1.0, spec.params["target_fraction"] * scene.height * scene.width)
        return starts, self.allowed.astype(np.float64)

    def search(self) -> tuple[Steering, np.ndarray, np.ndarray]:
        b = len(self.specs)
        return _PIXEL_COUNT, np.ones(b), np.full(b, -1.0)

    def extra(self, i, rendered):
        if self.method.name != "foreground_perlin":
            return {}
        return {"source": partner_image(self.scenes[i], int(self.specs[i].params["partner_index"]), "rotate180")[1]}
