"""PatchCore's coreset selections side by side: time, coverage radius and image/pixel AUROC.

    python benchmarks/coreset.py                       # both reduced MVTec categories in /work/shared/data
    python benchmarks/coreset.py --dataset /path/to/mvtec/hazelnut --fit-images 476 --cache /tmp/coreset

For each MVTec AD-layout folder, PatchCore's features of ``train/good`` (grown to ``--fit-images`` by
rotations and flips when asked, so a reduced folder can stand in for a full one for timing) are
extracted once; then each selection keeps ``--ratio`` of the patches:

* ``greedy, full pass``: greedy k-center over all patches, one pass over all of them per centre
  (``greedy_coreset(lazy=False)``, the textbook loop);
* ``greedy, lazy`` (PatchCore's default): the same selection with lazy block updates
  (``greedy_coreset``);
* ``parts of N``: greedy k-center part by part (``partitioned_coreset``, ``coreset_part=N``).

Each bank scores the folder's test images. Printed per selection: selection time, the time of the
coverage radius (largest distance from a fit patch to its nearest bank patch, in the feature space) as
the fit measures it, the radius, image AUROC, pixel AUROC and AUPRO with 95 % bootstrap intervals over
the test images, and the sample sizes. Then, per selection, the ways to measure the radius
(``PatchCore(coverage=...)``): every fit patch measured (``coverage_radius`` without a cover; the
fit's pass before the bounded one), the bounded exact pass (``coverage="exact"``: only the patches
whose cover could be the farthest, and how many) and ``coverage="sample"`` (a lower bound), each with
its time; last, the lazy selection's time with one torch thread against all of them.
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

from detect.detectors import patchcore
from detect.detectors.patchcore import (COVERAGE_SAMPLE, PatchCore, bounded_coverage_radius, coreset_with_cover,
                                        greedy_coreset, sampled_coverage_radius)
from detect.evaluation import metrics, uncertainty
from detect.evaluation.defect_sets import read_defect_set

REDUCED = Path("/work/shared/data/mvtec-ad-reduced")


def grown(images: list[np.ndarray], n: int) -> list[np.ndarray]:
    """``n`` images: the originals, then rotated and flipped variants, in a fixed order."""
    out = []
    for k in range(n):
        image, t = images[k % len(images)], k // len(images)
        image = np.rot90(image, t % 4)
        if (t // 4) % 2:
            image = image[:, ::-1]
        out.append(np.ascontiguousarray(image))
    return out


def fit_features(detector: PatchCore, images: list[np.ndarray]) -> torch.Tensor:
    """The fit patches ``(M, D)`` PatchCore selects its memory bank from."""
    with torch.no_grad():
        chunks = []
        for batch in detector._fit_batches(images, False):
            f = detector._features(batch)
            chunks.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
    return torch.cat(chunks)


def select(name: str, patches: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The kept rows and their cover (none for the full pass, which keeps no bookkeeping of it)."""
    if name == "full":
        return greedy_coreset(patches, size, seed=seed, lazy=False), None
    return coreset_with_cover(patches, size, part=None if name == "lazy" else int(name), seed=seed)


def label(name: str) -> str:
    return {"full": "greedy, full pass", "lazy": "greedy, lazy (default)"}.get(name, f"parts of {name}")


def interval(value: float, iv: uncertainty.Interval) -> str:
    return f"{value:.3f} [{iv.low:.3f}, {iv.high:.3f}]"


def timed(work):
    t0 = time.perf_counter()
    value = work()
    return value, time.perf_counter() - t0


def radius_row(set_name: str, name: str, patches: torch.Tensor, index: torch.Tensor, cover: torch.Tensor | None,
               args: argparse.Namespace) -> str:
    """One row of the radius table: every patch measured, the bounded exact pass, and the sample."""
    full = "not run" if args.skip_full_radius else "{1:.1f} ({0[0]:.3f})".format(
        *timed(lambda: bounded_coverage_radius(patches, index, None)))
    bounded = measured = "n/a (no cover)"
    if cover is not None:
        (radius, n), seconds = timed(lambda: bounded_coverage_radius(patches, index, cover))
        bounded, measured = f"{seconds:.1f} ({radius:.3f})", f"{n} of {patches.shape[0]}"
    sample = min(COVERAGE_SAMPLE, patches.shape[0])
    lower, seconds = timed(lambda: sampled_coverage_radius(patches, index, sample, args.seed))
    return f"| {set_name} | {label(name)} | {full} | {bounded} | {measured} | {seconds:.1f} (>= {lower:.3f}) |"


