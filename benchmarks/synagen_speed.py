"""SYNAGEN speed and size-bin accuracy: anomalies per second per shape x mode, 256² and 1024² RGB.

    python benchmarks/synagen_speed.py [--per-cell N] [--sizes 256 1024] [--profile]

"render" is synthesize() alone (draw, render, measure, record; the image converted once per drawn
anomaly with ``synth.prepare``, as the protocol does); "+png" adds PNG encoding of the
image and mask as the folder protocol writes them (deflate level 2, unchanged row bands reused from
the source's encoding, whose one-off cost per source image is amortised over its outputs and
included here). Each
cell renders one drawn anomaly in all five bins (the protocol's pattern: every shape x mode has its
own seed, so its own shape panel, shared by its five sizes). Single process.
OpenCV runs single-threaded here (as in the protocol's worker processes), so a process uses one
core, and times are that process's CPU seconds (``time.process_time``), which other work on the
machine barely moves.

``--profile`` adds, per size, where a render's time goes (cProfile, cumulative time of the stages,
milliseconds per output; profiling adds its own overhead, so read the shares, not the sum).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import cv2
import numpy as np
import skimage.data

from synth import DEFAULT_BINS, SizeBinError, prepare, synthesize
from synth.image import encode_png
from synth.png import Base
from synth.methods.synagen import SHAPES
from synth.methods.synagen.modes import DEFAULT_MODES


def run(size: int, per_cell: int) -> list[tuple[str, str, float, float, float]]:
    image = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_LINEAR)
    rows = []
    t0 = time.process_time()
    base, mask_base = Base.of(image), Base.of(np.zeros(image.shape[:2], np.uint8))
    base_s = time.process_time() - t0
    outputs_per_source = len(SHAPES) * len(DEFAULT_MODES) * per_cell * len(DEFAULT_BINS)
    for shape in SHAPES:
        for m, mode in enumerate(DEFAULT_MODES):
            render_s = 0.0
            png_s = base_s * per_cell * len(DEFAULT_BINS) / outputs_per_source
            hits = total = 0
            for seed in range(per_cell):
                t0 = time.process_time()
                prepared = prepare(image)  # once per drawn anomaly, as the protocol does
                render_s += time.process_time() - t0
                for b, size_bin in enumerate(DEFAULT_BINS):
                    t0 = time.process_time()
                    total += 1
                    try:
                        a = synthesize(prepared, seed=1000 + 100 * m + seed, shape=shape, mode=mode, size_bin=b)
                    except SizeBinError:  # counted as not in bin (the protocol writes a failure row)
                        render_s += time.process_time() - t0
                        continue
                    t1 = time.process_time()
                    encode_png(a.image, base=base)
                    encode_png(a.mask_u8, base=mask_base)
                    t2 = time.process_time()
                    render_s += t1 - t0
                    png_s += t2 - t1
                    hits += size_bin.contains(a.record["area_fraction"])
            rows.append((shape, mode, total / render_s, total / (render_s + png_s), hits / total))
    return rows


#: stage -> the function (file suffix, name) whose cumulative time it is
_STAGES = {
    "shape panel + rotation (once per drawn shape)": ("synagen/shapes.py", "_rotated_cached"),
    "scale search: placing scaled shapes": ("synagen/method.py", "_place"),
    "  of which scaled masks (table / cv2.resize)": ("synagen/scaling.py", "mask"),
    "manipulation + contour band": ("synagen/method.py", "_manipulate"),
    "noise field (once per drawn anomaly)": ("synagen/modes.py", "_noise_field"),
    "image conversion (prepare)": ("synth/anomaly.py", "prepare"),
    "measure + record + output image (finish)": ("synth/anomaly.py", "finish"),
    "spec drawing (sample)": ("synagen/method.py", "sample"),
    "synthesize, total": ("synth/anomaly.py", "synthesize"),
}


def profile(size: int, per_cell: int) -> None:
    """Print the stage split of ``run``'s renders (PNG encoding excluded)."""
    image = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_LINEAR)
    jobs = [(shape, mode, 2000 + 100 * m + seed, b) for shape in SHAPES for m, mode in enumerate(DEFAULT_MODES)
            for seed in range(per_cell) for b in range(len(DEFAULT_BINS))]
    profiler = cProfile.Profile()
    profiler.enable()
    for shape, mode, seed, b in jobs:
        try:
            synthesize(image, seed=seed, shape=shape, mode=mode, size_bin=b)  # converting each time
        except SizeBinError:
            pass
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    print(f"\n{size}x{size}: where a render's time goes ({len(jobs)} outputs, profiled)")
    print("| stage | ms per output | share |")
    print("|---|---:|---:|")
    total = None
    rows = []
    for stage, (suffix, name) in _STAGES.items():
        cumulative = sum(v[3] for (file, _, func), v in stats.items() if func == name and file.endswith(suffix))
        rows.append((stage, cumulative))
        total = cumulative if stage.startswith("synthesize") else total
    for stage, cumulative in rows:
        print(f"| {stage} | {1e3 * cumulative / len(jobs):.2f} | {100 * cumulative / total:.0f} % |")


def main() -> None:
    cv2.setNumThreads(1)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-cell", type=int, default=2, help="anomalies per shape x mode x bin")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--profile", action="store_true", help="also print where a render's time goes")
    args = parser.parse_args()
    for size in args.sizes:
        if args.profile:
            profile(size, args.per_cell)
        rows = run(size, args.per_cell)
        print(f"\n{size}x{size} RGB, {args.per_cell * len(DEFAULT_BINS)} anomalies per row")
        print(f"| shape | mode | render/s | render+png/s | s/output (+png) | in bin |")
        print(f"|---|---|---:|---:|---:|---:|")
        for shape, mode, rps, pps, rate in rows:
            print(f"| {shape} | {mode} | {rps:.1f} | {pps:.1f} | {1 / pps:.4f} | {100 * rate:.0f} % |")
        all_r = np.mean([1 / r[2] for r in rows])
        all_p = np.mean([1 / r[3] for r in rows])
        rate = np.mean([r[4] for r in rows])
        print(f"| **all** | | {1 / all_r:.1f} | {1 / all_p:.1f} | {all_p:.4f} | {100 * rate:.1f} % |")


if __name__ == "__main__":
    main()
