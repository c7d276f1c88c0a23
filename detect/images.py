"""Images at the edge of ``detect``: user arrays in, float32 ``(H, W, C)`` in [0, 1] inside.

Detectors accept what users have: ``uint8``/``uint16`` arrays, floats in [0, 1], PIL images, gray
``(H, W)`` / ``(H, W, 1)`` or RGB / RGBA ``(H, W, 3|4)``. Alpha is dropped (detectors look at colour
only). A detector remembers whether it was fitted on gray or colour images and refuses the other
kind, because a gray image fed to a colour model is a silent accuracy bug, not a feature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from synth.errors import SynthError
from synth.image import exif_orientation, load_image, upright
from synth.layout import IMAGE_SUFFIXES

from .errors import InvalidImagesError


def pil_to_array(image: Image.Image) -> np.ndarray:
    """A PIL image as shown: uint8 gray/RGB(A), uint16 for 16-bit modes, other modes as RGB; the
    EXIF orientation applied (``synth.image.upright``)."""
    if image.mode in ("L", "RGB", "RGBA", "LA"):
        array = np.asarray(image)
    elif image.mode.startswith("I"):
        array = np.asarray(image).astype(np.uint16)
    elif image.mode == "1":
        array = np.asarray(image.convert("L"))
    else:
        array = np.asarray(image.convert("RGB"))
    return upright(array, exif_orientation(image))


def to_float_image(image: Any, what: str = "image") -> np.ndarray:
    """One image as float32 ``(H, W, C)`` in [0, 1] with C = 1 (gray) or 3 (colour).

    ``image``: numpy array (uint8, uint16, bool or float in [0, 1]; ``(H, W)``, ``(H, W, 1..4)``)
    or a PIL image. Alpha channels are dropped.
    """
    if isinstance(image, Image.Image):
        image = pil_to_array(image)
    if not isinstance(image, np.ndarray):
        raise InvalidImagesError(f"{what}: expected a numpy array or PIL image, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = image[:, :, : image.shape[2] - 1]
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise InvalidImagesError(
            f"{what}: shape {image.shape} is not an image; use (H, W) gray or (H, W, 3) RGB"
        )
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise InvalidImagesError(f"{what}: {image.shape[1]}x{image.shape[0]} pixels is too small (need 8x8)")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if image.dtype == bool:
        return image.astype(np.float32)
    if image.dtype.kind == "f":
        if not np.all(np.isfinite(image)):
            raise InvalidImagesError(f"{what}: contains NaN or infinite values")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidImagesError(
                f"{what}: float values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]"
            )
        return image.astype(np.float32)
    raise InvalidImagesError(f"{what}: dtype {image.dtype} is not supported; use uint8, uint16 or float in [0, 1]")


def to_float_images(images: Iterable[Any], what: str = "images") -> list[np.ndarray]:
    """Convert a sequence of images; all must have the same number of colour channels.

    Raises ``InvalidImagesError`` for an empty sequence or a mix of gray and colour images.
    """
    out = [to_float_image(img, f"{what}[{i}]") for i, img in enumerate(images)]
    if not out:
        raise InvalidImagesError(f"no {what} given; pass at least one image")
    channels = {img.shape[2] for img in out}
    if len(channels) > 1:
        raise InvalidImagesError(
            f"{what} mix gray and RGB images; convert them all to one kind first "
            "(e.g. PIL Image.convert('RGB'))"
        )
    return out


def same_size(images: Sequence[np.ndarray], what: str = "images") -> tuple[int, int]:
    """The common ``(H, W)`` of ``images``; ``InvalidImagesError`` naming the first mismatch."""
    height, width = images[0].shape[:2]
    for i, img in enumerate(images):
        if img.shape[:2] != (height, width):
            raise InvalidImagesError(
                f"{what}[{i}] is {img.shape[1]}x{img.shape[0]} but {what}[0] is {width}x{height}; "
                "resize or crop them to one size, or give the detector an image_size to resize to"
            )
    return height, width


def read_image_folder(folder: str | Path) -> tuple[list[np.ndarray], list[str]]:
    """All images under ``folder`` (recursive, sorted by relative path) as arrays, with their paths.

    Returns ``(images, relative_paths)``; images keep their stored dtype (uint8 / uint16).
    """
    root = Path(folder)
    if not root.is_dir():
        raise InvalidImagesError(f"{root} is not a folder of images")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InvalidImagesError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}; "
            "point --fit at a folder of anomaly-free images"
        )
    images = []
    for p in paths:
        try:  # the project's one file loader: same layouts, EXIF orientation and size guard
            images.append(load_image(p))
        except SynthError as exc:
            raise InvalidImagesError(str(exc)) from None
    return images, [str(p.relative_to(root)) for p in paths]


def as_colour(image: np.ndarray) -> np.ndarray:
    """``image`` with three colour channels, same dtype: gray repeated, alpha dropped.

    For comparing images of mixed kinds with one detector (which refuses gray after colour).
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] in (1, 2):
        return np.repeat(image[:, :, :1], 3, axis=2)
    return image[:, :, :3]
