"""Cost of the training-time transform ``synth.transforms.BatchSynthesize`` per batch.

    python benchmarks/transforms.py [--batch 16] [--size 256] [--p 0.8] [--repeats 6]
                                    [--methods synagen cutpaste nsa] [--device cpu]

A batch of ``--batch`` different crops of the brick/grass/gravel textures (uint8 RGB,
``--size``²) goes through one transform ``--repeats`` times after a warm-up call; equal batches,
so each call's specs and plans are staged while the previous one renders. Rows per method: wall
seconds and CPU seconds of this process per batch (median over the calls), anomalies per second.
With ``--threads 1`` (default) torch and the plan pool use one thread each, so CPU seconds
measure the work itself and stay comparable on a machine that is busy with other things; wall
seconds need an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import skimage.data
import torch

from synth.transforms import BatchSynthesize


def _images(batch: int, size: int) -> torch.Tensor:
    textures = [getattr(skimage.data, name)() for name in ("brick", "grass", "gravel")]
    side = min(min(t.shape[:2]) for t in textures)
    stack = np.ascontiguousarray(np.stack([t[:side, :side] for t in textures], axis=2))
    crops = []
    for k in range(batch):
        y, x = (37 * k) % (side - size + 1), (53 * k) % (side - size + 1)
        crops.append(torch.from_numpy(stack[y : y + size, x : x + size].copy()).permute(2, 0, 1))
    return torch.stack(crops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--p", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--methods", nargs="+", default=["synagen", "cutpaste", "nsa"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads and plan threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = _images(args.batch, args.size).to(args.device)
    print(f"BatchSynthesize, {args.batch} images of {args.size}² uint8 RGB, p = {args.p}, {args.threads} thread(s), "
          f"{args.device}, median of {args.repeats} calls")
    print("| method | wall s / batch | CPU s / batch | anomalies / s (wall) |")
    print("|---|---|---|---|")
    for method in args.methods:
        transform = BatchSynthesize(method, p=args.p, seed=0, size_bin=2, prep_threads=args.threads)
        transform(images)  # warm-up: caches, and the first staged batch
        walls, cpus, made = [], [], 0
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            _, _, records = transform(images)
            if images.device.type == "cuda":
                torch.cuda.synchronize()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            made += sum(r is not None for r in records)
        wall_s = statistics.median(walls)
        print(f"| {method} | {wall_s:.3f} | {statistics.median(cpus):.3f} | {made / sum(walls):.0f} |")


if __name__ == "__main__":
    main()
