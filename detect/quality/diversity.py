"""Diversity of a synthetic anomaly dataset: the four LPIPS scores of SYNAGEN's table 1.

For each image of a dataset a random partner is drawn (seeded); the LPIPS distance of every pair is
averaged. The same pairs are scored on four views of each image:

``LPIPS``            the whole images;
``LPIPS□``           the square crop enclosing the anomaly (ground-truth mask), resized to 256×256;
``LPIPS_AbsDiff``    the absolute difference |synthetic − original| (max over channels);
``LPIPS□_AbsDiff``   the square enclosing the non-zero difference pixels, resized to 256×256.

Higher means more diverse. Reference: SYNAGEN section 5 (AlexNet LPIPS, one random pair per image).

Python API: :func:`diversity` over in-memory sequences (lists of arrays, or any lazy sequence),
:func:`diversity_by_group` for per-method scores. ``anomalyforge diversity`` is the command.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from pathlib import Path

import cv2
import numpy as np

from detect.errors import DiversityInputError
from detect.quality.names import LPIPS_NETS, LpipsNet
from detect.runtime import choose_device, guarded, subcommand_main
from synth import arguments
from synth.atomic import write_text_atomic
from synth.errors import SynthError
from synth.image import as_float

if TYPE_CHECKING:  # torch is imported when a scorer is built, so ``--help`` starts at once
    import torch

#: score names exactly as in SYNAGEN table 1 (the JSON keys)
SCORE_NAMES: tuple[str, ...] = ("LPIPS", "LPIPS□", "LPIPS_AbsDiff", "LPIPS□_AbsDiff")
CROP_SIZE = 256
# half a uint8 step: difference pixels above it count as changed (robust to float round-off)
_CHANGED = 0.5 / 255.0


# --------------------------------------------------------------------------- image conversion
def as_float_rgb(image: np.ndarray) -> np.ndarray:
    """An image as float32 HxWx3 in [0, 1] (``synth.image.as_float``, the project's one rule).

    Accepts uint8, uint16, bool or float in [0, 1] arrays, gray (HxW or HxWx1), RGB or RGBA (alpha
    dropped: LPIPS trunks see colour only). Gray is replicated to 3 channels.
    """
    try:
        return as_float(np.asarray(image), channels=3)
    except SynthError as exc:
        raise DiversityInputError(str(exc)) from None


def as_bool_mask(mask: np.ndarray) -> np.ndarray:
    """A mask (bool, 0/1 or 0/255, HxW or HxWx1/3) as bool HxW: any non-zero pixel is anomalous."""
    arr = np.asarray(mask)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.ndim != 2:
        raise DiversityInputError(f"expected an HxW mask, got an array of shape {np.asarray(mask).shape}")
    return arr > 0


def absolute_difference(image: np.ndarray, original: np.ndarray) -> np.ndarray:
    """|image − original| as float32 HxW in [0, 1], the maximum over colour channels.

    Same definition as the dataset's ``diff`` column (dataset-schema.md). Both images must have
    the same height and width.
    """
    a, b = as_float_rgb(image), as_float_rgb(original)
    if a.shape != b.shape:
        raise DiversityInputError(
            f"image {a.shape[:2]} and its original {b.shape[:2]} differ in size; the original must be "
            "the anomaly-free source the image was made from"
        )
    return np.abs(a - b).max(axis=2)


# --------------------------------------------------------------------------- crops and pairs
def enclosing_square(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Smallest square (x0, y0, x1, y1; x1/y1 exclusive) enclosing every True pixel of ``mask``.

    The square is centred on the pixels' bounding box and shifted to lie inside the image. When the
    box is longer than the image's short side, no square fits: the crop then spans the short side
    completely (a rectangle that still encloses the anomaly; resizing to 256×256 stretches it).

    Raises:
        DiversityInputError: the mask has no True pixel.
    """
    m = as_bool_mask(mask)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        raise DiversityInputError("the mask is empty: a crop around the anomaly needs at least one anomalous pixel")
    height, width = m.shape
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    side = max(y1 - y0, x1 - x0)
    x0, x1 = _grow_to(x0, x1, side, width)
    y0, y1 = _grow_to(y0, y1, side, height)
    return x0, y0, x1, y1


def _grow_to(lo: int, hi: int, side: int, limit: int) -> tuple[int, int]:
    """Widen [lo, hi) to ``side`` around its centre, kept inside [0, limit)."""
    side = min(side, limit)
    extra = side - (hi - lo)
    lo -= extra // 2
    lo = min(max(lo, 0), limit - side)
    return lo, lo + side


def square_crop(image: np.ndarray, box: tuple[int, int, int, int], size: int = CROP_SIZE) -> np.ndarray:
    """Crop ``box`` (x0, y0, x1, y1) from a float HxWx3 image and resize it to ``size``×``size``.

    Downscaling uses area averaging (no aliasing), upscaling bicubic (clipped to [0, 1]).
    """
    x0, y0, x1, y1 = box
    crop = image[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if min(crop.shape[:2]) >= size else cv2.INTER_CUBIC
    out = cv2.resize(crop, (size, size), interpolation=interp)
    if out.ndim == 2:
        out = out[..., None].repeat(3, axis=2)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def random_pairs(n_images: int, n_pairs: int | None = None, *, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Seeded random pairs of distinct image indices, int64 array of shape (P, 2).

    With ``n_pairs=None`` every image gets one random partner (P = n_images), as in SYNAGEN;
    otherwise ``n_pairs`` pairs with a uniformly drawn first image. The partner is never the image
    itself. Same seed → same pairs.
    """
    if n_images < 2:
        raise DiversityInputError(f"diversity needs at least 2 images, got {n_images}")
    if n_pairs is not None and n_pairs < 1:
        raise DiversityInputError(f"the number of pairs must be at least 1, got {n_pairs}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    first = np.arange(n_images) if n_pairs is None else rng.integers(0, n_images, size=n_pairs)
    # an offset in 1..n-1 makes the partner differ from the first image, uniformly over the others
    second = (first + rng.integers(1, n_images, size=first.shape[0])) % n_images
    return np.stack([first, second], axis=1).astype(np.int64)


# --------------------------------------------------------------------------- LPIPS over pairs
class LpipsScorer:
    """Batched LPIPS distance between pairs of float32 HxWx3 images in [0, 1].

    Args:
        net: LPIPS trunk (``alex`` default, ``vgg``, ``squeeze``).
        device: torch device, ``None`` = CUDA when present.
        batch_size: pairs per forward pass.
        random_backbone: randomly initialised trunk (benchmarks only; not LPIPS).
    """

    def __init__(
        self,
        net: LpipsNet = "alex",
        *,
        device: str | torch.device | None = None,
        batch_size: int = 16,
        random_backbone: bool = False,
    ) -> None:
        if batch_size < 1:
            raise DiversityInputError(f"batch_size must be at least 1, got {batch_size}")
        self.net = net
        self.device = choose_device(device)
        self.batch_size = batch_size
        self.random_backbone = random_backbone
        from detect.quality.lpips_backbones import load_lpips

        self.model = load_lpips(net, device=self.device, random_backbone=random_backbone)

    def distances(self, first: Sequence[np.ndarray], second: Sequence[np.ndarray]) -> np.ndarray:
        """LPIPS of ``first[k]`` vs ``second[k]`` for every k, float64 array of length K.

        Images of a pair must have the same size; pairs of different sizes may be mixed (they are
        batched by size).
        """
        if len(first) != len(second):
            raise DiversityInputError(f"{len(first)} first images but {len(second)} second images")
        out = np.empty(len(first), dtype=np.float64)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for k, (a, b) in enumerate(zip(first, second)):
            if a.shape != b.shape:
                raise DiversityInputError(f"pair {k}: images of size {a.shape} and {b.shape}; resize them first")
            by_shape.setdefault(a.shape, []).append(k)
        for indices in by_shape.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                out[chunk] = self._batch_distances([first[k] for k in chunk], [second[k] for k in chunk])
        return out

    def _batch_distances(self, first: list[np.ndarray], second: list[np.ndarray]) -> np.ndarray:
        import torch

        from detect.quality.lpips_backbones import to_lpips_batch

        with torch.inference_mode():
            x, y = to_lpips_batch(first, self.device), to_lpips_batch(second, self.device)
            return self.model(x, y).flatten().double().cpu().numpy()


@dataclass(frozen=True)
class DiversityScores:
    """The four LPIPS diversity scores of one dataset (or group), each the mean over ``n_pairs`` pairs.

    ``lpips_absdiff`` and ``lpips_square_absdiff`` are ``None`` when no difference images (and no
    originals to compute them) were given, as for real anomalies.
    """

    lpips: float
    lpips_square: float
    lpips_absdiff: float | None
    lpips_square_absdiff: float | None
    n_images: int
    n_pairs: int
    net: str
    seed: int

    def scores(self) -> dict[str, float | None]:
        """Score name (SYNAGEN notation, :data:`SCORE_NAMES`) -> value."""
        return dict(zip(SCORE_NAMES, (self.lpips, self.lpips_square, self.lpips_absdiff, self.lpips_square_absdiff)))


def diversity(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    diffs: Sequence[np.ndarray] | None = None,
    originals: Sequence[np.ndarray] | None = None,
    n_pairs: int | None = None,
    seed: int = 0,
    net: LpipsNet = "alex",
    image_size: int | None = None,
    scorer: LpipsScorer | None = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    scores: Sequence[str] | None = None,
) -> DiversityScores:
    """The four LPIPS diversity scores of a set of anomaly images.

    Args:
        images: N images with anomalies (any dtype/layout :func:`as_float_rgb` accepts). Any
            sequence works, e.g. a lazy one that decodes on indexing.
        masks: N ground-truth masks (HxW, non-zero = anomalous), same sizes as the images.
        diffs: N difference images |synthetic − original| (HxW; uint8 0–255 or float 0–1), e.g. the
            dataset's ``diff`` column. Takes precedence over ``originals``.
        originals: N anomaly-free source images (``originals[i]`` is the source of ``images[i]``);
            the differences are computed from them when ``diffs`` is not given.
        n_pairs: number of random pairs; ``None`` = one random partner per image (SYNAGEN).
        seed: seeds the pair draw (numpy Generator); same seed → same pairs → same scores.
        net: LPIPS trunk, ``alex`` as in SYNAGEN.
        image_size: resize whole images (and difference images) to ``image_size`` squared before
            ``LPIPS``/``LPIPS_AbsDiff``; ``None`` keeps the native size (a pair of different sizes is
            then scored at the first image's size).
        scorer: a ready :class:`LpipsScorer` (reused across calls); else one is built.
        batch_size, device: for the scorer built here.
        scores: names (from :data:`SCORE_NAMES`) to compute; ``None`` = all four. Others are ``None``.

    Returns:
        :class:`DiversityScores`; the AbsDiff scores are ``None`` without ``diffs``/``originals``.

    Raises:
        DiversityInputError: lengths differ, fewer than 2 images, a mask is empty, sizes mismatch.
        MissingWeightsError: the LPIPS trunk weights are not in the torch hub cache.
    """
    wanted = set(SCORE_NAMES if scores is None else scores)
    if not wanted <= set(SCORE_NAMES):
        raise DiversityInputError(f"unknown scores {sorted(wanted - set(SCORE_NAMES))}; choose from {', '.join(SCORE_NAMES)}")
    n = len(images)
    for name, seq in (("masks", masks), ("diffs", diffs), ("originals", originals)):
        if seq is not None and len(seq) != n:
            raise DiversityInputError(f"{n} images but {len(seq)} {name}; give one per image")
    pairs = random_pairs(n, n_pairs, seed=seed)
    scorer = scorer or LpipsScorer(net, batch_size=batch_size, device=device)

    def load_diff(i: int) -> np.ndarray:
        if diffs is not None:
            d = np.asarray(diffs[i])
            d = d.max(axis=2) if d.ndim == 3 else d
            return as_float_rgb(d)[..., 0]
        assert originals is not None
        return absolute_difference(images[i], originals[i])

    def whole(i: int) -> np.ndarray:
        return _resized(as_float_rgb(images[i]), image_size)

    def square(i: int) -> np.ndarray:
        image = as_float_rgb(images[i])
        mask = as_bool_mask(masks[i])
        if mask.shape != image.shape[:2]:
            raise DiversityInputError(f"image {i} is {image.shape[:2]} but its mask is {mask.shape}")
        try:
            box = enclosing_square(mask)
        except DiversityInputError as exc:
            raise DiversityInputError(f"image {i}: {exc}") from exc
        return square_crop(image, box)

    def absdiff(i: int) -> np.ndarray:
        return _resized(as_float_rgb(load_diff(i)), image_size)

    def square_absdiff(i: int) -> np.ndarray:
        d = load_diff(i)
        changed = d > _CHANGED
        # an image without changed pixels (e.g. rounding removed a faint anomaly) falls back to its mask
        box = enclosing_square(changed) if changed.any() else enclosing_square(as_bool_mask(masks[i]))
        return square_crop(as_float_rgb(d), box)

    has_diffs = diffs is not None or originals is not None
    views = dict(zip(SCORE_NAMES, (whole, square, absdiff, square_absdiff)))
    means = [
        _mean_over_pairs(scorer, view, pairs) if name in wanted and (has_diffs or "AbsDiff" not in name) else None
        for name, view in views.items()
    ]
    return DiversityScores(*means, n_images=n, n_pairs=len(pairs), net=scorer.net, seed=seed)


def diversity_by_group(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    groups: Sequence[str],
    *,
    diffs: Sequence[np.ndarray] | None = None,
    originals: Sequence[np.ndarray] | None = None,
    n_pairs: int | None = None,
    seed: int = 0,
    scorer: LpipsScorer | None = None,
    net: LpipsNet = "alex",
    image_size: int | None = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
) -> dict[str, DiversityScores]:
    """:func:`diversity` within each group (e.g. per ``method``); pairs never cross groups.

    ``groups[i]`` names the group of image i. Groups with fewer than 2 images are left out.
    Returns group name -> scores, sorted by name.
    """
    if len(groups) != len(images):
        raise DiversityInputError(f"{len(images)} images but {len(groups)} group labels")
    scorer = scorer or LpipsScorer(net, batch_size=batch_size, device=device)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(str(g), []).append(i)
    result: dict[str, DiversityScores] = {}
    for name in sorted(members):
        idx = members[name]
        if len(idx) < 2:
            continue
        result[name] = diversity(
            Subset(images, idx),
            Subset(masks, idx),
            diffs=None if diffs is None else Subset(diffs, idx),
            originals=None if originals is None else Subset(originals, idx),
            n_pairs=n_pairs,
            seed=seed,
            scorer=scorer,
            image_size=image_size,
        )
    return result


class Subset(Sequence):
    """View of ``items`` at ``indices`` without loading them (keeps lazy sequences lazy)."""

    def __init__(self, items: Sequence, indices: Sequence[int]) -> None:
        self.items, self.indices = items, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k):  # type: ignore[override]
        return self.items[self.indices[k]]


def _resized(image: np.ndarray, size: int | None, shape: tuple[int, int] | None = None) -> np.ndarray:
    target = (size, size) if size is not None else shape
    if target is None or image.shape[:2] == tuple(target):
        return image
    h, w = target
    interp = cv2.INTER_AREA if image.shape[0] >= h and image.shape[1] >= w else cv2.INTER_CUBIC
    return np.clip(cv2.resize(image, (w, h), interpolation=interp), 0.0, 1.0).astype(np.float32)


def _mean_over_pairs(scorer: LpipsScorer, view: Callable[[int], np.ndarray], pairs: np.ndarray) -> float:
    """Mean LPIPS of ``view(i)`` vs ``view(j)`` over pairs, decoding each image once per chunk."""
    total = 0.0
    chunk = max(scorer.batch_size * 4, 64)
    for start in range(0, len(pairs), chunk):
        part = pairs[start : start + chunk]
        cache: dict[int, np.ndarray] = {}
        for i in np.unique(part):
            cache[int(i)] = view(int(i))
        first = [cache[int(i)] for i in part[:, 0]]
        # a partner of another size is scored at the first image's size
        second = [_resized(cache[int(j)], None, cache[int(i)].shape[:2]) for i, j in part]
        total += float(scorer.distances(first, second).sum())
    return total / len(pairs)


# --------------------------------------------------------------------------- command line
def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``anomalyforge diversity`` to ``subparsers``."""
    parser = subparsers.add_parser(
        "diversity",
        help="LPIPS diversity scores of a synthetic anomaly dataset (SYNAGEN table 1)",
        description=(
            "Mean LPIPS over seeded random pairs of a dataset's images: LPIPS (whole images), LPIPS□ "
            "(256×256 squares around each anomaly), LPIPS_AbsDiff and LPIPS□_AbsDiff (the same on "
            "|synthetic − original|). Reads a Hub dataset (ORG/NAME), a local dataset folder, or a "
            "folder written by `anomalyforge synth` (metadata.jsonl, images/, masks/)."
        ),
    )
    add_dataset_arguments(parser)
    parser.add_argument("--pairs", type=arguments.positive, default=None, metavar="N",
                        help="number of random pairs (default: one random partner per image)")
    parser.add_argument("--seed", type=arguments.seed, default=0, help="seed of the pair draw (default 0)")
    parser.add_argument("--by", default=None, metavar="COLUMN",
                        help="scores per value of this column, e.g. method (pairs stay within a group)")
    parser.add_argument("--net", choices=LPIPS_NETS, default="alex", help="LPIPS trunk (default alex)")
    parser.add_argument("--image-size", type=arguments.integer(8), default=None, metavar="PX",
                        help="resize whole images to PX×PX for LPIPS and LPIPS_AbsDiff (default: native size)")
    parser.add_argument("--batch-size", type=arguments.positive, default=16, help="pairs per forward pass (default 16)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.add_argument("--output", type=Path, default=None, metavar="JSON", help="write the scores to this JSON file")
    parser.set_defaults(func=guarded(run_cli))
    return parser


def add_dataset_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The dataset options shared by ``diversity`` and ``quality``."""
    parser.add_argument("--dataset", required=required, metavar="REPO_OR_DIR",
                        help="Hub dataset id (ORG/NAME), local dataset folder, or `anomalyforge synth` output folder")
    parser.add_argument("--revision", default=None, help="dataset version tag or commit, e.g. v1.0.0")
    parser.add_argument("--split", default="test", help="split with the anomaly images (default test)")
    parser.add_argument("--good-split", default="good",
                        help="split (or config) with the anomaly-free sources (default good)")
    parser.add_argument("--sources", type=Path, default=None, metavar="DIR",
                        help="folder of the anomaly-free sources, for a synth output folder without diff images "
                             "(source_id is the path relative to it)")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``anomalyforge diversity``; returns the exit code."""
    from detect.quality.anomaly_rows import load_anomaly_rows

    rows = load_anomaly_rows(
        args.dataset, revision=args.revision, split=args.split, good_split=args.good_split, sources_dir=args.sources
    )
    scorer = LpipsScorer(args.net, batch_size=args.batch_size, device=args.device)
    common = dict(diffs=rows.diffs, originals=rows.originals, n_pairs=args.pairs, seed=args.seed,
                  scorer=scorer, image_size=args.image_size)
    if args.by:
        grouped = diversity_by_group(rows.images, rows.masks, rows.column(args.by), **common)
        table = {name: s.scores() for name, s in grouped.items()}
        counts = {name: s.n_pairs for name, s in grouped.items()}
    else:
        scores = diversity(rows.images, rows.masks, **common)
        table = {"all": scores.scores()}
        counts = {"all": scores.n_pairs}
    print(format_table(table, counts, by=args.by or "dataset"))
    if rows.diffs is None and rows.originals is None:
        print("AbsDiff scores: n/a (no diff column and no anomaly-free sources found)")
    if args.output is not None:
        payload = table["all"] if not args.by else table
        write_text_atomic(args.output, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.output}")
    return 0


def format_table(table: dict[str, dict[str, float | None]], counts: dict[str, int], *, by: str) -> str:
    """Markdown table: one row per group, one column per score (n/a for missing)."""
    names = list(next(iter(table.values())).keys()) if table else list(SCORE_NAMES)
    lines = [f"| {by} | pairs | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for group, scores in table.items():
        cells = ["n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}" for v in scores.values()]
        lines.append(f"| {group} | {counts.get(group, '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run ``diversity`` on its own (``python -m detect.quality.diversity --dataset ...``)."""
    return subcommand_main(register_cli, "diversity", argv)


if __name__ == "__main__":
    sys.exit(main())
