"""Hybrid: a weighted mixture of synthesis methods (ASBench §4.5: mixtures beat single methods).

``sample`` draws one method by its weight and delegates to it; the spec's ``method`` field is the
chosen method's name, so every output is labelled with the method that made it, and ``render``
(and ``synth.replay``) hand the spec to that method.

>>> from synth import get_method
>>> mix = get_method("hybrid", weights={"nsa": 0.5, "synagen": 0.5}, nsa={"preset": "wood"})
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ...errors import InvalidParameterError
from ...method import Method, Rendering, Scene, Spec
from ...sizebins import SizeBin


class Hybrid(Method):
    """A weighted mixture of registered methods (built by ``get_method("hybrid", ...)``, whose
    options ``synth.registry.mixture`` describes).

    When ``shape`` or ``mode`` is requested, only the methods that offer it are drawn from.
    """

    name = "hybrid"
    shapes = ()
    modes = ()
    composite = True

    def __init__(self, weights: Mapping[str, float], methods: Mapping[str, Method]) -> None:
        """``weights`` {method name: probability}, ``methods`` {method name: method}, as
        ``synth.registry.mixture`` checks and builds them from the registered methods."""
        self.weights = dict(weights)
        self.methods: dict[str, Method] = dict(methods)
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
