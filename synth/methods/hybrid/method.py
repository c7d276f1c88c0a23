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
        self.check_choices(shape, mode)
        names = [n for n, m in self.methods.items() if m.offers(shape, mode)]
        probs = np.asarray([self.weights[n] for n in names], np.float64)
        chosen = names[int(rng.choice(len(names), p=probs / probs.sum()))]
        return self.methods[chosen].sample(rng, scene, shape=shape, mode=mode, size_bin=size_bin, seed=seed)

    def offers(self, shape: str | None = None, mode: str | None = None) -> bool:
        """Whether a method of the mixture makes this shape in this mode (``None``: any)."""
        return any(m.offers(shape, mode) for m in self.methods.values())

    def check_choices(self, shape: str | None = None, mode: str | None = None) -> None:
        """Refuse a shape or mode no method of the mixture has, or a shape and mode that no one
        method makes together (naming the modes that go with the shape)."""
        super().check_choices(shape, mode)
        if not self.offers(shape, mode):  # both named: each alone is offered
            partners = [m for m in self.modes if self.offers(shape, m)]
            raise InvalidParameterError(f"no method in the mixture makes shape {shape!r} in mode {mode!r}; "
                                        f"modes with shape {shape!r}: {', '.join(partners)}")

    def render(self, scene: Scene, spec: Spec) -> Rendering:
        method = self.methods.get(spec.method)
        if method is None:
            raise InvalidParameterError(
                f"spec made by {spec.method!r}, which is not part of this mixture ({', '.join(self.methods)})"
            )
        return method.render(scene, spec)
