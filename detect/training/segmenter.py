"""A self-supervised segmentation detector trained on synthetic anomalies (the NSA recipe).

Schlüter et al., "Natural Synthetic Anomalies for Self-Supervised Anomaly Detection and
Localization" (ECCV 2022): a network learns to *localise* anomalies that are made on the fly in
anomaly-free images, so it never sees a real defect. Here:

* network: a small U-Net whose encoder is the ImageNet EfficientNet-Lite0 (first four stages,
  strides 2..16) and whose decoder is four upsampling steps with skip connections -> one logit per
  pixel;
* training data: each sample is a fit image (randomly flipped) with one anomaly from
  ``synth.synthesize`` using any registered method, a mix (``methods=("synagen", "nsa")``) or a
  weighted mix (``methods={"synagen": 0.7, "nsa": 0.3}``); with ``anomaly_ratio < 1`` only that
  share of the samples carries an anomaly (NSA: every sample, the default);
* labels: NSA's logistic label ``mask / (1 + exp(-k (d - x0)))`` with ``d`` the per-pixel mean
  absolute change over channels in 0-255 units, ``k = 1/3``, ``x0 = 7``: faint changes count less;
* loss: binary cross-entropy on the logits;
* anomaly map: sigmoid of the logits; image score: maximum of the map after a ``score_kernel`` mean
  filter (robust to single hot pixels).

Training (``train_segmenter``, the shared loop of ``detect.training.synthetic_training``) runs under ``accelerate`` (CPU, one or many GPUs, mixed precision),
writes checkpoints, resumes from the last one and shows a tqdm progress bar; see ``detect.training.train``
for the command line.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detect.detectors.backbones import IMAGENET_MEAN, IMAGENET_STD, efficientnet_lite0
from detect.training.synthetic_training import (  # noqa: F401  (re-exported: the segmenter's public names)
    LOGISTIC_K,
    LOGISTIC_X0,
    SyntheticAnomalies,
    SyntheticTrainedDetector,
    latest_checkpoint,
    logistic_label,
    train_on_synthetic,
)


class _Up(nn.Module):
    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch + skip_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else tuple(s * 2 for s in x.shape[-2:])
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class LiteUNet(nn.Module):
    """U-Net on EfficientNet-Lite0: float32 ``(N, 3, H, W)`` in [0, 1] -> logits ``(N, 1, H, W)``.

    H and W must be multiples of 16 (``Segmenter`` pads). 0.43 M parameters when ``width=32``.
    """

    def __init__(self, pretrained: bool = True, width: int = 32) -> None:
        super().__init__()
        encoder = efficientnet_lite0(pretrained)
        self.stem = nn.Sequential(encoder._conv_stem, encoder._bn0, nn.ReLU6())
        ends = encoder.stage_ends  # last block index of each stage
        blocks = list(encoder._blocks)
        self.stages = nn.ModuleList(
            [nn.Sequential(*blocks[(ends[i - 1] + 1 if i else 0) : ends[i] + 1]) for i in range(4)]
        )  # outputs: 16 ch /2, 24 ch /4, 40 ch /8, 80 ch /16
        self.up3 = _Up(80, 40, 2 * width)
        self.up2 = _Up(2 * width, 24, width)
        self.up1 = _Up(width, 16, width)
        self.up0 = _Up(width, 0, width // 2)
        self.head = nn.Conv2d(width // 2, 1, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = self.stem((x - self.mean) / self.std)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        s2, s4, s8, s16 = skips
        y = self.up3(s16, s8)
        y = self.up2(y, s4)
        y = self.up1(y, s2)
        y = self.up0(y, None)
        return self.head(y)


class Segmenter(SyntheticTrainedDetector):
    """Self-supervised segmentation detector (NSA recipe) on a Lite0 U-Net.

    ``methods``        synth methods to train on: names (uniform mix) or ``{name: weight}``.
    ``anomaly_ratio``  share of training samples with an anomaly (default 1.0, as NSA).
    ``steps``          optimiser steps; ``train_batch_size`` images per step (per process).
    ``lr``             AdamW learning rate (cosine decay to 5 %).
    ``score_kernel``   side of the mean filter applied before taking the image-score maximum.
    ``mixed_precision`` "no", "fp16" or "bf16" (training only).
    ``pretrained``     start the encoder from ImageNet weights.
    """

    name = "segmenter"
    label_kind = "logistic"
    pad_multiple = 16

    def __init__(self, *, pretrained: bool = True, width: int = 32, **options: Any) -> None:
        super().__init__(**options)
        self.pretrained = bool(pretrained)
        self.width = int(width)
        self.init_model()

    def build_model(self) -> nn.Module:
        return LiteUNet(pretrained=self.pretrained, width=self.width)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "pretrained": self.pretrained, "width": self.width}

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, H, W)`` for float32 ``(B, C, H, W)``; pads to a multiple of 16."""
        h, w = images.shape[-2:]
        return self.model(self.pad(images.to(self.device)))[..., :h, :w]

    def training_loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = model(self.pad(x))[..., : x.shape[-2], : x.shape[-1]]
        return F.binary_cross_entropy_with_logits(logits.float(), y)

    def anomaly_maps(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(model(images).float())[:, 0]


def train_segmenter(detector: Segmenter, images: torch.Tensor, **options: Any) -> Segmenter:
    """Train a segmenter; see ``detect.training.synthetic_training.train_on_synthetic`` for the options."""
    return train_on_synthetic(detector, images, **options)
