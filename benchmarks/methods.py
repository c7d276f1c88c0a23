"""Outputs per second of every synthesis method at 256x256 and 1024x1024 (run by hand).

    python benchmarks/methods.py [--repeats 20] [--sizes 256 1024]

Each method makes anomalies in an RGB photograph (scikit-image's astronaut, resized) with a second
normal image (coffee) as partner, once at its drawn size ("drawn") and once steered into a size
bin (bins taken in turn, "in bin"). Single process, one core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth import DEFAULT_BINS, get_method, synthesize  # noqa: E402

METHODS = ("synagen", "nsa", "cutpaste", "cutpaste_scar", "cutout", "fpi", "draem", "foreground_perlin", "fractal")


def outputs_per_second(name: str, size: int, repeats: int, with_bin: bool) -> float:
    """Anomalies per second for ``name`` on a ``size x size`` RGB image."""
    image = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    partner = cv2.resize(skimage.data.coffee(), (size, size), interpolation=cv2.INTER_AREA)
    method = get_method(name)
    synthesize(image, method, seed=0, partners=[partner])  # warm caches and imports
    start = time.perf_counter()
    for seed in range(repeats):
        size_bin = seed % len(DEFAULT_BINS) if with_bin else None
        if name == "synagen" and not with_bin:
            size_bin = None  # SYNAGEN draws a bin itself
        synthesize(image, method, seed=seed, partners=[partner], size_bin=size_bin)
    return repeats / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    args = parser.parse_args(argv)
    header = f"{'method':<18}" + "".join(f"{f'{s}² drawn':>14}{f'{s}² in bin':>14}" for s in args.sizes)
    print(header)
    print("-" * len(header))
    for name in METHODS:
        cells = []
        for size in args.sizes:
            repeats = args.repeats if size <= 512 else max(4, args.repeats // 4)
            for with_bin in (False, True):
                cells.append(f"{outputs_per_second(name, size, repeats, with_bin):>14.1f}")
        print(f"{name:<18}" + "".join(cells), flush=True)
    print("(outputs per second, single process)")


if __name__ == "__main__":
    main()
