"""Working-memory budget: estimate what an image will need from its header, refuse it before decoding.

A 10000 x 10000 PNG is a valid ~100 KB file, but making anomalies in it holds several float32
copies of it, and SYNAGEN's size search may grow its shape to 40000 pixels a side (at least 11.3 GB
in all); decoding it first and failing late costs minutes and can take the machine down.
``check_image_memory`` reads only the header and raises ``ImageTooLargeError`` naming the method,
the estimate (``estimated_bytes``, per method), the budget and how to raise it.

The budget is per worker process: ``--memory-budget`` / ``memory_budget=``, else the environment
variable ``ANOMALYFORGE_MEMORY_BUDGET``, else half of this machine's physical memory shared by the
workers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image, UnidentifiedImageError

from .errors import InvalidImageError, InvalidParameterError
from .image import open_file

ENV_VAR = "ANOMALYFORGE_MEMORY_BUDGET"
#: working bytes per image pixel of each method: a fixed part (masks, labels, noise fields) and a
#: part per colour channel (float32 source, output and blend copies): the growth of the folder
#: protocol's peak RSS from 1024² to 2048² (``benchmarks/memory.py``), plus a quarter, rounded up
METHOD_BYTES: dict[str, tuple[int, int]] = {
    "synagen": (32, 32),
    "nsa": (20, 20),
    "cutpaste": (8, 16),
    "cutpaste_scar": (16, 16),
    "cutout": (12, 16),
    "fpi": (12, 24),
    "draem": (16, 36),
    "foreground_perlin": (12, 48),
    "fractal": (12, 40),
}
#: a method not in the table (e.g. one registered by a user) is budgeted like the most demanding
_UNKNOWN_METHOD = max(METHOD_BYTES.values(), key=sum)
#: SYNAGEN's size search may resize its shape to a square of ``MAX_SHAPE_SPAN`` x the image's
#: longer side: a float32 resize and its bool mask, 5 bytes per pixel of that square (at 10000²
#: a 40000 x 23727 shape alone takes 4.7 GB)
SHAPE_BYTES_PER_PIXEL = 5

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40}


class ImageTooLargeError(InvalidImageError):
    """The image would need more working memory than the budget allows."""


def parse_size(text: str) -> int:
    """Bytes of a size written like ``8GB``, ``512m``, ``2.5G`` or ``1000000`` (powers of 1024)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise InvalidParameterError(f"cannot read memory size {text!r}; write e.g. 8GB, 512MB or 2.5G")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise InvalidParameterError(f"memory size must be > 0, got {text!r}")
    return size


def format_size(size: int) -> str:
    return f"{size / (1 << 30):.1f} GB" if size >= 1 << 30 else f"{size / (1 << 20):.0f} MB"


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not available on this platform
        return None


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes one worker may use for one image, and where that number came from (for messages)."""

    bytes: int
    source: str

    @classmethod
    def resolve(cls, given: int | str | None = None, workers: int = 1) -> "MemoryBudget":
        """The budget from an explicit value, else ``ANOMALYFORGE_MEMORY_BUDGET``, else the machine."""
        if given is not None:
            size = given if isinstance(given, int) else parse_size(given)
            return cls(size, "set by --memory-budget")
        if os.environ.get(ENV_VAR):
            return cls(parse_size(os.environ[ENV_VAR]), f"set by {ENV_VAR}")
        total = physical_memory()
        if total is None:
            return cls(8 << 30, "default")
        share = total // 2 // max(1, workers)
        return cls(share, f"half of this machine's {format_size(total)} over {workers} worker(s)")


def estimated_bytes(width: int, height: int, colour_channels: int, methods: Sequence[str] = ("synagen",)) -> int:
    """Working memory (bytes) to make anomalies with ``methods`` (the most demanding counts) in a
    ``width x height`` image with 1 or 3 colour channels."""
    per_pixel = max(fixed + per_channel * colour_channels
                    for fixed, per_channel in (METHOD_BYTES.get(m, _UNKNOWN_METHOD) for m in methods))
    need = width * height * per_pixel
    if "synagen" in methods:
        from .methods.synagen.scaling import MAX_SHAPE_SPAN

        need += SHAPE_BYTES_PER_PIXEL * int(MAX_SHAPE_SPAN * max(width, height)) ** 2
    return need


def check_image_memory(path: str | os.PathLike, budget: MemoryBudget, methods: Sequence[str] = ("synagen",)) -> None:
    """Raise ``ImageTooLargeError`` when making anomalies with ``methods`` in the image at ``path``
    would need more than ``budget`` (``estimated_bytes``).

    Reads only the header (size and mode), from a regular file only (``synth.image.open_file``: a
    named pipe or a device is an ``InvalidImageError``). Undecodable files pass: the decoder
    reports them.
    """
    path = Path(path)
    try:
        with open_file(path) as file, Image.open(file) as img:
            width, height = img.size
            colour = 1 if img.mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F") else 3
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return
    need = estimated_bytes(width, height, colour, methods)
    if need > budget.bytes:
        raise ImageTooLargeError(
            f"{path}: {' / '.join(methods)} in a {width}x{height} image needs about {format_size(need)} of "
            "working memory, above "
            f"the budget of {format_size(budget.bytes)} per worker ({budget.source}); raise it with "
            f"--memory-budget or {ENV_VAR} (e.g. {ENV_VAR}={-(-need // (1 << 30))}GB), use fewer "
            "--workers, or downscale the image"
        )
