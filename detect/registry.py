"""Detector names -> classes. A new detector adds its file and one line here."""

from __future__ import annotations

import importlib
from typing import Any

from .errors import DetectError

#: name -> "module:Class" (imported on first use; the segmenter pulls in synth and accelerate)
DETECTORS: dict[str, str] = {
    "patchcore": "detect.patchcore:PatchCore",
    "padim": "detect.padim:PaDiM",
    "segmenter": "detect.segmenter:Segmenter",
    "draem": "detect.draem:DRAEM",
    "defect_map": "detect.defect_map:DefectMap",
}


def detector_class(name: str) -> type:
    try:
        target = DETECTORS[name]
    except KeyError:
        raise DetectError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_detector(name: str, **options: Any):
    """An unfitted detector by name, e.g. ``build_detector("patchcore", coreset_ratio=0.05)``."""
    cls = detector_class(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise DetectError(f"bad options for detector {name!r}: {exc}") from None
