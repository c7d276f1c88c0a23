"""CutOut rendered for a whole batch on any torch device: the box's geometry by
``synth.sizing``'s own functions, the values on the device; byte-identical to the numpy path's."""

from __future__ import annotations

import math

import numpy as np
import torch

from ...batched.boxes import BoxBatch, anchored_box


class CutOutBatch(BoxBatch):
    """CutOut (``method.CutOut``): a square of constant colour."""

    def prepare(self) -> None:
        self.sides = np.array(
            [s.params["side"] * min(self.height, self.width) / float(s.params["reference_side"]) for s in self.specs]
        )
        self.fill = torch.tensor(
            np.array([np.asarray(s.params["colour"][: self.channels], np.float32) for s in self.specs]), device=self.device
        )

    def box(self, i, scale, attempt):
        s = int(max(1, round(self.sides[i] * scale)))
        return anchored_box(self, i, attempt, s, s)

    def values(self, t_idx, source, rows, cols, boxes, knob):
        return self.fill[t_idx][:, None, None, :].expand_as(source)

    def limits(self):
        # CutOut.render's arithmetic, in its order
        starts = np.array([
            math.sqrt(s.params.get("target_fraction", 0.0) * self.height * self.width) for s in self.specs
        ]) / self.sides
        return starts, max(self.height, self.width) / self.sides
