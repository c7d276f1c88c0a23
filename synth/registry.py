"""Method names -> implementations. A new method adds its file and one line here."""

from __future__ import annotations

import importlib
from typing import Any

from .errors import InvalidParameterError
from .method import Method

#: name -> "module:Class" (imported on first use)
METHODS: dict[str, str] = {
    "synagen": "synth.synagen.method:Synagen",
    "nsa": "synth.nsa:NSA",
    "cutpaste": "synth.cutpaste:CutPaste",
    "cutpaste_scar": "synth.cutpaste:CutPasteScar",
    "cutout": "synth.cutout:CutOut",
    "fpi": "synth.fpi:FPI",
    "draem": "synth.draem:DRAEM",
    "foreground_perlin": "synth.foreground_perlin:ForegroundPerlin",
    "fractal": "synth.fractal:Fractal",
    "hybrid": "synth.hybrid:Hybrid",
}


def method_names() -> tuple[str, ...]:
    return tuple(METHODS)


def get_method(name: str, **options: Any) -> Method:
    """Instantiate a method by name with its options (e.g. ``preset="wood"`` for NSA)."""
    try:
        target = METHODS[name]
    except KeyError:
        raise InvalidParameterError(
            f"unknown method {name!r}; choose from {', '.join(METHODS)}"
        ) from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise InvalidParameterError(f"bad options for method {name!r}: {exc}") from None
