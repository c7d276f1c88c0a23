"""Images at the edges: any dtype and channel layout in, float32 in [0, 1] inside, the same layout out.

Inside ``synth`` every image is ``float32`` of shape ``(H, W, C)`` with ``C`` colour channels (1 or 3)
and values in [0, 1]. Alpha is split off on the way in and put back untouched on the way out.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import write_atomic
from .errors import InvalidImageError
from .png import DEFAULT_LEVEL as DEFAULT_PNG_LEVEL

#: file suffixes read as images (compared in lower case), everywhere in the project
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: Largest image (in pixels) that ``load_image`` accepts; a guard against decompression bombs.
MAX_PIXELS = 100_000_000

_SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


@dataclass(frozen=True)
class ImageLayout:
    """How an image was stored, so that ``from_float`` can give it back in the same form."""

    dtype: str  # "uint8", "uint16", "float32", "float64"
    ndim: int  # 2 or 3
    channels: int  # total channels including alpha (1, 2, 3 or 4)

    @property
    def colour_channels(self) -> int:
        return 1 if self.channels in (1, 2) else 3

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def quantum(self) -> float:
        """Smallest representable step in [0, 1] units (0 for floats)."""
        scale = _SCALES.get(np.dtype(self.dtype))
        return 1.0 / scale if scale else 0.0


def layout_of(image: np.ndarray) -> ImageLayout:
    """Check an image array and describe its layout; raise ``InvalidImageError`` when unusable."""
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise InvalidImageError(
            f"image must be (H, W) or (H, W, C), got shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidImageError(f"image is empty (shape {image.shape})")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels not in (1, 2, 3, 4):
        raise InvalidImageError(
            f"image has {channels} channels; supported are 1 (gray), 2 (gray+alpha), 3 (RGB), 4 (RGBA)"
        )
    dtype = np.dtype(image.dtype)
    if dtype not in _SCALES and dtype.kind != "f":
        raise InvalidImageError(
            f"image dtype {dtype} is not supported; use uint8, uint16 or float in [0, 1]"
        )
    if dtype.kind == "f":
        check_float_values(bool(np.all(np.isfinite(image))), float(image.min()), float(image.max()))
    return ImageLayout(dtype=dtype.name, ndim=image.ndim, channels=channels)


def check_float_values(finite: bool, lo: float, hi: float) -> None:
    """Raise ``InvalidImageError`` unless a float image's values are all finite (``finite``) and lie
    in [0, 1] (``lo``, ``hi``: its minimum and maximum). Shared by the numpy and torch checks."""
    if not finite:
        raise InvalidImageError("float image contains NaN or infinite values")
    if lo < 0.0 or hi > 1.0:
        raise InvalidImageError(
            f"float image values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]; "
            "divide by the maximum of your data range first"
        )


def to_float(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, ImageLayout]:
    """Split an image into float32 colour ``(H, W, C)`` in [0, 1], its alpha (or ``None``) and layout."""
    layout = layout_of(image)
    arr = image if image.ndim == 3 else image[:, :, None]
    scale = _SCALES.get(np.dtype(layout.dtype), 1.0)
    colour_count = layout.colour_channels
    if scale != 1.0:
        colour = np.multiply(arr[:, :, :colour_count], np.float32(1.0 / scale), dtype=np.float32)
    else:
        colour = arr[:, :, :colour_count].astype(np.float32)
    alpha = arr[:, :, colour_count:].copy() if layout.has_alpha else None
    return np.ascontiguousarray(colour), alpha, layout


def as_float(image: "np.ndarray | Image.Image", *, channels: int | None = None, what: str = "image") -> np.ndarray:
    """Any image the project accepts as float32 ``(H, W, C)`` in [0, 1], alpha dropped: the one
    conversion at the edges of ``detect`` and the app (``synth`` itself keeps alpha: ``to_float``).

    ``image``: a numpy array -- uint8, uint16, bool, or float in [0, 1] (outside is an error, not
    clipped: it means the data was scaled wrongly); ``(H, W)``, ``(H, W, 1)``, gray+alpha, RGB or
    RGBA -- or a PIL image (decoded as ``decode_image`` does, EXIF orientation applied).
    ``channels``: ``None`` keeps gray as 1 channel and colour as 3; ``3`` repeats gray into RGB;
    ``1`` makes colour gray (Rec. 601 luma). Raises ``InvalidImageError`` starting with ``what``.
    """
    if isinstance(image, Image.Image):
        image = pil_to_array(image, what)
    if isinstance(image, np.ndarray) and image.dtype == np.bool_:
        image = image.astype(np.float32)
    try:
        colour, _, _ = to_float(image)
    except InvalidImageError as exc:
        raise InvalidImageError(f"{what}: {exc}") from None
    if channels == 3 and colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    elif channels == 1 and colour.shape[2] == 3:
        colour = luminance(colour)[:, :, None]
    return np.ascontiguousarray(colour, dtype=np.float32)


def from_float(colour: np.ndarray, alpha: np.ndarray | None, layout: ImageLayout) -> np.ndarray:
    """Inverse of ``to_float``: round to the original dtype, re-attach alpha, restore the shape."""
    colour = np.clip(colour, 0.0, 1.0)
    dtype = np.dtype(layout.dtype)
    scale = _SCALES.get(dtype)
    if scale is not None:
        out = np.rint(colour * np.float32(scale)).astype(dtype)
    else:
        out = colour.astype(dtype)
    if alpha is not None:
        out = np.concatenate([out, alpha.astype(dtype)], axis=2)
    if layout.ndim == 2:
        out = out[:, :, 0]
    return out


def quantize(colour: np.ndarray, quantum: float) -> np.ndarray:
    """Values that ``from_float`` would store, back in [0, 1] units (identity for float images)."""
    colour = np.clip(colour, 0.0, 1.0)
    if quantum == 0.0:
        return colour
    inv = np.float32(1.0 / quantum)
    return np.rint(colour * inv) * np.float32(quantum)


def luminance(colour: np.ndarray) -> np.ndarray:
    """Rec. 601 luma ``(H, W)`` of a float ``(H, W, C)`` image (the channel itself for gray)."""
    if colour.shape[2] == 1:
        return colour[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(colour, dtype=np.float32), cv2.COLOR_RGB2GRAY)


def channel_max(values: np.ndarray) -> np.ndarray:
    """``values.max(axis=2)`` for ``(H, W, C)``, several times faster for C <= 4."""
    out = values[:, :, 0]
    for c in range(1, values.shape[2]):
        out = np.maximum(out, values[:, :, c])
    return out


# --------------------------------------------------------------------------------------------
# files


def _png_header(data: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG, or None when the bytes are not a PNG."""
    if len(data) >= 26 and data[:8] == b"\x89PNG\r\n\x1a\n":
        return data[24], data[25]
    return None


