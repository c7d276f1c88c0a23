"""PatchCore's coreset: exact greedy selection against the part-by-part selection, time and AUROC.

    python benchmarks/patchcore_coreset.py --dataset /path/to/mvtec/hazelnut --fit-images 476
    python benchmarks/patchcore_coreset.py --dataset ... --parts 2048,4096 --cache /tmp/coreset

The fit set is the folder's ``train/good`` grown to ``--fit-images`` by rotations, flips and shifted
crops (so a reduced folder can stand in for a full one); every image is resized to ``--size``.
Features are extracted once; then each selection (``exact`` = ``greedy_coreset`` over all patches,
``N`` = ``partitioned_coreset`` with parts of N patches) builds a memory bank of
``--ratio`` of the patches, and the folder's test images are scored with it. Prints selection time,
image AUROC, pixel AUROC and AUPRO (full resolution), and the largest relative change of an image
score against the exact bank. The exact selection takes tens of minutes at 476 images;
``--cache DIR`` keeps features and selections between runs.
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

from detect.detectors.patchcore import PatchCore, greedy_coreset, partitioned_coreset
from detect.evaluation import metrics
from detect.evaluation.defect_sets import read_defect_set


def grown(images: list[np.ndarray], n: int) -> list[np.ndarray]:
    """``n`` images: the originals, then rotated / flipped / shifted-crop variants, in a fixed order."""
    out = []
    k = 0
    while len(out) < n:
        image, t = images[k % len(images)], k // len(images)
        image = np.rot90(image, t % 4)
        if (t // 4) % 2:
            image = image[:, ::-1]
        if t >= 8:
            shift = 8 * (t - 7)
            image = image[shift:, shift:]
        out.append(np.ascontiguousarray(image))
        k += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="an MVTec AD-layout folder")
    parser.add_argument("--fit-images", type=int, default=476)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--parts", default="2048,4096", help="part sizes to compare (comma separated)")
    parser.add_argument("--no-exact", action="store_true", help="skip the exact selection")
    parser.add_argument("--cache", default=None, help="folder keeping features and selections between runs")
    args = parser.parse_args()

    ds = read_defect_set(args.dataset)
    detector = PatchCore(image_size=args.size, coreset_ratio=args.ratio)
    cache = Path(args.cache) if args.cache else None
    tag = f"{ds.name}_{args.fit_images}_{args.size}"
    features_file = cache / f"features_{tag}.pt" if cache else None
    if features_file is not None and features_file.is_file():
        patches = torch.load(features_file)
    else:
        t0 = time.perf_counter()
        with torch.no_grad():
            chunks = []
            for batch in detector._fit_batches(grown(ds.load_images(ds.train_good), args.fit_images), False):
                f = detector._features(batch)
                chunks.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
        patches = torch.cat(chunks)
        print(f"features of {args.fit_images} images: {patches.shape[0]} patches in {time.perf_counter() - t0:.1f} s")
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            torch.save(patches, features_file)
    size = int(round(args.ratio * patches.shape[0]))
    good = ds.load_images(ds.test_good)
    defects = ds.load_images(ds.test_defects)
    masks = [s.load_mask() for s in ds.test_defects] + [np.zeros(g.shape[:2], bool) for g in good]

    rows, reference = [], None
    selections = ([] if args.no_exact else ["exact"]) + [int(p) for p in args.parts.split(",") if p.strip()]
    for selection in selections:
        index_file = cache / f"coreset_{tag}_{selection}.pt" if cache else None
        seconds = float("nan")
        if index_file is not None and index_file.is_file():
            index = torch.load(index_file)
        else:
            t0 = time.perf_counter()
            if selection == "exact":
                index = greedy_coreset(patches, size, seed=0)
            else:
                index = partitioned_coreset(patches, size, part=selection, seed=0)
            seconds = time.perf_counter() - t0
            if index_file is not None:
                torch.save(index, index_file)
        detector.memory_bank, detector._bank_sq = patches[index].contiguous(), None
        detector.channels, detector.fit_size = 3, (args.size, args.size)
        bad, ok = detector.score(defects), detector.score(good)
        scores = np.r_[bad.scores, ok.scores]
        if reference is None:
            reference = scores
        rows.append((selection, seconds, metrics.image_auroc(ok.scores, bad.scores),
                     metrics.pixel_auroc(bad.maps + ok.maps, masks), metrics.aupro(bad.maps + ok.maps, masks),
                     float(np.max(np.abs(scores - reference) / np.abs(reference)))))
    print(f"\n{ds.name}: {args.fit_images} fit images at {args.size}x{args.size}, {patches.shape[0]} patches, "
          f"bank {size} ({args.ratio:.0%}); test: {len(defects)} defects, {len(good)} good; "
          f"{torch.get_num_threads()} threads")
    print("| selection | time [s] | image AUROC | pixel AUROC | AUPRO | max rel. score change |")
    print("|---|---|---|---|---|---|")
    for selection, seconds, auroc, pauroc, pro, change in rows:
        name = "exact greedy" if selection == "exact" else f"parts of {selection}"
        print(f"| {name} | {seconds:.1f} | {auroc:.3f} | {pauroc:.4f} | {pro:.4f} | {change:.4f} |")


if __name__ == "__main__":
    main()
