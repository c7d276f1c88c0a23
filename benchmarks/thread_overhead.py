"""CPU seconds and wall seconds of small batched linear algebra and training steps, per torch thread count.

    python benchmarks/thread_overhead.py --dataset /path/to/mvtec/transistor --threads 1,2

Rows: PaDiM's batched ``cholesky_inverse`` of (P, 100, 100) covariances, a whole PaDiM fit on the
folder's ``train/good`` (``--fit-images`` of them at ``--size``), and one segmenter training step
(mean of ``--steps``). ``torch.set_num_threads(N)`` sets the threads the caller asks for; the code
may run a part with fewer (``detect.runtime.FASTEST_THREADS``): run this on two commits to compare.
CPU seconds (``time.process_time``) count the work of every thread, spinning included, so they stay
meaningful on a busy machine where wall seconds do not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np
import torch

from detect.evaluation.defect_sets import read_defect_set
from detect.registry import build_detector


def measure(work) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``work()``."""
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return time.process_time() - cpu, time.perf_counter() - wall


def cholesky_inverse(positions: int) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(positions, 200, 100, generator=generator)
    covariance = x.transpose(1, 2) @ x / 200 + 0.01 * torch.eye(100)
    torch.cholesky_inverse(torch.linalg.cholesky(covariance))


def padim_fit(images: list[np.ndarray], size: int) -> None:
    build_detector("padim", image_size=size).fit(images)


def training_steps(images: list[np.ndarray], size: int, steps: int) -> None:
    from detect.training.synthetic_training import train_on_synthetic

    detector = build_detector("segmenter", methods=("cutpaste",), steps=steps, image_size=size, seed=0)
    train_on_synthetic(detector, detector.prepare_fit(images), progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="MVTec AD-layout folder (its train/good is used)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--fit-images", type=int, default=20)
    parser.add_argument("--positions", type=int, default=1024, help="P of the (P, 100, 100) batch")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    ds = read_defect_set(args.dataset)
    images = ds.load_images(ds.train_good[: args.fit_images])
    rows = {
        f"cholesky_inverse ({args.positions}, 100, 100)": lambda: cholesky_inverse(args.positions),
        f"PaDiM fit, {len(images)} images at {args.size} px": lambda: padim_fit(images, args.size),
        f"segmenter training step at {args.size} px (mean of {args.steps})": lambda: training_steps(images, args.size, args.steps),
    }
    counts = [int(t) for t in args.threads.split(",")]
    print(f"torch {torch.__version__}, load average {__import__('os').getloadavg()[0]:.1f}")
    print("| work | " + " | ".join(f"{t} thread(s): CPU s / wall s" for t in counts) + " |")
    print("|---|" + "---|" * len(counts))
    for name, work in rows.items():
        cells = []
        for threads in counts:
            torch.set_num_threads(threads)
            cpu, wall = measure(work)
            if "step" in name:
                cpu, wall = cpu / args.steps, wall / args.steps
            cells.append(f"{cpu:.2f} / {wall:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