#: the EXIF/TIFF tag that says how a camera held the sensor (1 = as stored, 2..8 = flips/turns)
EXIF_ORIENTATION_TAG = 0x0112


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8) of an opened PIL image; 1 when absent or unreadable."""
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except (ValueError, TypeError, OSError, SyntaxError, struct.error):  # a damaged EXIF block
        return 1
    return value if 1 <= value <= 8 else 1


def upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn/flip a decoded ``(H, W[, C])`` array (any dtype) so it shows as its EXIF ``orientation`` says.

    This is the one place the project applies orientation: ``decode_image``/``load_image`` call it,
    and code holding pixels decoded elsewhere (e.g. by Pillow) passes ``exif_orientation(img)``.
    Same result as ``PIL.ImageOps.exif_transpose``; 1 returns ``array`` unchanged.
    """
    if orientation == 2:
        out = array[:, ::-1]
    elif orientation == 3:
        out = array[::-1, ::-1]
    elif orientation == 4:
        out = array[::-1]
    elif orientation == 5:
        out = np.swapaxes(array, 0, 1)
    elif orientation == 6:
        out = np.rot90(array, -1)
    elif orientation == 7:
        out = np.rot90(array, -1)[::-1]
    elif orientation == 8:
        out = np.rot90(array, 1)
    else:
        return array
    return np.ascontiguousarray(out)


def decode_image(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to a numpy array: gray ``(H, W)``, gray+alpha, RGB or RGBA; uint8/uint16/float32.

    Palette images become RGB (RGBA when they carry transparency), CMYK and other colour spaces
    become RGB, 16-bit files stay 16-bit, and the EXIF orientation is applied (``upright``), so a
    phone photo stored sideways comes out as it is shown. Raises ``InvalidImageError`` naming
    ``name`` for corrupt data, unsupported modes and images larger than ``max_pixels``.
    """
    if not data:
        raise InvalidImageError(f"{name}: file is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise InvalidImageError(
                    f"{name}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
                    f"{max_pixels:,} pixels (decompression-bomb guard); downscale it first"
                )
            if width == 0 or height == 0:
                raise InvalidImageError(f"{name}: image has zero size ({width}x{height})")
            channels = _wide_colour_channels(img, data)
            if channels is not None:
                return upright(_decode_wide_colour(data, name, channels), exif_orientation(img))
            img.load()
            return pil_to_array(img, name)
    except InvalidImageError:
        raise
    except UnidentifiedImageError:  # Pillow's message names its BytesIO object, which says nothing to a user
        raise InvalidImageError(f"{name}: not a readable image (not a format Pillow knows, e.g. PNG, JPEG, "
                                "TIFF, BMP or WebP)") from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise InvalidImageError(f"{name}: not a readable image ({exc})") from None
    except Image.DecompressionBombError as exc:
        raise InvalidImageError(f"{name}: {exc}") from None


#: PNG colour type -> channels, for the 16-bit types with more than one channel
_PNG_WIDE_CHANNELS = {2: 3, 4: 2, 6: 4}


def _wide_colour_channels(img: Image.Image, data: bytes) -> int | None:
    """Channels of a 16-bit image with colour or alpha (which Pillow would cut to 8 bits), else None.

    Pillow keeps 16 bits for one-channel images only; gray+alpha, RGB and RGBA PNGs and RGB(A)
    TIFFs of 16 bits per sample are decoded by OpenCV instead, which keeps every bit.
    """
    header = _png_header(data)
    if header is not None:
        return _PNG_WIDE_CHANNELS.get(header[1]) if header[0] == 16 else None
    if img.format == "TIFF":
        bits = img.tag_v2.get(258)  # BitsPerSample, one value per channel
        bits = tuple(bits) if isinstance(bits, (tuple, list)) else (bits,)
        if len(bits) in (3, 4) and set(bits) == {16}:
            return len(bits)
    return None


def _decode_wide_colour(data: bytes, name: str, channels: int) -> np.ndarray:
    """A 16-bit gray+alpha, RGB or RGBA file as ``(H, W, channels)`` uint16 in RGB(A) order."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        raise InvalidImageError(f"{name}: corrupt 16-bit image")
    if channels == 2 and arr.shape[2] == 4:  # OpenCV spreads gray+alpha over BGRA: gray in each colour
        return np.ascontiguousarray(arr[:, :, [0, 3]])
    if channels in (3, 4) and arr.shape[2] == channels:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if channels == 4 else cv2.COLOR_BGR2RGB)
    raise InvalidImageError(f"{name}: 16-bit image decoded with an unexpected layout {arr.shape}")


