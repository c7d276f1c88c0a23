"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework", ICPR 2021).

Fit: the same stride-8 + stride-16 backbone features as PatchCore (no pooling), a seeded random
subset of ``n_features`` channels, and one Gaussian per patch position (mean and covariance, with
``epsilon * I`` added so that it stays invertible with few fit images).

Score: Mahalanobis distance of each test patch to its position's Gaussian, upsampled to the working
size, Gaussian-smoothed (sigma 4 px); the image score is the map's maximum. PaDiM models positions,
so it works at one fixed size: the fit size, or ``image_size``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from detect.detectors.backbones import FeatureExtractor
from detect.detectors.detector import Detector, gaussian_blur
from detect.errors import DetectError, NotFittedError
from detect.runtime import fastest_threads


class PaDiM(Detector):
    """PaDiM with a seeded random channel subset.

    ``backbone``    as for PatchCore.
    ``n_features``  channels kept (the paper uses 100 for ResNet18, 550 for WideResNet50); capped
                    at the backbone's channel count.
    ``epsilon``     covariance regulariser.
    """

    name = "padim"

    def __init__(
        self,
        *,
        backbone: str = "efficientnet_lite0",
        n_features: int = 100,
        epsilon: float = 0.01,
        sigma: float = 4.0,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if n_features < 1:
            raise DetectError(f"n_features must be >= 1, got {n_features}")
        self.backbone = backbone
        self.n_features = int(n_features)
        self.epsilon = float(epsilon)
        self.sigma = float(sigma)
        self.extractor = FeatureExtractor(backbone).to(self.device)
        total = sum(self.extractor.channels)
        gen = torch.Generator().manual_seed(self.seed)
        self.channel_index = torch.randperm(total, generator=gen)[: min(self.n_features, total)].sort().values.to(
            self.device)
        self.mean: torch.Tensor | None = None  # (P, d)
        self.inv_cov: torch.Tensor | None = None  # (P, d, d)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "backbone": self.backbone,
            "n_features": self.n_features,
            "epsilon": self.epsilon,
            "sigma": self.sigma,
        }

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        f8, f16 = self.extractor(images)
        f16 = F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        feats = torch.cat([f8, f16], dim=1)
        return feats[:, self.channel_index]

    streams_fit = True

    def _fit(self, batches, progress: bool = False) -> None:
        # float32 sums of features minus the first batch's per-position mean: shifting removes the
        # cancellation that made raw float32 sums inaccurate, at half the memory and time of float64
        count, shift, total, outer = 0, None, None, None
        with torch.no_grad():
            for batch in batches:
                f = self._features(batch)
                b, d, h, w = f.shape
                x = f.permute(2, 3, 0, 1).reshape(h * w, b, d)  # (P, B, d)
                if shift is None:
                    shift = x.mean(dim=1)
                    total = torch.zeros(h * w, d, dtype=x.dtype, device=x.device)
                    outer = torch.zeros(h * w, d, d, dtype=x.dtype, device=x.device)
                x = x - shift[:, None]
                total += x.sum(dim=1)
                with fastest_threads(x.device):
                    outer.baddbmm_(x.transpose(1, 2), x)
                count += b
            mean = total / count
            # covariance in place: (sum x x^T - n m m^T) / (n - 1) + epsilon I
            outer.baddbmm_(mean[:, :, None], mean[:, None, :], alpha=-count)
            outer /= max(count - 1, 1)
            outer.diagonal(dim1=-2, dim2=-1).add_(self.epsilon)
            self.mean = mean + shift
            # symmetric positive definite: the Cholesky factor inverts it faster than a general LU;
            # P small (d, d) problems: threads cost more than they give
            with fastest_threads(outer.device):
                self.inv_cov = torch.cholesky_inverse(torch.linalg.cholesky(outer))

    def _score_batch(self, images: torch.Tensor) -> torch.Tensor:
        if self.mean is None or self.inv_cov is None:
            raise NotFittedError("PaDiM has no Gaussians; fit it first")
        f = self._features(images)
        b, d, h, w = f.shape
        delta = f.permute(2, 3, 0, 1).reshape(h * w, b, d) - self.mean[:, None, :]  # (P, B, d)
        # one batched product per position (a three-operand einsum takes a slower path on CPU)
        with fastest_threads(delta.device):
            m2 = (torch.bmm(delta, self.inv_cov) * delta).sum(dim=2).clamp_min(0)
        maps = m2.sqrt().T.reshape(b, 1, h, w)
        maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return gaussian_blur(maps, self.sigma)

    def _state(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "inv_cov": self.inv_cov, "channel_index": self.channel_index}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.mean = state["mean"].to(self.device)
        self.inv_cov = state["inv_cov"].to(self.device)
        self.channel_index = state["channel_index"].to(self.device)

    def _move(self, device: torch.device) -> None:
        self.extractor.to(device)
        self.channel_index = self.channel_index.to(device)
        if self.mean is not None:
            self.mean = self.mean.to(device)
            self.inv_cov = self.inv_cov.to(device)
