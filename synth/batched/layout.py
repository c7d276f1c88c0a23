"""Batches at the edge of the torch renderer: ``(B, C, H, W)`` tensors of any supported layout to
float32 colour in [0, 1] and back, by the same rules as ``synth.image`` (scale by 255 or 65535,
round half to even, alpha passed through untouched).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..anomaly import CHANGE_TOLERANCE
from ..errors import InvalidImageError

_SCALES = {torch.uint8: 255.0, torch.uint16: 65535.0}
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class BatchLayout:
    """How a batch was stored: dtype and total channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA)."""

    dtype: torch.dtype
    channels: int

    @property
    def colour_channels(self) -> int:
        return 1 if self.channels in (1, 2) else 3

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def scale(self) -> float:
        return _SCALES.get(self.dtype, 1.0)

    @property
    def quantum(self) -> float:
        """Smallest stored step in [0, 1] units (0 for floats)."""
        return 1.0 / self.scale if self.dtype in _SCALES else 0.0


def layout_of(images: torch.Tensor) -> BatchLayout:
    """Check a batch and describe it; raise ``InvalidImageError`` with the fix when unusable."""
    if not isinstance(images, torch.Tensor):
        raise InvalidImageError(f"expected a torch tensor (B, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise InvalidImageError(
            f"expected a batch of shape (B, C, H, W), got shape {tuple(images.shape)}; "
            "add the batch dimension with images[None] for one image"
        )
    batch, channels, height, width = images.shape
    if batch == 0 or height == 0 or width == 0:
        raise InvalidImageError(f"the batch is empty (shape {tuple(images.shape)})")
    if channels not in (1, 2, 3, 4):
        raise InvalidImageError(
            f"images have {channels} channels in dimension 1; supported are 1 (gray), 2 (gray+alpha), "
            "3 (RGB), 4 (RGBA) — channels-last batches need images.permute(0, 3, 1, 2)"
        )
    if images.dtype not in _SCALES and images.dtype not in _FLOATS:
        raise InvalidImageError(f"dtype {images.dtype} is not supported; use uint8, uint16 or float in [0, 1]")
    if images.dtype in _FLOATS:
        if not bool(torch.isfinite(images).all()):
            raise InvalidImageError("float images contain NaN or infinite values")
        lo, hi = float(images.min()), float(images.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidImageError(
                f"float image values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]; "
                "divide by the maximum of your data range first"
            )
    return BatchLayout(images.dtype, int(channels))


def split(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, BatchLayout]:
    """float32 colour ``(B, Cc, H, W)`` in [0, 1], the alpha channel (or ``None``) and the layout."""
    layout = layout_of(images)
    cc = layout.colour_channels
    colour = images[:, :cc].to(torch.float32)
    if layout.dtype in _SCALES:
        colour = colour * (1.0 / layout.scale)
    alpha = images[:, cc:] if layout.has_alpha else None
    return colour.contiguous(), alpha, layout


def join(colour: torch.Tensor, alpha: torch.Tensor | None, layout: BatchLayout) -> torch.Tensor:
    """Inverse of ``split``: round to the stored dtype and re-attach alpha."""
    colour = colour.clamp(0.0, 1.0)
    if layout.dtype in _SCALES:
        out = torch.round(colour * layout.scale).to(torch.int32).to(layout.dtype)
    else:
        out = colour.to(layout.dtype)
    if alpha is not None:
        out = torch.cat([out, alpha], dim=1)
    return out


def quantize(colour: torch.Tensor, quantum: float) -> torch.Tensor:
    """The values ``join`` would store, back in [0, 1] units (identity for float batches)."""
    colour = colour.clamp(0.0, 1.0)
    if quantum == 0.0:
        return colour
    return torch.round(colour * (1.0 / quantum)) * quantum


def changed_pixels(source: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """bool ``(..., H, W)``: a channel (last dimension) moved by more than 1/255 (``output`` quantised)."""
    return ((output - source).abs().amax(dim=-1)) > CHANGE_TOLERANCE + 1e-6
