"""Defect-map prediction with realistic synthetic anomalies (a reconstruction network with deep-feature
consistency and a large-kernel defect prediction network).

Paper: "Defect map prediction with realistic synthetic anomalies" (MDPI, 2024; cited in
``algorithms.md`` §5.2). The parts the paper specifies are followed exactly; the rest is said here.

Reconstruction network (paper §3.2)
    An autoencoder: encoder = the ImageNet EfficientNet-Lite0 (stem and first four stages, strides
    2..16, 80 channels at 1/16; *our choice*: the paper does not name its encoder, and these weights
    ship offline), decoder = four ×2 upsampling conv blocks to 3 channels, no skip connections.
    A **deep feature extractor** with the encoder's exact architecture, *not* trained by gradient:
    before each training round (one pass over the fit images) all encoder parameters and BatchNorm
    statistics are **copied** into it. It runs in eval mode (*our choice*: it must not change its
    copied statistics). ``z`` = extractor(anomaly-free image), ``ẑ`` = extractor(reconstruction).
    ``L_rec = λ2·L_vision + λ3·L_deep``, ``L_vision = λ1·L_SSIM + L2``, ``L_deep = L1(z, ẑ)``;
    λ1 = 1, λ2 = 0.8, λ3 = 0.2.

Defect prediction network (paper §3.3)
    Input: reconstruction and image concatenated (6 channels). Four stem layers (RepLKNet's stem:
    3×3 stride-2 conv, 3×3 depthwise, 1×1, 3×3 depthwise stride 2) -> ``width`` channels at 1/4
    (the paper: 128 at 64×64 from 256×256). Four stages of RepLKNet blocks with large depthwise
    kernels [31, 29, 27, 13], each in parallel with a 5×5 kernel (small-kernel
    re-parameterisation: ``LargeKernelConv.fuse`` folds it into the large kernel for inference),
    followed by a ConvFFN; stage widths ``width × (1, 2, 4, 8)`` joined by 1×1 + stride-2
    depthwise transitions (RepLKNet-31B). U-Net connections from the stages and stem to a decoder
    of ×2 upsampling blocks -> one logit per pixel; the defect probability map is its sigmoid.
    Blocks per stage: ``depths`` (*our default* (1, 1, 1, 1) for a CPU; RepLKNet-31B has
    (2, 2, 18, 2), ``DefectMap.PAPER_SIZES``).
    ``L_seg`` = focal loss ``-α_t (1 - p_t)^γ log p_t``; the paper gives no α or γ: *our default*
    γ = 2 and no α (both classes weighted 1), as DRAEM which the paper builds on.

Training: ``L_total = L_rec + L_seg``; Adam, lr 1e-4, × 0.1 at 400/700 and 600/700 of the steps
(the paper: 700 epochs, decays at epochs 400 and 600). Anomalies: ``foreground_perlin`` (the
paper's foreground Perlin cut-and-blend) by default, or any other method or mix, in a share
``anomaly_ratio`` of the samples (the paper does not say; default 0.5 as DRAEM).
Score (paper §3.4): image score ``η = max(M_p * f)`` with ``f`` an ``s_f × s_f`` mean filter
(``score_kernel``; the paper gives no size: 21 as DRAEM).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detect.detectors.backbones import IMAGENET_MEAN, IMAGENET_STD, efficientnet_lite0
from detect.training.synthetic_training import SyntheticTrainedDetector, focal_loss, ssim_loss


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    )


def _fold_bn(conv_bn: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of a conv followed by BatchNorm (eval statistics) as one conv."""
    conv, bn = conv_bn[0], conv_bn[1]
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    return conv.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class LargeKernelConv(nn.Module):
    """Depthwise ``kernel × kernel`` conv + BN with a parallel ``small × small`` conv + BN (RepLKNet).

    ``fuse()`` returns one depthwise conv with bias that computes the same in eval mode.
    """

    def __init__(self, channels: int, kernel: int, small: int = 5) -> None:
        super().__init__()
        self.large = _conv_bn(channels, channels, kernel, groups=channels)
        self.small = _conv_bn(channels, channels, small, groups=channels) if small < kernel else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.large(x)
        return out + self.small(x) if self.small is not None else out

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        weight, bias = _fold_bn(self.large)
        if self.small is not None:
            w_small, b_small = _fold_bn(self.small)
            pad = (weight.shape[-1] - w_small.shape[-1]) // 2
            weight = weight + F.pad(w_small, (pad, pad, pad, pad))
            bias = bias + b_small
        conv = self.large[0]
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
                          groups=conv.groups, bias=True)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        return fused


