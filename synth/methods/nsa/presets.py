"""Per-category NSA settings for the 15 MVTec AD classes (Schlüter et al., ECCV 2022).

Values are those of the NSA paper's experiments (supplementary settings of the public code):

``kind``           "object" (NORMAL_CLONE, resize bounds (0.7, 1.3)) or "texture" (MIXED_CLONE,
                   resize bounds (0.5, 2)).
``width_bounds``   ((min, max) half-height, (min, max) half-width) as fractions of the image side.
``n_patches``      at most this many patches (the first always, each further one with p = 0.5).
``t_object``       minimum object share of source and destination patch (objects with a
                   background only).
``t_overlap``      minimum share of the source patch's object pixels that land on object pixels
                   of the destination.
``background``     (brightness, threshold) in 0-255 units for the object masks
                   ``|mean(RGB) - brightness| > threshold``; ``None`` = no object masks (textures and
                   the objects that fill the frame, cable and transistor).
``logistic``       (k, x0) of the logistic label in 0-255 units.

Choices made here where the paper gives no value: ``t_object`` / ``t_overlap`` of cable,
transistor and the textures are unused (no object masks) and set to the code's defaults 0.25;
gamma parameters are the paper's (shape 2, scale 0.05, lower offset 0.03) for every class.
"""

from __future__ import annotations

from typing import Any

_TEXTURE_BOUNDS = ((0.03, 0.4), (0.03, 0.4))


def _object(width_bounds, n_patches, t_object, t_overlap, background, logistic) -> dict[str, Any]:
    return {
        "kind": "object",
        "width_bounds": width_bounds,
        "n_patches": n_patches,
        "t_object": t_object,
        "t_overlap": t_overlap,
        "background": background,
        "logistic": logistic,
    }


def _texture(logistic) -> dict[str, Any]:
    return {
        "kind": "texture",
        "width_bounds": _TEXTURE_BOUNDS,
        "n_patches": 4,
        "t_object": 0.25,
        "t_overlap": 0.25,
        "background": None,
        "logistic": logistic,
    }


#: category -> NSA settings (see the module docstring for the meaning of each entry).
NSA_PRESETS: dict[str, dict[str, Any]] = {
    "bottle": _object(((0.03, 0.4), (0.03, 0.4)), 3, 0.7, 0.25, (200, 60), (1 / 12, 24)),
    "cable": _object(((0.05, 0.4), (0.05, 0.4)), 3, 0.25, 0.25, None, (1 / 12, 24)),
    "capsule": _object(((0.03, 0.15), (0.03, 0.4)), 3, 0.7, 0.25, (200, 60), (1 / 2, 4)),
    "hazelnut": _object(((0.03, 0.35), (0.03, 0.35)), 3, 0.7, 0.25, (20, 20), (1 / 12, 24)),
    "metal_nut": _object(((0.03, 0.4), (0.03, 0.4)), 3, 0.5, 0.25, (20, 20), (1 / 3, 7)),
    "pill": _object(((0.03, 0.2), (0.03, 0.4)), 3, 0.7, 0.25, (20, 20), (1 / 3, 7)),
    "screw": _object(((0.03, 0.12), (0.03, 0.12)), 4, 0.5, 0.25, (200, 60), (1.0, 3)),
    "toothbrush": _object(((0.03, 0.4), (0.03, 0.2)), 3, 0.25, 0.25, (20, 20), (1 / 6, 15)),
    "transistor": _object(((0.03, 0.4), (0.03, 0.4)), 3, 0.25, 0.25, None, (1 / 6, 15)),
    "zipper": _object(((0.03, 0.4), (0.03, 0.2)), 4, 0.7, 0.25, (200, 60), (1 / 6, 15)),
    "carpet": _texture((1 / 3, 7)),
    "grid": _texture((1 / 3, 7)),
    "leather": _texture((1 / 3, 7)),
    "tile": _texture((1 / 3, 7)),
    "wood": _texture((1 / 6, 15)),
}
