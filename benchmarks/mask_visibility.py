"""How much of a mask is barely visible: per SYNAGEN mode (and per other method), the share of mask pixels whose largest
channel change is at most 2 levels (of 255), and the area measured at higher visibility thresholds.

    python benchmarks/mask_visibility.py [--seeds 4]

Masks count every pixel changed by more than one level (``synth.anomaly.CHANGE_TOLERANCE``). Noise
modes change many pixels by one or two levels (speckle clouds around the shape), so their
measured area is larger than what a person sees; ``--min-change`` on ``anomalyforge synth`` asks
for the area of visible change instead. Images: scikit-image's brick, grass and gravel (CC0);
SYNAGEN shapes rough and complex, bins 0.5-1.5 % and 2.5-15 %.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth import SizeBinError, synthesize  # noqa: E402

MODES = ("transparent", "transparent_noise", "transparent_color_noise", "mean_noise", "gray_noise", "texture")
BINS = ("0.5-1.5%", "2.5-15%")
SHAPES = ("rough", "complex")
OTHER_METHODS = ("draem", "fractal", "nsa", "cutpaste", "fpi")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    images = {name: getattr(skimage.data, name)()[:256, :256] for name in ("brick", "grass", "gravel")}
    textures = tuple(np.stack([img] * 3, axis=2).astype(np.float32) / 255 for img in images.values())
    print("| method | mode | size bin | anomalies | mask pixels | changed by <= 2 levels | by <= 4 levels |")
    print("|---|---|---|---|---|---|---|")
    cases = [("synagen", mode, shape) for mode in MODES for shape in SHAPES]
    cases += [(method, None, None) for method in OTHER_METHODS]
    for method in dict.fromkeys(case[0] for case in cases):
        for mode in dict.fromkeys(case[1] for case in cases if case[0] == method):
            for size_bin in BINS:
                changes = []
                for image in images.values():
                    for shape in [case[2] for case in cases if case[:2] == (method, mode)]:
                        for seed in range(args.seeds):
                            try:
                                a = synthesize(image, method, seed=seed, shape=shape, mode=mode, size_bin=size_bin,
                                               textures=textures)
                            except SizeBinError:
                                continue
                            changes.append(np.rint(a.diff[a.mask] * 255))
                levels = np.concatenate(changes)
                print(f"| {method} | {mode or 'drawn'} | {size_bin} | {len(changes)} | {levels.size:,} "
                      f"| {(levels <= 2).mean():.1%} | {(levels <= 4).mean():.1%} |")

if __name__ == "__main__":
    main()
