"""LPIPS models with ImageNet backbones loaded from the torch hub cache, and a clear error without them.

The ``lpips`` package ships its calibrated linear layers (``lpips/weights/v0.1/<net>.pth``), but its
trunk (AlexNet, VGG16 or SqueezeNet 1.1) is torchvision's ImageNet checkpoint, which torchvision
downloads into ``$TORCH_HOME/hub/checkpoints/`` the first time it is needed. Without network access
that download fails deep inside torchvision with an opaque URL error; here the file is looked up
*before* anything is constructed and :class:`MissingWeightsError` names the file and the folder.

Reference: Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
CVPR 2018 (LPIPS).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from detect.errors import DetectError, MissingWeightsError, WeightsFileError
from detect.runtime import choose_device

from detect.quality.names import LPIPS_NETS, LpipsNet  # noqa: F401  (their home before names.py)

#: torchvision checkpoint URL of each LPIPS trunk; the hub cache stores it under the URL's basename
BACKBONE_URLS: dict[str, str] = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
}

# lpips.pretrained_networks cuts torchvision's ``features`` into slices at these indices
# (slice k holds features[_SLICES[k-1]:_SLICES[k]]), keeping the original child names.
_SLICES: dict[str, tuple[int, ...]] = {
    "alex": (0, 2, 5, 8, 10, 12),
    "vgg": (0, 4, 9, 16, 23, 30),
    "squeeze": (0, 2, 5, 8, 10, 11, 12, 13),
}


def hub_checkpoint_dir() -> Path:
    """Folder where torch hub caches checkpoints: ``$TORCH_HOME/hub/checkpoints`` (read at call time)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def require_hub_checkpoint(url: str, what: str) -> Path:
    """Return the cached checkpoint path for ``url``, or raise :class:`MissingWeightsError`.

    Args:
        url: the download URL torchvision (or another standard loader) uses for the file.
        what: words for the network, used in the message ("AlexNet ImageNet weights for LPIPS").
    """
    path = hub_checkpoint_dir() / os.path.basename(url)
    if not path.is_file():
        raise MissingWeightsError(
            f"{what} are missing: expected the file {path.name} at {path}. This machine cannot "
            f"download it; fetch it elsewhere from {url} and copy it to {path.parent}/ "
            f"(or set TORCH_HOME to a folder whose hub/checkpoints/ holds it)."
        )
    return path


def backbone_path(net: LpipsNet) -> Path:
    """Path of the torchvision checkpoint for LPIPS trunk ``net``; raises MissingWeightsError."""
    _check_net(net)
    names = {"alex": "AlexNet", "vgg": "VGG16", "squeeze": "SqueezeNet 1.1"}
    return require_hub_checkpoint(BACKBONE_URLS[net], f"{names[net]} ImageNet weights for LPIPS")


def load_lpips(
    net: LpipsNet = "alex",
    *,
    device: str | torch.device | None = None,
    random_backbone: bool = False,
) -> torch.nn.Module:
    """Build an LPIPS v0.1 model in eval mode on ``device``.

    Args:
        net: trunk network, ``"alex"`` (as in SYNAGEN table 1), ``"vgg"`` or ``"squeeze"``.
        device: torch device; ``None`` picks CUDA when available, else CPU.
        random_backbone: use a randomly initialised trunk instead of the ImageNet checkpoint.
            Only for speed measurements: the scores are then *not* LPIPS.

    Raises:
        MissingWeightsError: the trunk checkpoint is not in the torch hub cache.
        WeightsFileError: the checkpoint does not match the network.
    """
    import lpips  # heavy import, only when a model is built

    _check_net(net)
    path = None if random_backbone else backbone_path(net)
    with warnings.catch_warnings():
        # lpips passes torchvision's deprecated ``pretrained=`` flag; harmless with pnet_rand=True
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(0)  # a random trunk (benchmark only) is then the same on every run
        model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    if path is not None:
        _load_trunk(model.net, net, path)
    model.eval().requires_grad_(False)
    return model.to(choose_device(device))


def to_lpips_batch(images: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Stack float32 HxWx3 images in [0, 1] (all the same size) into an (N, 3, H, W) tensor in [-1, 1]."""
    batch = np.stack([np.asarray(im, dtype=np.float32) for im in images])
    tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(device)
    return tensor * 2.0 - 1.0


def _load_trunk(trunk: torch.nn.Module, net: str, path: Path) -> None:
    """Copy torchvision ``features.<i>.*`` parameters into lpips' slices (``slice<k>.<i>.*``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise WeightsFileError(f"cannot read {path} as a torch checkpoint: {exc}") from exc
    bounds = _SLICES[net]
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith("features."):
            continue  # classifier weights are not part of the LPIPS trunk
        index = int(key.split(".")[1])
        k = next(s for s in range(1, len(bounds)) if bounds[s - 1] <= index < bounds[s]) if index < bounds[-1] else None
        if k is not None:
            mapped[f"slice{k}.{key[len('features.'):]}"] = value
    try:
        trunk.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise WeightsFileError(
            f"{path} does not hold torchvision {net} ImageNet weights (state dict mismatch): {exc}"
        ) from exc


def _check_net(net: str) -> None:
    if net not in LPIPS_NETS:
        raise DetectError(f"unknown LPIPS network {net!r}; choose one of {', '.join(LPIPS_NETS)}")
