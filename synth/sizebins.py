"""Size bins: ranges of the *fraction of image pixels an anomaly changes*.

Names carry their edges in percent of image pixels (``"0.02-0.1%"``), which is how they appear in
published datasets (the ``size_bin`` column).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidParameterError


def _fmt(percent: float) -> str:
    text = f"{percent:.6f}".rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True)
class SizeBin:
    """Half-open range ``[low, high)`` of changed-area fractions (0..1, not percent)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (0.0 < self.low < self.high <= 1.0):
            raise InvalidParameterError(
                f"size bin [{self.low}, {self.high}) is impossible: need 0 < low < high <= 1 "
                "(fractions of image pixels; write '0.5-1.5%' for percent)"
            )

    @property
    def name(self) -> str:
        return f"{_fmt(self.low * 100)}-{_fmt(self.high * 100)}%"

    def contains(self, fraction: float) -> bool:
        return self.low <= fraction < self.high

    def pixel_range(self, n_pixels: int) -> tuple[int, int]:
        """Inclusive range of changed-pixel counts that fall in this bin for an image of ``n_pixels``."""
        lo = int(-(-self.low * n_pixels // 1))  # ceil
        hi = int(-(-self.high * n_pixels // 1)) - 1  # largest count with count/n < high
        return lo, hi

    @classmethod
    def parse(cls, text: str) -> "SizeBin":
        """Parse ``"0.5-1.5%"`` (percent) or ``"0.005-0.015"`` (fractions)."""
        match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*-\s*([0-9.eE+-]+)\s*(%?)\s*", text)
        if not match:
            raise InvalidParameterError(
                f"cannot read size bin {text!r}: write it as LOW-HIGH% (e.g. '0.5-1.5%')"
            )
        try:
            low, high = float(match.group(1)), float(match.group(2))
        except ValueError as exc:
            raise InvalidParameterError(f"cannot read size bin {text!r}: {exc}") from None
        if match.group(3):
            low, high = low / 100.0, high / 100.0
        return cls(low, high)


DEFAULT_BINS: tuple[SizeBin, ...] = (
    SizeBin(0.0002, 0.001),
    SizeBin(0.001, 0.005),
    SizeBin(0.005, 0.015),
    SizeBin(0.015, 0.025),
    SizeBin(0.025, 0.15),
)


def require_bins(bins):
    """``bins`` as a tuple; the one check that a run, a method or a schema has at least one size bin."""
    bins = tuple(bins)
    if not bins:
        raise InvalidParameterError("at least one size bin is needed")
    return bins


def resolve_bin(value: "SizeBin | str | int", bins: tuple[SizeBin, ...] = DEFAULT_BINS) -> SizeBin:
    """A bin from a ``SizeBin``, its name (``"0.5-1.5%"``) or an index into ``bins``."""
    if isinstance(value, SizeBin):
        return value
    if isinstance(value, (int,)) and not isinstance(value, bool):
        if not 0 <= value < len(bins):
            raise InvalidParameterError(f"size bin index {value} out of range 0..{len(bins) - 1}")
        return bins[value]
    if isinstance(value, str):
        return SizeBin.parse(value)
    raise InvalidParameterError(f"cannot use {value!r} as a size bin")


def bin_of(fraction: float, bins: tuple[SizeBin, ...] = DEFAULT_BINS) -> SizeBin | None:
    """The bin a measured fraction falls in, or ``None`` when it is outside every bin."""
    for b in bins:
        if b.contains(fraction):
            return b
    return None
