"""Batches at the edge of the torch renderer: ``(B, C, H, W)`` tensors of any supported layout to
float32 colour in [0, 1] and back, by the same rules as ``synth.image`` (scale by 255 or 65535,
round half to even, alpha passed through untouched).
"""

from __future__ import annotations

import torch

from ..change import is_changed
from ..errors import InvalidImageError
from ..image import ImageLayout, check_float_values

#: torch dtype -> the numpy dtype name ``ImageLayout`` speaks of (one layout rule for both paths)
_DTYPES = {
    torch.uint8: "uint8", torch.uint16: "uint16", torch.float16: "float16", torch.bfloat16: "float32",
    torch.float32: "float32", torch.float64: "float64",
}
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _scale(layout: ImageLayout) -> float:
    """Stored units per 1.0 (255, 65535; 1 for floats)."""
    return 1.0 / layout.quantum if layout.quantum else 1.0


def batch_layout(images: torch.Tensor) -> ImageLayout:
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
    if images.dtype not in _DTYPES:
        raise InvalidImageError(f"dtype {images.dtype} is not supported; use uint8, uint16 or float in [0, 1]")
    if images.dtype in _FLOATS:
        check_float_values(bool(torch.isfinite(images).all()), float(images.min()), float(images.max()))
    return ImageLayout(dtype=_DTYPES[images.dtype], ndim=3, channels=int(channels))


def split(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, ImageLayout]:
    """float32 colour ``(B, Cc, H, W)`` in [0, 1], the alpha channel (or ``None``) and the layout."""
    layout = batch_layout(images)
    cc = layout.colour_channels
    alpha = images[:, cc:] if layout.has_alpha else None
    repeated = images.shape[0] > 1 and images.stride(0) == 0
    # one image repeated by ``expand`` (the protocol's batches) is converted once and stays a view
    colour = (images[:1] if repeated else images)[:, :cc].to(torch.float32)
    if layout.quantum:
        colour = colour * (1.0 / _scale(layout))
    colour = colour.contiguous()
    return (colour.expand(images.shape[0], -1, -1, -1) if repeated else colour), alpha, layout


def channels_last(colour: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` as a contiguous ``(B, H, W, C)`` (the numpy layout the renderers index);
    a repeated image (batch stride 0) is permuted once and stays repeated."""
    if colour.shape[0] > 1 and colour.stride(0) == 0:
        return colour[:1].permute(0, 2, 3, 1).contiguous().expand(colour.shape[0], -1, -1, -1)
    return colour.permute(0, 2, 3, 1).contiguous()


def join(colour: torch.Tensor, alpha: torch.Tensor, layout: ImageLayout, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of ``split``: round to the stored ``dtype`` and re-attach ``alpha`` (or ``None``)."""
    colour = colour.clamp(0.0, 1.0)
    if layout.quantum:
        out = torch.round(colour * _scale(layout)).to(torch.int32).to(dtype)
    else:
        out = colour.to(dtype)
    if alpha is not None:
        out = torch.cat([out, alpha], dim=1)
    return out


def quantize_batch(colour: torch.Tensor, quantum: float) -> torch.Tensor:
    """The values ``join`` would store, back in [0, 1] units (identity for float batches)."""
    colour = colour.clamp(0.0, 1.0)
    if quantum == 0.0:
        return colour
    return torch.round(colour * (1.0 / quantum)) * quantum


def changed_in_batch(source: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """bool ``(..., H, W)``: a channel (last dimension) moved by more than 1/255 (``output`` quantised)."""
    return is_changed((output - source).abs().amax(dim=-1))
