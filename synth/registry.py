"""Method names -> implementations. A new method adds its file and one line here."""

from __future__ import annotations

import importlib
from typing import Any

from .errors import InvalidParameterError
from .method import Method

#: name -> "module:Class" (imported on first use)
METHODS: dict[str, str | type[Method]] = {
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


def register(cls: type[Method]) -> type[Method]:
    """Add a method class under its ``name`` (usable as a class decorator); return the class.

    For methods defined outside this package; the project's own methods are listed in ``METHODS``.
    The new names reach the published vocabulary only through ``METHODS`` (see ``synth.vocabulary``).
    """
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise InvalidParameterError(f"register() takes a Method subclass, got {cls!r}")
    existing = METHODS.get(cls.name)
    if existing is not None and existing is not cls:
        raise InvalidParameterError(f"a method named {cls.name!r} is registered already")
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type[Method]:
    """The class registered under ``name`` (imported on first use)."""
    try:
        target = METHODS[name]
    except KeyError:
        raise InvalidParameterError(
            f"unknown method {name!r}; choose from {', '.join(METHODS)}"
        ) from None
    if isinstance(target, str):
        module_name, class_name = target.split(":")
        return getattr(importlib.import_module(module_name), class_name)
    return target


def get_method(name: str, **options: Any) -> Method:
    """Instantiate a method by name with its options (e.g. ``preset="wood"`` for NSA)."""
    cls = method_class(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise InvalidParameterError(f"bad options for method {name!r}: {exc}") from None