class RepLKBlock(nn.Module):
    """BN -> 1×1 -> ReLU -> large-kernel depthwise -> ReLU -> 1×1, residual (RepLKNet)."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.pw1 = _conv_bn(channels, channels, 1)
        self.large = LargeKernelConv(channels, kernel)
        self.pw2 = _conv_bn(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.pw1(self.norm(x)))
        out = F.relu(self.large(out))
        return x + self.pw2(out)


class ConvFFN(nn.Module):
    """BN -> 1×1 (×4 channels) -> GELU -> 1×1, residual (RepLKNet)."""

    def __init__(self, channels: int, ratio: int = 4) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.pw1 = _conv_bn(channels, channels * ratio, 1)
        self.pw2 = _conv_bn(channels * ratio, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw2(F.gelu(self.pw1(self.norm(x))))


class DefectPredictionNetwork(nn.Module):
    """Large-kernel U-Net: float32 ``(N, 6, H, W)`` -> defect logits ``(N, 1, H, W)``; H, W multiples of 32."""

    def __init__(self, width: int = 16, kernels: Sequence[int] = (31, 29, 27, 13),
                 depths: Sequence[int] = (1, 1, 1, 1)) -> None:
        super().__init__()
        if len(kernels) != 4 or len(depths) != 4:
            raise ValueError(f"four stages: give 4 kernels and 4 depths, got {list(kernels)} and {list(depths)}")
        c = width
        self.stem = nn.ModuleList([
            nn.Sequential(_conv_bn(6, c, 3, stride=2), nn.ReLU(inplace=True)),        # 1/2
            nn.Sequential(_conv_bn(c, c, 3, groups=c), nn.ReLU(inplace=True)),
            nn.Sequential(_conv_bn(c, c, 1), nn.ReLU(inplace=True)),
            nn.Sequential(_conv_bn(c, c, 3, stride=2, groups=c), nn.ReLU(inplace=True)),  # 1/4
        ])
        widths = [c * 2**i for i in range(4)]
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        for i, (w, k, d) in enumerate(zip(widths, kernels, depths)):
            if i:
                self.transitions.append(nn.Sequential(
                    _conv_bn(widths[i - 1], w, 1), nn.ReLU(inplace=True),
                    _conv_bn(w, w, 3, stride=2, groups=w), nn.ReLU(inplace=True),
                ))
            self.stages.append(nn.Sequential(*[m for _ in range(d) for m in (RepLKBlock(w, k), ConvFFN(w))]))
        # decoder: 8c/32 -> 4c/16 -> 2c/8 -> c/4 -> c/2 (stem skip) -> c/1
        self.ups = nn.ModuleList()
        for deep, skip in ((widths[3], widths[2]), (widths[2], widths[1]), (widths[1], widths[0]), (widths[0], c)):
            self.ups.append(nn.Sequential(
                nn.Conv2d(deep + skip, skip, 3, padding=1, bias=False), nn.BatchNorm2d(skip), nn.ReLU(inplace=True),
                nn.Conv2d(skip, skip, 3, padding=1, bias=False), nn.BatchNorm2d(skip), nn.ReLU(inplace=True),
            ))
        self.last = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        half = self.stem[0](x)
        x = half
        for layer in self.stem[1:]:
            x = layer(x)
        feats = []
        for i, stage in enumerate(self.stages):
            if i:
                x = self.transitions[i - 1](x)
            x = stage(x)
            feats.append(x)
        y = feats[3]
        for up, skip in zip(self.ups, (feats[2], feats[1], feats[0], half)):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = up(torch.cat([y, skip], dim=1))
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return self.head(self.last(y))


class LiteEncoder(nn.Module):
    """EfficientNet-Lite0 stem + first four stages: ``(N, 3, H, W)`` in [0, 1] -> ``(N, 80, H/16, W/16)``."""

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        net = efficientnet_lite0(pretrained)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = nn.Sequential(*list(net._blocks)[: net.stage_ends[3] + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem((x - self.mean) / self.std))


class DefectMapNetwork(nn.Module):
    """Reconstruction autoencoder, its parameter-copied feature extractor, and the defect predictor.

    ``forward(x)`` -> ``(reconstruction (N, 3, H, W), defect logits (N, 1, H, W))``.
    """

    def __init__(self, pretrained: bool = True, decoder_width: int = 32, width: int = 16,
                 kernels: Sequence[int] = (31, 29, 27, 13), depths: Sequence[int] = (1, 1, 1, 1)) -> None:
        super().__init__()
        self.encoder = LiteEncoder(pretrained)
        d = decoder_width
        chans = (80, 4 * d, 2 * d, d, d)
        self.decoder = nn.Sequential(*[
            m for c_in, c_out in zip(chans[:-1], chans[1:]) for m in (
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            )
        ], nn.Conv2d(d, 3, 3, padding=1))
        self.feature_extractor = LiteEncoder(pretrained=False)
        self.feature_extractor.requires_grad_(False)
        self.copy_encoder()
        self.predictor = DefectPredictionNetwork(width, kernels, depths)

    @torch.no_grad()
    def copy_encoder(self) -> None:
        """Copy every encoder parameter and statistic into the feature extractor (paper §3.2)."""
        self.feature_extractor.load_state_dict(self.encoder.state_dict())

    def train(self, mode: bool = True) -> "DefectMapNetwork":
        super().train(mode)
        self.feature_extractor.eval()  # never updates its copied BatchNorm statistics
        return self

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rec = self.reconstruct(x)
        return rec, self.predictor(torch.cat([rec, x], dim=1))


class DefectMap(SyntheticTrainedDetector):
    """Defect-map prediction (see the module doc).

    Options beyond ``SyntheticTrainedDetector``'s: ``width`` (predictor stem width; paper 128),
    ``kernels`` (paper [31, 29, 27, 13]), ``depths`` (blocks per stage; paper RepLKNet-31B
    (2, 2, 18, 2)), ``decoder_width`` (reconstruction decoder), ``pretrained`` (ImageNet encoder),
    ``lambdas`` (λ1, λ2, λ3) = (1, 0.8, 0.2), ``focal_gamma`` (2), ``focal_alpha`` (``None``).
    """

    name = "defect_map"
    label_kind = "mask"
    needs_source = True
    default_ratio = 0.5
    pad_multiple = 32
    PAPER_SIZES = {"width": 128, "depths": (2, 2, 18, 2), "kernels": (31, 29, 27, 13)}

    def __init__(
        self,
        *,
        methods: Any = ("foreground_perlin",),
        lr: float = 1e-4,
        score_kernel: int = 21,
        width: int = 16,
        kernels: Sequence[int] = (31, 29, 27, 13),
        depths: Sequence[int] = (1, 1, 1, 1),
        decoder_width: int = 32,
        pretrained: bool = True,
        lambdas: Sequence[float] = (1.0, 0.8, 0.2),
        focal_gamma: float = 2.0,
        focal_alpha: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(methods=methods, lr=lr, score_kernel=score_kernel, **options)
        self.width = int(width)
        self.kernels = tuple(int(k) for k in kernels)
        self.depths = tuple(int(d) for d in depths)
        self.decoder_width = int(decoder_width)
        self.pretrained = bool(pretrained)
        self.lambdas = tuple(float(v) for v in lambdas)
        if len(self.lambdas) != 3:
            raise ValueError(f"lambdas are (λ1, λ2, λ3), got {list(lambdas)}")
        self.focal_gamma = float(focal_gamma)
        self.focal_alpha = None if focal_alpha is None else float(focal_alpha)
        self.init_model()

    def build_model(self) -> nn.Module:
        return DefectMapNetwork(self.pretrained, self.decoder_width, self.width, self.kernels, self.depths)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "width": self.width, "kernels": list(self.kernels), "depths": list(self.depths),
                "decoder_width": self.decoder_width, "pretrained": self.pretrained, "lambdas": list(self.lambdas),
                "focal_gamma": self.focal_gamma, "focal_alpha": self.focal_alpha}

    def make_optimizer(self, parameters) -> torch.optim.Optimizer:
        return torch.optim.Adam(parameters, lr=self.lr)

    def lr_factor(self, step: int) -> float:
        """× 0.1 at 4/7 and again at 6/7 of the steps (the paper's epochs 400 and 600 of 700)."""
        return 0.1 ** sum(step >= int(self.steps * m) for m in (4 / 7, 6 / 7))

    def before_step(self, model: nn.Module, step: int, steps_per_round: int) -> None:
        if step % steps_per_round == 0:  # a new training round starts
            model.copy_encoder()

    def training_loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        image, mask, source = batch
        h, w = image.shape[-2:]
        rec, logits = model(self.pad(image))
        rec, logits = rec[..., :h, :w].float(), logits[..., :h, :w]
        l1, l2, l3 = self.lambdas
        vision = l1 * ssim_loss(rec, source) + F.mse_loss(rec, source)
        extractor = getattr(model, "module", model).feature_extractor  # under DDP the network is model.module
        deep = F.l1_loss(extractor(self.pad(rec)).float(), extractor(self.pad(source)).float())
        return l2 * vision + l3 * deep + focal_loss(logits, mask, gamma=self.focal_gamma, alpha=self.focal_alpha)

    def anomaly_maps(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(model(images)[1].float())[:, 0]
