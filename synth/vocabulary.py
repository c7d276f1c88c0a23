"""Closed vocabularies of the published schema (ClassLabel names). Append only: never reorder."""

METHOD_NAMES: tuple[str, ...] = (
    "synagen",
    "nsa",
    "cutpaste",
    "cutpaste_scar",
    "cutout",
    "fpi",
    "draem",
    "foreground_perlin",
    "fractal",
)

SHAPE_NAMES: tuple[str, ...] = (
    "spattered",
    "elongated",
    "rough",
    "complex",
    "patch",  # nsa, fpi
    "rectangle",  # cutpaste
    "scar",  # cutpaste_scar
    "square",  # cutout
    "perlin",  # draem, foreground_perlin
    "fractal",  # fractal
)

MODE_NAMES: tuple[str, ...] = (
    "transparent",
    "transparent_noise",
    "transparent_color_noise",
    "mean_noise",
    "gray_noise",
    "texture",
    "normal_clone",  # nsa objects
    "mixed_clone",  # nsa textures
    "paste",  # cutpaste, cutpaste_scar
    "constant",  # cutout
    "interpolation",  # fpi
    "texture_blend",  # draem, fractal
    "cut_blend",  # foreground_perlin
)
