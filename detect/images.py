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
# pil_to_array is re-exported: detect's readers of dataset cells take it from here
from synth.image import IMAGE_SUFFIXES, as_float, load_image, pil_to_array  # noqa: F401

from detect.errors import InvalidImagesError


def to_float_image(image: Any, what: str = "image") -> np.ndarray:
    """One image as float32 ``(H, W, C)`` in [0, 1] with C = 1 (gray) or 3 (colour).

    ``image``: numpy array (uint8, uint16, bool or float in [0, 1]; ``(H, W)``, ``(H, W, 1..4)``)
    or a PIL image, converted by the project's one rule (``synth.image.as_float``). Alpha channels
    are dropped; images under 8x8 pixels are refused (detectors need a receptive field).
    """
    if not isinstance(image, (np.ndarray, Image.Image)):
        raise InvalidImagesError(f"{what}: expected a numpy array or PIL image, got {type(image).__name__}")
    try:
        out = as_float(image, what=what)
    except SynthError as exc:
        raise InvalidImagesError(str(exc)) from None
    if out.shape[0] < 8 or out.shape[1] < 8:
        raise InvalidImagesError(f"{what}: {out.shape[1]}x{out.shape[0]} pixels is too small (need 8x8)")
    return out


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
    # not only regular files: a named pipe or a device named like an image is refused by
    # load_image with a message, never skipped silently (nor read: it would block or never end)
    paths = sorted(p for p in root.rglob("*") if not p.is_dir() and p.suffix.lower() in IMAGE_SUFFIXES)
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
