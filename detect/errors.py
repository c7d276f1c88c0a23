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


class MissingWeightsError(BackboneWeightsMissingError, FileNotFoundError):
    """A pretrained weights file is not in the torch hub cache and cannot be downloaded here."""


class WeightsFileError(DetectError):
    """A weights file exists but does not hold the expected network's parameters."""


# --------------------------------------------------------------------------- dataset quality commands
class DatasetUnavailableError(DetectError):
    """A dataset (or the requested revision or split of it) cannot be opened."""


class DiversityInputError(DetectError):
    """Images, masks, differences or sources given to the diversity scores do not fit together."""


class QualityInputError(DetectError):
    """Images given to a quality metric do not fit together (counts, sizes, too few)."""


class CorrelationInputError(DetectError):
    """Metric or detection-result files that cannot be related (missing key, unknown method)."""


class ImageConversionWarning(UserWarning):
    """A detector converted images to the channel layout it works on (``detect.images``' rule):
    ``converted`` of ``total`` ``what`` brought to ``channels`` (1: gray, 3: RGB)."""

    def __init__(self, what: str, converted: int, total: int, channels: int) -> None:
        super().__init__(what, converted, total, channels)
        self.what, self.converted, self.total, self.channels = what, converted, total, channels

    def __str__(self) -> str:
        other, how = (("gray", "repeated gray into three channels") if self.channels == 3
                      else ("RGB", "took the Rec. 601 luma of colour"))
        return (f"{self.what}: {self.converted} of {self.total} {other} and the detector works on "
                f"{'RGB' if self.channels == 3 else 'gray'}; {how} (the one conversion rule: README, 'Image layouts')")
