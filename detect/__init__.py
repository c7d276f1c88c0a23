"""detect: anomaly detectors, detection metrics and the sensitivity evaluation.

>>> from detect import PatchCore, load_detector                     # doctest: +SKIP
>>> from detect.evaluation.evaluate import evaluate
>>> detector = PatchCore().fit(good_images)                          # anomaly-free images
>>> result = detector.score(images)                                  # .scores (N,), .maps [(H, W)]
>>> ev = evaluate(test_rows, good_images, detector)                  # recall at k false positives
>>> ev.summary["recall_at_k"]["1"], ev.tables["shape_size"]

Heavy modules (torch models, datasets, accelerate) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from detect.errors import (
    BackboneWeightsMissingError,
    DatasetLayoutError,
    DetectError,
    DetectorFileError,
    InvalidImagesError,
    MetricInputError,
    NotFittedError,
)

_LAZY = {
    "PatchCore": "detect.detectors.patchcore",
    "PaDiM": "detect.detectors.padim",
    "Segmenter": "detect.training.segmenter",
    "Detector": "detect.detectors.detector",
    "Detection": "detect.detectors.detector",
    "load_detector": "detect.registry",
    "build_detector": "detect.registry",
    "DETECTORS": "detect.registry",
    "Evaluation": "detect.evaluation.evaluate",
    "FeatureExtractor": "detect.detectors.backbones",
    "read_defect_set": "detect.evaluation.defect_sets",
    "DefectSet": "detect.evaluation.defect_sets",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'detect' has no attribute {name!r}")


__all__ = [
    "BackboneWeightsMissingError",
    "DatasetLayoutError",
    "DetectError",
    "DetectorFileError",
    "InvalidImagesError",
    "MetricInputError",
    "NotFittedError",
    *_LAZY,
]
