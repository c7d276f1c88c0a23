"""Exceptions raised by ``synth``. Every one is a ``ValueError`` with a message a user can act on."""

from __future__ import annotations


class SynthError(ValueError):
    """Base class: a request that cannot be carried out as asked."""


class InvalidImageError(SynthError):
    """The image cannot be used: empty, corrupt, unsupported dtype or layout, out-of-range floats."""


class InvalidParameterError(SynthError):
    """An unknown shape/mode/method name or an impossible parameter value."""


class RegionError(SynthError):
    """The region mask is malformed, does not match the image, or cannot hold the anomaly."""


class SizeBinError(SynthError):
    """The changed area cannot be brought into the requested size bin."""
