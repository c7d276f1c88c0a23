"""LPIPS throughput: image pairs per second at 256×256, per trunk, batch size and device.

Run by hand:  python benchmarks/lpips.py [--nets alex vgg squeeze] [--batch-sizes 1 16] [--seconds 3]

Uses the ImageNet trunk from the torch hub cache when it is there; otherwise a randomly initialised
trunk of the same architecture (identical cost, meaningless scores) and says so in the table.
Inputs are crops of scikit-image's CC0 textures. CUDA is measured when present.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

# this file is named lpips.py: drop its own folder from the path so `import lpips` finds the package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from detect.quality.diversity import LpipsScorer, as_float_rgb  # noqa: E402
from detect.quality.lpips_backbones import LPIPS_NETS, MissingWeightsError, backbone_path  # noqa: E402


def texture_pairs(n: int, size: int = 256) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n pairs of size×size float RGB crops of brick/grass/gravel."""
    import skimage.data

    sources = [as_float_rgb(getattr(skimage.data, name)()) for name in ("brick", "grass", "gravel")]
    rng = np.random.default_rng(0)
    crops = []
    for k in range(2 * n):
        src = sources[k % 3]
        y, x = rng.integers(0, src.shape[0] - size), rng.integers(0, src.shape[1] - size)
        crops.append(np.ascontiguousarray(src[y : y + size, x : x + size]))
    return crops[:n], crops[n:]


def measure(scorer: LpipsScorer, first, second, seconds: float) -> float:
    """Pairs per second over at least ``seconds`` after one warm-up pass."""
    scorer.distances(first, second)
    if scorer.device.type == "cuda":
        torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        scorer.distances(first, second)
        done += len(first)
    if scorer.device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nets", nargs="+", choices=LPIPS_NETS, default=list(LPIPS_NETS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per cell")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", nargs="+", type=int, default=[torch.get_num_threads()],
                        help="CPU intra-op thread counts to measure (default: torch's default)")
    args = parser.parse_args()

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    import os

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
          + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"))
    print(f"\n| net | trunk weights | device | threads | batch | pairs/s at {args.size}² |")
    print("|---|---|---|---:|---:|---:|")
    random_used = False
    for net in args.nets:
        try:
            backbone_path(net)
            weights, random_backbone = "ImageNet", False
        except MissingWeightsError:
            weights, random_backbone, random_used = "RANDOM (ImageNet file absent)", True, True
        for device, threads in [("cpu", t) for t in args.threads] + [(d, None) for d in devices if d != "cpu"]:
            if threads is not None:
                torch.set_num_threads(threads)
            for batch in args.batch_sizes:
                scorer = LpipsScorer(net, device=device, batch_size=batch, random_backbone=random_backbone)
                first, second = texture_pairs(batch, args.size)
                rate = measure(scorer, first, second, args.seconds)
                shown = threads if threads is not None else "-"
                print(f"| {net} | {weights} | {device} | {shown} | {batch} | {rate:.1f} |", flush=True)
    if random_used:
        print("\nnote: some trunks were randomly initialised because their ImageNet checkpoint is not in "
              f"{Path(torch.hub.get_dir()) / 'checkpoints'}; the timing is the same, the scores are not LPIPS.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
