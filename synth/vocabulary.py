"""Closed vocabularies of the published schema (ClassLabel names), read off the registered methods.

Each name is the label a method declares (``Method.name``, ``.shapes``, ``.modes``), in the order
the methods are listed in ``synth.registry.METHODS``, each name at its first appearance; composite
methods (mixtures) label outputs with the drawn method's names and add none of their own.
Published datasets store labels as indices, so these lists are append-only: a new method goes at
the end of ``METHODS``, and tests pin the published prefix.
"""

from __future__ import annotations

from .registry import METHODS, method_class


def _vocabularies() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    methods: dict[str, None] = {}
    shapes: dict[str, None] = {}
    modes: dict[str, None] = {}
    for name, target in METHODS.items():
        if not isinstance(target, str):  # registered at run time: not part of the published schema
            continue
        cls = method_class(name)
        if cls.composite:
            continue
        methods[name] = None
        shapes.update(dict.fromkeys(cls.shapes))
        modes.update(dict.fromkeys(cls.modes))
    return tuple(methods), tuple(shapes), tuple(modes)


METHOD_NAMES, SHAPE_NAMES, MODE_NAMES = _vocabularies()
