"""Throughput of the detectors at 256 x 256: images per second for fitting and for scoring.

    python benchmarks/detect.py                      # CPU, and the GPU when there is one
    python benchmarks/detect.py --devices cpu --fit-images 16 --score-images 32

Fitting images/s counts fit images over the whole fit (PatchCore includes the coreset search,
PaDiM the covariance inversion); for the segmenter it counts training samples (steps x batch)
including making the synthetic anomalies. Scoring images/s is measured after one warm-up batch.
Inputs are 256 x 256 RGB crops of scikit-image's astronaut/coffee/chelsea/rocket photos.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# this file is named like the package it measures: make `import detect` find the package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np
import skimage.data
import torch

from detect.registry import build_detector


def _images(n: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sources = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        y = int(rng.integers(0, src.shape[0] - size + 1))
        x = int(rng.integers(0, src.shape[1] - size + 1))
        out.append(np.ascontiguousarray(src[y : y + size, x : x + size, :3]))
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(name: str, options: dict, device: str, fit: list, score: list, batch: int) -> tuple[float, float, int]:
    detector = build_detector(name, device=device, batch_size=batch, **options)
    _sync(device)
    t0 = time.perf_counter()
    detector.fit(fit)
    _sync(device)
    fit_time = time.perf_counter() - t0
    fitted = len(fit) if name != "segmenter" else options["steps"] * options["train_batch_size"]
    detector.score(score[:batch])  # warm-up (kernels, caches)
    _sync(device)
    t0 = time.perf_counter()
    detector.score(score)
    _sync(device)
    return fitted / fit_time, len(score) / (time.perf_counter() - t0), fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fit-images", type=int, default=16)
    parser.add_argument("--score-images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segmenter-steps", type=int, default=10)
    parser.add_argument("--devices", default=None, help="comma separated (default: cpu, plus cuda when available)")
    parser.add_argument("--detectors", default="patchcore,padim,segmenter")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    fit = _images(args.fit_images, args.size, 0)
    score = _images(args.score_images, args.size, 1)
    options = {
        "patchcore": {"coreset_ratio": 0.1},
        "padim": {},
        "segmenter": {"steps": args.segmenter_steps, "train_batch_size": args.batch_size},
    }
    print(f"{args.size}x{args.size} RGB, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'detector':<11} {'device':<7} {'fit img/s':>10} {'score img/s':>12}  fit on")
    for device in devices:
        label = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
        for name in args.detectors.split(","):
            fit_rate, score_rate, fitted = bench(name, options[name], device, fit, score, args.batch_size)
            what = f"{fitted} training samples" if name == "segmenter" else f"{fitted} images"
            print(f"{name:<11} {device:<7} {fit_rate:>10.2f} {score_rate:>12.2f}  {what}  ({label})")


if __name__ == "__main__":
    main()
