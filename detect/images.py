"""Images at the edge of ``detect``: user arrays in, float32 ``(H, W, C)`` in [0, 1] inside.

Detectors accept what users have: ``uint8``/``uint16`` arrays, floats in [0, 1], PIL images, gray
``(H, W)`` / ``(H, W, 1)`` or RGB / RGBA ``(H, W, 3|4)``, mixed freely. One conversion rule:

* 8- and 16-bit values are scaled to [0, 1] (65535 is white as 255 is); alpha is dropped
  (detectors look at colour only);
* a detector works on gray when every fit image is gray, else on RGB; each image is brought to
  that layout: gray repeated into three channels, colour to Rec. 601 luma on a gray detector.

Repeating gray changes nothing a pretrained backbone sees (it repeats gray itself), so a folder
mixing gray and colour photos is evaluated as the colour images it would be. What was converted
is said once, as an ``ImageConversionWarning`` (the command line prints it as one note).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from synth.errors import SynthError
# pil_to_array is re-exported: detect's readers of dataset cells take it from here
from synth.image import IMAGE_SUFFIXES, as_float, load_image, luminance, pil_to_array  # noqa: F401

from detect.errors import ImageConversionWarning, InvalidImagesError
from detect.runtime import count_conversions


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


def to_float_images(images: Iterable[Any], what: str = "images", channels: int | None = None) -> list[np.ndarray]:
    """Convert a sequence of images to one channel layout (the module's rule).

    ``channels``: 1 or 3 (a fitted detector's), or ``None``: gray when every image is gray, else
    RGB. Raises ``InvalidImagesError`` for an empty sequence; warns once what it converted.
    """
    out = [to_float_image(img, f"{what}[{i}]") for i, img in enumerate(images)]
    if not out:
        raise InvalidImagesError(f"no {what} given; pass at least one image")
    if channels is None:
        channels = 3 if any(img.shape[2] == 3 for img in out) else 1
    return convert_channels(out, channels, what)


def channels_of(image: Any) -> int:
    """1 for a gray image (with or without alpha), else 3: an array's shape, a PIL image decoded."""
    if isinstance(image, Image.Image):
        image = pil_to_array(image)
    shape = np.shape(image)
    return 3 if len(shape) == 3 and shape[2] >= 3 else 1


def convert_channels(images: list[np.ndarray], channels: int, what: str) -> list[np.ndarray]:
    """Float images ``(H, W, 1|3)`` brought to ``channels``: gray repeated, colour to luma; one
    ``ImageConversionWarning`` says how many of ``what`` were converted."""
    converted = [i for i, img in enumerate(images) if img.shape[2] != channels]
    if not converted:
        warn_converted(0, len(images), channels, what)
        return images
    out = list(images)
    for i in converted:
        out[i] = np.repeat(out[i], 3, axis=2) if channels == 3 else luminance(out[i])[:, :, None]
    warn_converted(len(converted), len(images), channels, what)
    return out


def warn_converted(n: int, total: int, channels: int, what: str) -> None:
    """The one ``ImageConversionWarning`` of a call: ``n`` of ``total`` images brought to ``channels``;
    inside ``detect.runtime.counted_conversions`` (a command) the call's images are counted instead
    (converted or not), and the command says each set's conversion once."""
    if not count_conversions(what, channels, n, total) and n:
        warnings.warn(ImageConversionWarning(what, n, total, channels), stacklevel=3)


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

    For tiling and showing images of mixed kinds side by side as colour.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] in (1, 2):
        return np.repeat(image[:, :, :1], 3, axis=2)
    return image[:, :, :3]
