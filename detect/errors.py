"""Exceptions raised by ``detect``. Every one is a ``ValueError`` with a message a user can act on."""

from __future__ import annotations


class DetectError(ValueError):
    """Base class: a request that cannot be carried out as asked."""


class InvalidImagesError(DetectError):
    """Images that cannot be used: none at all, mixed sizes or channels, unsupported dtype."""


class NotFittedError(DetectError):
    """A detector was asked to score before it was fitted (or loaded)."""


class BackboneWeightsMissingError(DetectError):
    """Pretrained weights are not in the local cache and cannot be downloaded."""


class DetectorFileError(DetectError):
    """A saved detector file is missing, corrupt or was written by an unknown detector."""


class DatasetLayoutError(DetectError):
    """A dataset does not follow the published schema (missing split or column)."""


class MetricInputError(DetectError):
    """Scores or labels that no metric can be computed from (empty, one class only, too few)."""