def pil_to_array(img: Image.Image, name: str = "image") -> np.ndarray:
    """A PIL image as the project holds images: the layouts and dtypes of ``decode_image``, upright."""
    return upright(_pil_to_array(img, name), exif_orientation(img))


def _pil_to_array(img: Image.Image, name: str) -> np.ndarray:
    mode = img.mode
    if mode == "1":
        img = img.convert("L")
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        img = img.convert("RGB")
    elif mode in ("La", "RGBa"):
        img = img.convert("LA" if mode == "La" else "RGBA")
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(img, dtype=np.uint8).copy()
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)
    if mode == "I":
        arr = np.asarray(img)
        if arr.min() < 0 or arr.max() > 65535:
            raise InvalidImageError(
                f"{name}: 32-bit integer image with values outside 0..65535 is not supported"
            )
        return arr.astype(np.uint16)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
            raise InvalidImageError(f"{name}: float image must hold finite values in [0, 1]")
        return arr.copy()
    raise InvalidImageError(f"{name}: unsupported image mode {mode!r}")


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file with ``decode_image`` (same layouts, same errors, naming the file).

    Only a regular file of at most ``MAX_FILE_BYTES`` is read (``read_file``)."""
    return decode_image(read_file(path), name=str(path), max_pixels=max_pixels)


#: Largest image file read (bytes): an uncompressed 100 MP image of 16-bit RGBA is 800 MB.
MAX_FILE_BYTES = 1 << 30

_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


@contextlib.contextmanager
def open_file(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> Iterator[BinaryIO]:
    """``path`` opened for reading (binary) when it is a regular file of at most ``max_bytes``.

    A symlink is followed to what it names. A named pipe, a device (``/dev/zero``), a socket or a
    folder raises ``InvalidImageError`` naming the path instead of blocking or reading without end,
    as does a file above ``max_bytes``. Read headers through it (``PIL.Image.open`` reads lazily).
    """
    path = Path(path)
    try:  # O_NONBLOCK: opening a named pipe must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InvalidImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a regular file")
            raise InvalidImageError(f"{path}: is {kind}; only regular files are read")
        if info.st_size > max_bytes:
            raise InvalidImageError(f"{path}: file is {info.st_size:,} bytes, above the limit of {max_bytes:,} bytes")
        yield file


def read_file(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (``open_file``'s checks and errors)."""
    with open_file(path, max_bytes) as file:
        data = file.read(max_bytes + 1)  # the file may have grown since it was checked
    if len(data) > max_bytes:
        raise InvalidImageError(f"{path}: file grew above the limit of {max_bytes:,} bytes while it was read")
    return data


def encode_png(image: np.ndarray, compression: int = DEFAULT_PNG_LEVEL, base: "object | None" = None) -> bytes:
    """Encode gray/gray+alpha/RGB/RGBA uint8 or uint16 (floats become uint16) as PNG bytes.

    ``compression`` is the deflate level 0-9 (the default, 2, is fast). ``base`` is an optional
    ``synth.png.Base`` of a same-shaped reference image: unchanged row bands are copied from it
    (much faster for a small anomaly in a large image); the bytes do not depend on it.
    """
    from . import png

    arr = image
    if arr.dtype.kind == "f":
        arr = np.rint(np.clip(arr, 0, 1) * 65535).astype(np.uint16)
    if arr.dtype not in (np.uint8, np.uint16):
        raise InvalidImageError(f"cannot write dtype {arr.dtype} as PNG")
    try:
        return png.encode(arr, int(compression), base)
    except ValueError as exc:
        raise InvalidImageError(str(exc)) from None


def save_png(path: str | os.PathLike, image: np.ndarray, compression: int = DEFAULT_PNG_LEVEL) -> None:
    write_atomic(path, encode_png(image, compression))
