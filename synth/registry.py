"""Method names -> implementations. A new method adds its file and one line here."""

from __future__ import annotations

import importlib
from typing import Any, Mapping

import numpy as np

from .errors import InvalidParameterError
from .method import Method

#: name -> "module:Class" (imported on first use)
METHODS: dict[str, str | type[Method]] = {
    "synagen": "synth.methods.synagen.method:Synagen",
    "nsa": "synth.methods.nsa.method:NSA",
    "cutpaste": "synth.methods.cutpaste.method:CutPaste",
    "cutpaste_scar": "synth.methods.cutpaste.method:CutPasteScar",
    "cutout": "synth.methods.cutout.method:CutOut",
    "fpi": "synth.methods.fpi.method:FPI",
    "draem": "synth.methods.draem.method:DRAEM",
    "foreground_perlin": "synth.methods.foreground_perlin.method:ForegroundPerlin",
    "fractal": "synth.methods.fractal.method:Fractal",
    "hybrid": "synth.methods.hybrid.method:Hybrid",
}


def method_names() -> tuple[str, ...]:
    return tuple(METHODS)


def batched_methods() -> tuple[str, ...]:
    """The methods with a batched torch renderer (``Method.batched``)."""
    return tuple(name for name in METHODS if method_class(name).batched is not None)


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
    if cls.composite:
        return mixture(cls, **options)
    try:
        return cls(**options)
    except TypeError as exc:
        raise InvalidParameterError(f"bad options for method {name!r}: {exc}") from None


def mixture(
    cls: type[Method], weights: Mapping[str, float] | None = None, options: Mapping[str, Mapping[str, Any]] | None = None,
    **method_options: Any,
) -> Method:
    """A composite method ``cls`` (``hybrid``) of registered methods.

    ``weights`` {method name: weight >= 0} (at least one weight > 0; normalised; default: every
    registered method with equal weight); per-method constructor options either as
    ``options={"nsa": {...}}`` or directly as keyword arguments named after the method
    (``nsa={"preset": "wood"}``).
    """
    if weights is None:  # an even mixture of every registered method
        weights = {name: 1.0 for name in METHODS if name != cls.name}
    if not isinstance(weights, Mapping) or not weights:
        raise InvalidParameterError(f"{cls.name} needs weights, e.g. weights={{'nsa': 0.5, 'synagen': 0.5}}")
    merged: dict[str, Mapping[str, Any]] = dict(options or {})
    for key, value in method_options.items():
        if key not in METHODS:
            raise InvalidParameterError(f"unknown {cls.name} option {key!r}: per-method options are named after a method ({', '.join(METHODS)})")
        merged[key] = value
    probabilities = mixture_weights(weights)
    for key in merged:
        if key not in probabilities:
            raise InvalidParameterError(f"options given for {key!r}, which has no weight in the mixture")
    return cls(probabilities, {n: get_method(n, **dict(merged.get(n, {}))) for n in probabilities})


def mixture_weights(weights: Mapping[str, Any]) -> dict[str, float]:
    """``{method: probability}`` of a mixture given as ``{method name: weight}``: the names checked
    against the registry (no ``hybrid`` inside a hybrid), the weights finite numbers >= 0 with at
    least one > 0; methods of weight 0 are left out and the rest normalised to sum to 1.

    Raises ``InvalidParameterError`` naming the unknown methods or the bad weight.
    """
    unknown = [m for m in weights if m not in METHODS or m == "hybrid"]
    if unknown or not weights:
        choices = ", ".join(m for m in METHODS if m != "hybrid")
        nested = " (a hybrid cannot contain another hybrid)" if "hybrid" in unknown else ""
        raise InvalidParameterError(f"unknown synth method(s) {unknown}{nested}; choose from {choices}")
    kept = {}
    for name, weight in weights.items():
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"weight of synth method {name!r} must be a number, got {weight!r}") from None
        if not np.isfinite(w) or w < 0:
            raise InvalidParameterError(f"weight of synth method {name!r} must be finite and >= 0, got {weight!r}")
        if w > 0:
            kept[name] = w
    if not kept:
        raise InvalidParameterError(
            f"every weight of the mix {dict(weights)} is 0; give at least one method a weight > 0"
        )
    total = float(sum(kept.values()))
    return {name: w / total for name, w in kept.items()}
