"""The one rule for choosing where tensors run: an explicit device as given, else CUDA when present.

Every part of ``detect`` (detectors, LPIPS and feature models, the accelerator of the evaluate and
train commands) and the app ask ``choose_device``, so "use the GPU when there is one" is decided
in one place.
"""

from __future__ import annotations

import torch


def choose_device(device: str | torch.device | None = None, *, cpu: bool = False) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` means the first CUDA GPU when present (and not
    ``cpu``), else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