def category_rows(root: Path, args: argparse.Namespace) -> tuple[str, list[str], list[str], dict[str, float]]:
    """The header line, the table rows of one folder, its radius rows, and the lazy selection's time
    per thread count."""
    ds = read_defect_set(root)
    detector = PatchCore(image_size=args.size, coreset_ratio=args.ratio, seed=args.seed)
    train = ds.load_images(ds.train_good)
    images = grown(train, args.fit_images) if args.fit_images else train
    tag = f"{ds.name}_{len(images)}_{args.size}"
    cache = Path(args.cache) if args.cache else None
    features_file = cache / f"features_{tag}.pt" if cache else None
    if features_file is not None and features_file.is_file():
        patches = torch.load(features_file)
    else:
        patches = fit_features(detector, images)
        if features_file is not None:
            cache.mkdir(parents=True, exist_ok=True)
            torch.save(patches, features_file)
    size = int(round(args.ratio * patches.shape[0]))
    good, defects = ds.load_images(ds.test_good), ds.load_images(ds.test_defects)
    masks = [s.load_mask() for s in ds.test_defects] + [np.zeros(g.shape[:2], bool) for g in good]
    detector.channels, detector.fit_size = 3, (args.size, args.size)
    header = (f"{ds.name}: n = {len(images)} fit images ({len(train)} in train/good) at {args.size}x{args.size}, "
              f"{patches.shape[0]} patches, bank {size} ({args.ratio:.0%}); test: {len(defects)} defect and "
              f"{len(good)} good images")
    rows, radius_rows = [], []
    for name in args.selections.split(","):
        if args.skip_full and name == "full":
            continue
        (index, cover), seconds = timed(lambda: select(name, patches, size, args.seed))
        (radius, _), radius_seconds = timed(lambda: bounded_coverage_radius(patches, index, cover))
        detector.memory_bank, detector._bank_sq = patches[index].contiguous(), None
        bad, ok = detector.score(defects), detector.score(good)
        maps = bad.maps + ok.maps
        image = uncertainty.image_intervals(ok.scores, bad.scores)["image_auroc"]
        pixel = uncertainty.pixel_intervals(uncertainty.pixel_histograms(maps, masks),
                                            [True] * len(defects) + [False] * len(good))
        rows.append(f"| {ds.name} | {label(name)} | {seconds:.1f} | {radius_seconds:.1f} | {radius:.3f} | "
                    f"{interval(metrics.image_auroc(ok.scores, bad.scores), image)} | "
                    f"{interval(metrics.pixel_auroc(maps, masks), pixel['pixel_auroc'])} | "
                    f"{interval(metrics.aupro(maps, masks), pixel['aupro'])} |")
        print(rows[-1], file=sys.stderr, flush=True)
        radius_rows.append(radius_row(ds.name, name, patches, index, cover, args))
        print(radius_rows[-1], file=sys.stderr, flush=True)
    threads = {}
    reduced, gen = patchcore._projected(patches, 128, args.seed)
    first = int(torch.randint(reduced.shape[0], (1,), generator=gen))
    for n in sorted({1, torch.get_num_threads()}) if args.thread_timing else ():
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        t0 = time.perf_counter()
        patchcore._greedy(reduced, size, first)
        threads[n] = time.perf_counter() - t0
        print(f"{ds.name}: lazy selection with {n} thread(s): {threads[n]:.1f} s", file=sys.stderr, flush=True)
        torch.set_num_threads(before)
    return header, rows, radius_rows, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", action="append", default=None,
                        help=f"an MVTec AD-layout folder (repeatable; default: every folder in {REDUCED})")
    parser.add_argument("--fit-images", type=int, default=0, help="grow train/good to this many images (0: as is)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--selections", default="lazy,4096,full", help="lazy, full and/or part sizes")
    parser.add_argument("--skip-full", action="store_true", help="leave out the full-pass selection (slow)")
    parser.add_argument("--skip-full-radius", action="store_true",
                        help="leave out the radius pass that measures every fit patch (slow)")
    parser.add_argument("--no-thread-timing", dest="thread_timing", action="store_false",
                        help="leave out the 1-thread / all-threads timing of the lazy selection")
    parser.add_argument("--cache", default=None, help="folder keeping the features between runs")
    args = parser.parse_args()
    roots = [Path(d) for d in args.dataset] if args.dataset else sorted(p for p in REDUCED.iterdir() if p.is_dir())
    headers, rows, radius_rows, threads = [], [], [], []
    for root in roots:
        header, category, radii, timing = category_rows(root, args)
        headers.append(header)
        rows += category
        radius_rows += radii
        threads.append((root.name, timing))
    print("\n".join(headers))
    print(f"seed {args.seed}; [low, high]: 95 % bootstrap intervals over the test images; {torch.get_num_threads()} threads\n")
    print("| set | selection | selection [s] | radius, exact [s] | coverage radius | image AUROC | pixel AUROC | AUPRO |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nCoverage radius, seconds (radius): every fit patch measured, the bounded exact pass "
          f"(coverage='exact') and a sample of {COVERAGE_SAMPLE} fit patches (coverage='sample', a lower bound)\n")
    print("| set | selection | every patch [s] | bounded exact [s] | patches measured | sample [s] |")
    print("|---|---|---|---|---|---|")
    print("\n".join(radius_rows))
    print("\n| set | lazy selection, 1 thread [s] | all threads [s] |")
    print("|---|---|---|")
    for name, timing in threads if args.thread_timing else ():
        print(f"| {name} | {timing[1]:.1f} | {timing[max(timing)]:.1f} |")


if __name__ == "__main__":
    main()
