"""The example textures every tab starts on (CC0, from scikit-image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data

from synth.image import save_png


EXAMPLE_NAMES = ("brick", "grass", "gravel")


def example_paths(folder: Path) -> dict[str, str]:
    """The example textures as PNG files in ``folder`` (written once), name -> path."""
    paths = {}
    for name in EXAMPLE_NAMES:
        path = Path(folder) / f"{name}.png"
        if not path.is_file():
            save_png(path, getattr(skimage.data, name)())
        paths[name] = str(path)
    return paths


def example_image(name: str) -> np.ndarray:
    return getattr(skimage.data, name)()


