"""From anomaly-free images to a threshold and a verdict: how a detector fitted on a few images
says which test images are anomalous.

A detector is fitted on some anomaly-free images and scores held-out ones it has not seen; the
highest held-out score is the threshold (a clean image of the same kind scores at most about
that), and the median of the held-out anomaly maps is the typical level a heatmap is drawn from.
With one image, its two mirror images join the fit and the image turned by 180 degrees is held
out: the same texture, not the same pixels. A test image's verdict depends on what is known of it:
DETECTED / MISSED for a synthetic anomaly (mask known), CLEAN / FALSE ALARM for a known clean
image, ANOMALOUS / NORMAL otherwise -- or only above / within the reference when the threshold
comes from fewer than three images, too few for a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from detect.images import as_colour

#: ``truth`` of a test image known to be anomaly-free (e.g. the clean source of synthetic anomalies)
CLEAN = "clean"
#: anomaly-free images needed for a threshold that means anomalous (fewer: a ranking only)
MIN_VERDICT_IMAGES = 3
#: relative difference within which a score is the threshold itself: float32 scores of the same
#: pixels in another batch differ by a few units in the last place (about 1e-7 each), far below this
SAME_SCORE = 1e-5


@dataclass(frozen=True)
class Reference:
    """Anomaly-free images split into those a detector is fitted on and those that set its threshold."""

    fit: list[np.ndarray]
    held_out: list[np.ndarray]
    #: the threshold comes from too few images for a verdict (read scores as a ranking)
    one_image: bool


def held_out_split(images: Sequence[np.ndarray]) -> Reference:
    """Fit on all but the last image, hold the last out; one image is fitted on and held out alike."""
    images = list(images)
    if not images:
        raise ValueError("at least one anomaly-free image is needed")
    fit, held_out = (images[:-1], images[-1:]) if len(images) > 1 else (images, images)
    return Reference(fit, held_out, one_image=len(images) < MIN_VERDICT_IMAGES)


def mirror_split(image: np.ndarray) -> Reference:
    """One image: it and its two mirror images fit a detector, the image turned by 180 degrees
    measures the normal range -- the same texture, not the same pixels (the detectors' features
    are not mirror-invariant)."""
    image = as_colour(image)
    return Reference([image, image[:, ::-1], image[::-1, :]], [np.ascontiguousarray(image[::-1, ::-1])],
                     one_image=True)


@dataclass(frozen=True)
class Calibration:
    """The threshold (highest held-out score) and the typical anomaly-map level of a fitted detector."""

    threshold: float
    typical: float

    @classmethod
    def from_held_out(cls, scores: Sequence[float], maps: Sequence[np.ndarray]) -> "Calibration":
        """From a detector's image scores and anomaly maps on the held-out images."""
        return cls(threshold=float(np.max(scores)), typical=float(np.median([np.median(m) for m in maps])))

    @property
    def heat_top(self) -> float:
        """Top of a heatmap's scale anchored on the reference: the threshold sits mid-way up from typical."""
        return self.typical + 2.0 * max(self.threshold - self.typical, 1e-9)

    def ratio(self, score: float) -> float:
        """``score`` in multiples of the threshold."""
        return float(score) / self.threshold if self.threshold > 0 else float("inf")

    def verdict(self, score: float, truth: Any, one_image: bool) -> str:
        """The verdict on one test image of known ``truth`` (see ``verdict``); a score equal to the
        threshold but for float32 rounding (``SAME_SCORE``) is not above it."""
        return verdict(float(score) > self.threshold + SAME_SCORE * abs(self.threshold), truth, one_image)


def verdict(above: bool, truth: Any, one_image: bool) -> str:
    """What a score above or below the threshold says about one test image: DETECTED / MISSED for
    a synthetic anomaly (``truth`` its mask), CLEAN / FALSE ALARM for ``truth`` ``CLEAN``, and for
    an image of unknown truth (``None``) ANOMALOUS / NORMAL, or only above / within the reference
    when the threshold comes from one image."""
    if truth is None:
        if one_image:
            return "above reference" if above else "within reference"
        return "anomalous" if above else "normal"
    if isinstance(truth, str) and truth == CLEAN:
        return "false alarm" if above else "clean"
    return "detected" if above else "missed"
