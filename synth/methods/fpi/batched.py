"""FPI rendered for a whole batch on any torch device: the box's geometry by
``synth.sizing``'s own functions, the values on the device; byte-identical to the numpy path's."""

from __future__ import annotations

import math

import numpy as np
import torch

from ...batched.boxes import BoxBatch, anchored_box
from ...partner import partner_image


class FPIBatch(BoxBatch):
    """FPI (``method.FPI``): a box linearly interpolated towards the same box of a partner image
    (the image rotated by 180 degrees when the scenes hold no partner)."""

    def prepare(self) -> None:
        self.h0 = np.array([2.0 * s.params["half_size"][0] * self.height for s in self.specs])
        self.w0 = np.array([2.0 * s.params["half_size"][1] * self.width for s in self.specs])
        self.alpha = torch.tensor([np.float32(s.params["alpha"]) for s in self.specs], device=self.device)
        self.sources: list[str] = []
        partners = []
        for i, (spec, scene) in enumerate(zip(self.specs, self.scenes)):
            if scene.partners and int(spec.params["partner_index"]) >= 0:
                partner, name = partner_image(scene, int(spec.params["partner_index"]), "rotate180")
                partners.append(torch.from_numpy(partner).to(self.device))
            else:
                name = "self_rotated_180"
                partners.append(self.colour[i].flip(0).flip(1))
            self.sources.append(name)
        self.partners = torch.stack(partners)

    def box(self, i, scale, attempt):
        h = int(min(max(round(self.h0[i] * scale), 1), self.height))
        w = int(min(max(round(self.w0[i] * scale), 1), self.width))
        return anchored_box(self, i, attempt, h, w)

    def values(self, t_idx, source, rows, cols, boxes, knob):
        alpha = self.alpha[t_idx][:, None, None, None]
        partner = self.partners[t_idx[:, None, None], rows[:, :, None], cols[:, None, :]]
        return (1.0 - alpha) * source + alpha * partner

    def limits(self):
        starts = np.array([
            math.sqrt(s.params.get("target_fraction", 0.0) * self.height * self.width / (h0 * w0))
            for s, h0, w0 in zip(self.specs, self.h0, self.w0)
        ])
        return starts, np.maximum(self.height / self.h0, self.width / self.w0)

    def extra(self, i, rendered):
        return {"source": self.sources[i]}
