"""Hybrid: a weighted mixture of synthesis methods (ASBench §4.5: mixtures beat single methods).

``sample`` draws one method by its weight and delegates to it; the spec's ``method`` field is the
chosen method's name, so every output is labelled with the method that made it, and ``render``
(and ``synth.replay``) hand the spec to that method.

>>> from synth import get_method
>>> mix = get_method("hybrid", weights={"nsa": 0.5, "synagen": 0.5}, nsa={"preset": "wood"})
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .errors import InvalidParameterError
from .method import Method, Rendering, Scene, Spec
from .sizebins import SizeBin


def mixture_weights(weights: Mapping[str, Any]) -> dict[str, float]:
    """``{method: probability}`` of a mixture given as ``{method name: weight}``: the names checked
    against the registry (no ``hybrid`` inside a hybrid), the weights finite numbers >= 0 with at
    least one > 0; methods of weight 0 are left out and the rest normalised to sum to 1.

    Raises ``InvalidParameterError`` naming the unknown methods or the bad weight.
    """
    from .registry import METHODS

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


class Hybrid(Method):
    """A weighted mixture of registered methods.

    Options: ``weights`` {method name: weight >= 0} (at least one weight > 0; weights are
    normalised; default: every registered method with equal weight); per-method constructor options either as ``options={"nsa": {...}}`` or directly
    as keyword arguments named after the method (``nsa={"preset": "wood"}``).

    When ``shape`` or ``mode`` is requested, only the methods that offer it are drawn from.
    """

    name = "hybrid"
    shapes = ()
    modes = ()
    composite = True

    def __init__(self, weights: Mapping[str, float] | None = None, options: Mapping[str, Mapping[str, Any]] | None = None, **method_options: Any) -> None:
        from .registry import METHODS, get_method

        if weights is None:  # an even mixture of every registered method
            weights = {name: 1.0 for name in METHODS if name != "hybrid"}
        if not isinstance(weights, Mapping) or not weights:
            raise InvalidParameterError("hybrid needs weights, e.g. weights={'nsa': 0.5, 'synagen': 0.5}")
        merged: dict[str, Mapping[str, Any]] = dict(options or {})
        for key, value in method_options.items():
            if key not in METHODS:
                raise InvalidParameterError(f"unknown hybrid option {key!r}: per-method options are named after a method ({', '.join(METHODS)})")
            merged[key] = value
        self.weights = mixture_weights(weights)
        names = list(self.weights)
        for key in merged:
            if key not in names:
                raise InvalidParameterError(f"options given for {key!r}, which has no weight in the mixture")
        self.methods: dict[str, Method] = {n: get_method(n, **dict(merged.get(n, {}))) for n in names}
        self.shapes = tuple(dict.fromkeys(s for m in self.methods.values() for s in m.shapes))
        self.modes = tuple(dict.fromkeys(s for m in self.methods.values() for s in m.modes))
        self.targets_size = all(getattr(m, "targets_size", False) for m in self.methods.values())
        self.needs_partner = any(getattr(m, "needs_partner", False) for m in self.methods.values())

    def sample(
        self,
        rng: np.random.Generator,
        scene: Scene,
        *,
        shape: str | None = None,
        mode: str | None = None,
        size_bin: SizeBin | None = None,
        seed: int = 0,
    ) -> Spec:
        names = [
            n for n, m in self.methods.items()
            if (shape is None or shape in m.shapes) and (mode is None or mode in m.modes)
        ]
        if not names:
            raise InvalidParameterError(
                f"no method in the mixture offers shape={shape!r} mode={mode!r}; shapes: "
                f"{', '.join(self.shapes)}; modes: {', '.join(self.modes)}"
            )
        probs = np.asarray([self.weights[n] for n in names], np.float64)
        chosen = names[int(rng.choice(len(names), p=probs / probs.sum()))]
        return self.methods[chosen].sample(rng, scene, shape=shape, mode=mode, size_bin=size_bin, seed=seed)

    def render(self, scene: Scene, spec: Spec) -> Rendering:
        method = self.methods.get(spec.method)
        if method is None:
            raise InvalidParameterError(
                f"spec made by {spec.method!r}, which is not part of this mixture ({', '.join(self.methods)})"
            )
        return method.render(scene, spec)
