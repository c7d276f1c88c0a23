"""DRAEM: a discriminatively trained reconstruction anomaly embedding model.

Zavrtnik, Kristan, Skočaj, "DRAEM – A discriminatively trained reconstruction embedding for
surface anomaly detection" (ICCV 2021); one of ASBench's detection pipelines. Two sub-networks:

* reconstructive: an encoder–decoder without skip connections (five conv blocks, four 2×2 max
  pools; widths ``w, 2w, 4w, 8w, 8w``) that maps the image with a synthetic anomaly back to its
  anomaly-free original; loss ``L_rec = L2(I, I_r) + λ·L_SSIM(I, I_r)`` with λ = 1 (SSIM window 11);
* discriminative: a U-Net (six blocks, five pools; widths ``v, 2v, 4v, 8v, 8v, 8v``) on the
  channel-wise concatenation of the reconstruction and the image (6 channels) that outputs the
  anomaly mask; loss: focal loss, γ = 2. One logit per pixel (sigmoid) instead of the original's
  two-class softmax: the same family of outputs, since a softmax over two logits is the sigmoid of
  their difference.

Training: Adam, lr 1e-4, lr × 0.2 at 80 % and 90 % of the steps, batch 8 (the paper: 700 epochs);
each sample carries an anomaly with probability ``anomaly_ratio`` (DRAEM's default 0.5) made by the
``draem`` synth method by default (Perlin mask, texture fill) or any other method or mix.

Against the papers' runs, two defaults differ, each with an option that runs the papers' way:

* textures: DRAEM fills its anomalies from DTD; without ``textures=DIR`` (a texture folder, e.g.
  DTD's ``images/``) the ``draem`` method fills from the image's own shuffled tiles;
* training-image augmentation: DRAEM's code rotates a training image by U(-90°, 90°) with
  probability 0.3 (black corners); the default here flips it left-right and up-down (each with
  probability 1/2), as every pipeline of this project does, so a given seed keeps training on the
  same samples; ``source_augment="rotate"`` trains on DRAEM's rotations.
  (The ``draem`` synth method itself follows DRAEM: Perlin mask rotated by U(-90°, 90°), the
  texture's own augmentations including its rotation.)
Scoring: pixel map = the discriminative output (probability); image score = maximum of the map
after a 21×21 mean filter.

Sizes: the paper's widths are ``rec_width=128, disc_width=64`` (``DRAEMDetector.PAPER_WIDTHS``, about
97 M parameters); the default ``rec_width=16, disc_width=8`` (about 1.5 M) trains on a CPU. Input
sides are reflect-padded to a multiple of 32 (five pools).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detect.training.synthetic_training import SyntheticTrainedDetector, focal_loss, ssim_loss


def _block(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
    )


def _up(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
    )


class ReconstructiveSubNetwork(nn.Module):
    """Encoder–decoder, no skips: float32 ``(N, 3, H, W)`` in [0, 1] -> reconstruction ``(N, 3, H, W)``.

    H and W must be multiples of 16.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        chans = (w, 2 * w, 4 * w, 8 * w, 8 * w)
        self.encoder = nn.ModuleList([_block(c_in, c_out) for c_in, c_out in zip((3,) + chans[:-1], chans)])
        # decoder: up-convolution then a block, widths back down 8w -> 4w -> 2w -> w
        self.ups = nn.ModuleList([_up(8 * w, 8 * w), _up(4 * w, 4 * w), _up(2 * w, 2 * w), _up(w, w)])
        self.blocks = nn.ModuleList([
            _block(8 * w, 4 * w), _block(4 * w, 2 * w), _block(2 * w, w), _block(w, w),
        ])
        self.out = nn.Conv2d(w, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
        for up, block in zip(self.ups, self.blocks):
            x = block(up(x))
        return self.out(x)


class DiscriminativeSubNetwork(nn.Module):
    """U-Net: float32 ``(N, 6, H, W)`` -> anomaly logits ``(N, 1, H, W)``. H, W multiples of 32."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        v = width
        chans = (v, 2 * v, 4 * v, 8 * v, 8 * v, 8 * v)
        self.encoder = nn.ModuleList([_block(c_in, c_out) for c_in, c_out in zip((6,) + chans[:-1], chans)])
        ups, blocks = [], []
        for deep, skip in zip(chans[::-1][:-1], chans[::-1][1:]):  # (8v,8v) (8v,8v) (8v,4v) (4v,2v) (2v,v)
            ups.append(_up(deep, skip))
            blocks.append(_block(2 * skip, skip))
        self.ups = nn.ModuleList(ups)
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(v, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, block, skip in zip(self.ups, self.blocks, skips[::-1][1:]):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.out(x)


class DraemNetwork(nn.Module):
    """Both sub-networks: ``forward(x)`` -> ``(reconstruction, anomaly logits)``."""

    def __init__(self, rec_width: int = 16, disc_width: int = 8) -> None:
        super().__init__()
        self.reconstructive = ReconstructiveSubNetwork(rec_width)
        self.discriminative = DiscriminativeSubNetwork(disc_width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rec = self.reconstructive(x)
        return rec, self.discriminative(torch.cat([rec, x], dim=1))


class DRAEMDetector(SyntheticTrainedDetector):
    """DRAEM (see the module doc).

    Options beyond ``SyntheticTrainedDetector``'s: ``rec_width``/``disc_width`` (base widths of the
    sub-networks; ``PAPER_WIDTHS`` = 128/64), ``ssim_weight`` (λ of ``L_rec``, 1),
    ``focal_gamma`` (2) and ``focal_alpha`` (``None``: both classes weighted 1, as DRAEM).
    Defaults follow the paper: ``methods="draem"``, ``anomaly_ratio=0.5``, Adam ``lr=1e-4``,
    ``score_kernel=21``; the paper's textures and training-image rotations with
    ``textures=DIR, source_augment="rotate"`` (see the module doc).
    """

    name = "draem"
    label_kind = "mask"
    needs_source = True
    default_ratio = 0.5
    pad_multiple = 32
    PAPER_WIDTHS = {"rec_width": 128, "disc_width": 64}

    def __init__(
        self,
        *,
        methods: Any = ("draem",),
        lr: float = 1e-4,
        score_kernel: int = 21,
        rec_width: int = 16,
        disc_width: int = 8,
        ssim_weight: float = 1.0,
        focal_gamma: float = 2.0,
        focal_alpha: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(methods=methods, lr=lr, score_kernel=score_kernel, **options)
        self.rec_width = int(rec_width)
        self.disc_width = int(disc_width)
        self.ssim_weight = float(ssim_weight)
        self.focal_gamma = float(focal_gamma)
        self.focal_alpha = None if focal_alpha is None else float(focal_alpha)
        self.init_model()

    def build_model(self) -> nn.Module:
        return DraemNetwork(self.rec_width, self.disc_width)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "rec_width": self.rec_width, "disc_width": self.disc_width,
                "ssim_weight": self.ssim_weight, "focal_gamma": self.focal_gamma, "focal_alpha": self.focal_alpha}

    def make_optimizer(self, parameters) -> torch.optim.Optimizer:
        return torch.optim.Adam(parameters, lr=self.lr)

    def lr_factor(self, step: int) -> float:
        """× 0.2 at 80 % and again at 90 % of the steps (DRAEM's MultiStepLR)."""
        return 0.2 ** sum(step >= int(self.steps * m) for m in (0.8, 0.9))

    def training_loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        image, mask, source = batch
        h, w = image.shape[-2:]
        rec, logits = model(self.pad(image))
        rec, logits = rec[..., :h, :w].float(), logits[..., :h, :w]
        l_rec = F.mse_loss(rec, source) + self.ssim_weight * ssim_loss(rec, source)
        return l_rec + focal_loss(logits, mask, gamma=self.focal_gamma, alpha=self.focal_alpha)

    def anomaly_maps(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(model(images)[1].float())[:, 0]

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstructions float32 ``(B, 3, H, W)`` of float32 ``(B, C, H, W)`` images in [0, 1]."""
        self.model.eval()
        h, w = images.shape[-2:]
        x = images.to(self.device)
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        with torch.no_grad():
            return self.model.reconstructive(self.pad(x))[..., :h, :w].float()
