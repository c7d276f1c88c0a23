"""Detector names -> classes. A new detector adds its file and one line here."""

from __future__ import annotations

import importlib
from typing import Any

from detect.errors import DetectError

#: name -> "module:Class" (imported on first use; the segmenter pulls in synth and accelerate)
DETECTORS: dict[str, str] = {
    "patchcore": "detect.detectors.patchcore:PatchCore",
    "padim": "detect.detectors.padim:PaDiM",
    "segmenter": "detect.training.segmenter:Segmenter",
    "draem": "detect.training.draem:DRAEM",
    "defect_map": "detect.training.defect_map:DefectMap",
}


#: prefixes of the names of detectors made elsewhere -> the builder (``detect.detectors.external``)
EXTERNAL_KINDS = ("onnx", "torchscript", "anomalib", "python")
EXTERNAL_BUILDER = "detect.detectors.external:build_external"


def is_external(name: str) -> bool:
    """True for a name with one of the ``EXTERNAL_KINDS`` prefixes (``onnx:model.onnx``)."""
    return isinstance(name, str) and ":" in name and name.split(":", 1)[0] in EXTERNAL_KINDS


def known_detector(name: str) -> bool:
    """A built-in name or an external one (``onnx:PATH``, ``python:FILE.py:NAME``, ...)."""
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
    if is_external(name):
        module_name, function_name = EXTERNAL_BUILDER.split(":")
        build_external = getattr(importlib.import_module(module_name), function_name)
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
    once and the others wait for it. Detectors are kept on the CPU and moved to ``device`` only
    for fitting; the caller moves a returned detector where it scores.
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
        key = f"{name}:{key}:{sorted(settings.items())}"
        with self._lock:
            if key in self._fitted:
                self._fitted.move_to_end(key)
                return self._fitted[key]
            detector = build_detector(name, **settings)
            detector.to(device)
            try:
                detector.fit(list(images))
            finally:
                detector.to("cpu")
            self._fitted[key] = detector
            while len(self._fitted) > self.capacity:
                self._fitted.popitem(last=False)
            return detector

    def __len__(self) -> int:
        return len(self._fitted)
