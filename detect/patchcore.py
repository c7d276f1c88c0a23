"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Fit: pretrained CNN features of the anomaly-free images at strides 8 and 16, each locally aggregated
with 3x3 average pooling, the stride-16 map upsampled to stride 8 and concatenated -> one feature
vector per patch. A greedy k-center coreset (on a seeded random projection, as in the paper) keeps
``coreset_ratio`` of the patches as the memory bank.

Score: distance of every test patch to its nearest memory-bank patch (``torch.cdist`` in chunks),
upsampled to the working size, Gaussian-smoothed (sigma 4 px); the image score is the map's maximum.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .backbones import FeatureExtractor
from .detector import Detector, gaussian_blur
from .errors import DetectError, NotFittedError


def patch_features(extractor: FeatureExtractor, images: torch.Tensor) -> torch.Tensor:
    """Locally aware patch features ``(N, D, H/8, W/8)`` for float32 images ``(N, C, H, W)``."""
    f8, f16 = extractor(images)
    f8 = F.avg_pool2d(f8, 3, stride=1, padding=1)
    f16 = F.avg_pool2d(f16, 3, stride=1, padding=1)
    f16 = F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([f8, f16], dim=1)


def greedy_coreset(
    features: torch.Tensor, size: int, *, projection_dim: int = 128, seed: int = 0, chunk: int = 16384,
    progress: bool = False,
) -> torch.Tensor:
    """Indices ``(size,)`` of a greedy k-center coreset of ``features`` ``(M, D)``.

    Distances are measured after a seeded Gaussian random projection to ``projection_dim``
    dimensions (Johnson-Lindenstrauss), which keeps the selection fast for wide backbones. The
    first centre is drawn with ``seed``; each next centre is the point farthest from all chosen.
    """
    m, d = features.shape
    size = max(1, min(int(size), m))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if projection_dim and projection_dim < d:
        proj = torch.randn(d, projection_dim, generator=gen) / projection_dim**0.5
        reduced = features @ proj.to(features.device, features.dtype)
    else:
        reduced = features
    first = int(torch.randint(m, (1,), generator=gen))
    selected = torch.empty(size, dtype=torch.long)
    selected[0] = first
    # squared distances through |x|^2 - 2 x.c + |c|^2: one matrix-vector product per new centre
    sq = (reduced * reduced).sum(dim=1)
    min_dist = torch.full((m,), float("inf"), device=features.device, dtype=reduced.dtype)
    last = first
    from tqdm.auto import tqdm

    for i in tqdm(range(1, size), desc="patchcore: coreset", unit="centre", disable=not progress,
                  leave=False, mininterval=0.5):
        for s in range(0, m, chunk):
            part = sq[s : s + chunk] - 2.0 * (reduced[s : s + chunk] @ reduced[last]) + sq[last]
            min_dist[s : s + chunk] = torch.minimum(min_dist[s : s + chunk], part)
        last = int(torch.argmax(min_dist))
        selected[i] = last
    return selected


def nearest_distance(queries: torch.Tensor, bank: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Euclidean distance ``(Q,)`` from each query ``(Q, D)`` to its nearest row of ``bank`` ``(M, D)``.

    Computed in bank chunks so memory stays ``O(Q x chunk)``.
    """
    best = torch.full((queries.shape[0],), float("inf"), device=queries.device, dtype=queries.dtype)
    for s in range(0, bank.shape[0], chunk):
        d = torch.cdist(queries, bank[s : s + chunk])
        best = torch.minimum(best, d.min(dim=1).values)
    return best


class PatchCore(Detector):
    """PatchCore with a seeded greedy coreset memory bank.

    ``backbone``       ``efficientnet_lite0`` (offline default), ``resnet18``, ``wide_resnet50_2``, ...
    ``coreset_ratio``  share of fit patches kept in the memory bank (0 < r <= 1).
    ``max_coreset``    optional cap on the memory-bank size (keeps fitting time bounded).
    ``sigma``          Gaussian smoothing of the map in working-size pixels.
    """

    name = "patchcore"

    def __init__(
        self,
        *,
        backbone: str = "efficientnet_lite0",
        coreset_ratio: float = 0.1,
        max_coreset: int | None = None,
        projection_dim: int = 128,
        sigma: float = 4.0,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if not 0.0 < coreset_ratio <= 1.0:
            raise DetectError(f"coreset_ratio must be in (0, 1], got {coreset_ratio}")
        self.backbone = backbone
        self.coreset_ratio = float(coreset_ratio)
        self.max_coreset = max_coreset
        self.projection_dim = int(projection_dim)
        self.sigma = float(sigma)
        self.extractor = FeatureExtractor(backbone).to(self.device)
        self.memory_bank: torch.Tensor | None = None

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "backbone": self.backbone,
            "coreset_ratio": self.coreset_ratio,
            "max_coreset": self.max_coreset,
            "projection_dim": self.projection_dim,
            "sigma": self.sigma,
        }

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        return patch_features(self.extractor, images)

    streams_fit = True

    def _fit(self, batches, progress: bool = False) -> None:
        with torch.no_grad():
            chunks = []
            for batch in batches:
                f = self._features(batch)
                chunks.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
            patches = torch.cat(chunks)
            del chunks
            size = int(round(self.coreset_ratio * patches.shape[0]))
            if self.max_coreset is not None:
                size = min(size, int(self.max_coreset))
            if size >= patches.shape[0]:
                self.memory_bank = patches
            else:
                idx = greedy_coreset(patches, size, projection_dim=self.projection_dim, seed=self.seed,
                                     progress=progress)
                self.memory_bank = patches[idx.to(patches.device)].contiguous()

    def _score_batch(self, images: torch.Tensor) -> torch.Tensor:
        if self.memory_bank is None:
            raise NotFittedError("PatchCore has no memory bank; fit it first")
        f = self._features(images)
        b, d, h, w = f.shape
        dist = nearest_distance(f.permute(0, 2, 3, 1).reshape(-1, d), self.memory_bank)
        maps = dist.view(b, 1, h, w)
        maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return gaussian_blur(maps, self.sigma)

    def _state(self) -> dict[str, torch.Tensor]:
        return {"memory_bank": self.memory_bank}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.memory_bank = state["memory_bank"].to(self.device)

    def _move(self, device: torch.device) -> None:
        self.extractor.to(device)
        if self.memory_bank is not None:
            self.memory_bank = self.memory_bank.to(device)
