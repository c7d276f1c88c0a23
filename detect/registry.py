"""Detector names -> classes. A new detector adds its file and one line here."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from detect.detectors.detector import FILE_FORMAT, FILE_VERSION, Detector
from detect.errors import DetectError, DetectorFileError

#: name -> "module:Class" (imported on first use; the segmenter pulls in synth and accelerate)
DETECTORS: dict[str, str] = {
    "patchcore": "detect.detectors.patchcore:PatchCore",
    "padim": "detect.detectors.padim:PaDiM",
    "segmenter": "detect.training.segmenter:Segmenter",
    "draem": "detect.training.draem:DRAEMDetector",
    "defect_map": "detect.training.defect_map:DefectMap",
}


def known_detector(name: str) -> bool:
    """A built-in name or an external one (``onnx:PATH``, ``python:FILE.py:NAME``, ...)."""
    from detect.detectors.external import is_external

    return name in DETECTORS or is_external(name)


def detector_class(name: str) -> type:
    try:
        target = DETECTORS[name]
    except KeyError:
        raise DetectError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}, or name your own: "
                          "onnx:PATH, torchscript:PATH, anomalib:PATH, python:FILE.py:NAME") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_detector(name: str, **options: Any):
    """An unfitted detector by name, e.g. ``build_detector("patchcore", coreset_ratio=0.05)``, or an
    external one used as given, e.g. ``build_detector("onnx:model.onnx", normalize="imagenet")``
    (``detect.detectors.external``)."""
    from detect.detectors.external import build_external, is_external

    if is_external(name):
        try:
            return build_external(name, **options)
        except TypeError as exc:
            raise DetectError(f"bad options for detector {name!r}: {exc}") from None
    cls = detector_class(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise DetectError(f"bad options for detector {name!r}: {exc}") from None


#: options for interactive use (a web page, a quick CLI run): fitting takes seconds on a CPU
INTERACTIVE_OPTIONS: dict[str, dict[str, Any]] = {
    "patchcore": {"coreset_ratio": 0.1, "max_coreset": 4000},
}


class FittedDetectors:
    """Fitted detectors kept under a caller's key, the least recently used dropped beyond ``capacity``.

    Several threads may ask at once (a web app's workers); fitting holds a lock, so a key is fitted
    once and the others wait for it. A detector is fitted on ``device`` and stays there: it scores
    where it was fitted, and the same images asked for on another device are another entry.
    """

    def __init__(self, capacity: int = 4) -> None:
        import threading
        from collections import OrderedDict

        if capacity < 1:
            raise DetectError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._fitted: "OrderedDict[str, Any]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, key: str, images, *, device: str = "cpu", **options: Any):
        """The detector ``name`` (``INTERACTIVE_OPTIONS`` updated by ``options``) fitted on
        ``images``; ``key`` must change whenever the images or options do."""
        settings = {**INTERACTIVE_OPTIONS.get(name, {}), **options}
        key = f"{name}:{key}:{device}:{sorted(settings.items())}"
        with self._lock:
            if key in self._fitted:
                self._fitted.move_to_end(key)
                return self._fitted[key]
            detector = build_detector(name, **settings)
            detector.to(device)
            detector.fit(list(images))
            self._fitted[key] = detector
            while len(self._fitted) > self.capacity:
                self._fitted.popitem(last=False)
            return detector

    def __len__(self) -> int:
        return len(self._fitted)


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> Detector:
    """Read a detector written by ``Detector.save``; it scores exactly like the one saved."""
    path = Path(path)
    if not path.is_file():
        raise DetectorFileError(f"detector file {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors: the file is not what we wrote
        raise DetectorFileError(f"{path} is not a saved detector ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise DetectorFileError(f"{path} is not an anomalyforge detector file")
    if payload.get("version", 0) > FILE_VERSION:
        raise DetectorFileError(
            f"{path} was written by a newer anomalyforge (file version {payload['version']}); upgrade"
        )
    cls = detector_class(payload["detector"])
    detector = cls(**payload["config"])
    detector.channels = int(payload["fitted"]["channels"])
    detector.fit_size = tuple(int(v) for v in payload["fitted"]["fit_size"])
    detector._load_state(payload["state"])
    return detector.to(device)
