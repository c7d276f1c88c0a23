"""Stress test: where a detector is blind, measured on a user's own anomaly-free images.

The paper's analysis (recall at k false positives per shape and pixel manipulation against size
bin) needs a labelled dataset; this protocol makes one from a few images of a repetitive texture:

1. each image is cut into ``grid x grid`` tiles; alternate tiles fit the detector, the others are
   the anomaly-free test tiles. The threshold is set on other views of the test tiles, their mirror
   images and turns by 90, 180 and 270 degrees (7 per tile, ``threshold_views``): it lets exactly
   ``k`` of those through, so ``k = 1`` is a false-positive rate of 1 / (7 x test tiles), and the
   test tiles themselves stay the negatives of the AUROC (how many of them the threshold flags is
   reported too). On an oriented texture a turned view may look unusual, which can only raise the
   threshold (fewer false positives, lower recall);
2. ``anomalies`` synthetic anomalies cycle through every shape x mode x size bin of the method on
   the test tiles (seeds ``seed``, ``seed + 1``, ...);
3. ``detect.evaluation.evaluate`` scores both and computes the recall tables, to which this module adds a
   95 % Wilson interval per cell and bootstrap intervals of the image AUROC, and warnings when the
   numbers mean little (the AUROC interval contains 0.5; the image is not a texture; cells with few
   anomalies). The plots put size on the x axis with one line per shape (or mode) only where every
   cell of that line holds at least ``MIN_CELL_ANOMALIES`` anomalies; the other shapes are pooled
   into one line, and the title says which.

The default number of anomalies depends on the device (``default_anomalies``): a GPU scores four
times as many in about the time a CPU takes for the CPU default.

The same protocol runs from Python (``run_stress``), the command line (``anomalyforge stress``)
and the Space's Stress test tab.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from detect.errors import DetectError
from detect.evaluation import uncertainty
from detect.images import as_colour
from detect.runtime import choose_device, guarded, parse_options
from synth import arguments
from synth.atomic import atomic_path, save_figure_atomic, write_text_atomic
from synth.run_lock import claimed_folder

#: modes left out: "texture" pastes from a texture collection the protocol does not have
_NEEDS_TEXTURES = ("texture",)
#: median distance between the tiles' brightness histograms above which an image is no texture
#: (scikit-image's brick, grass, gravel: 0.07-0.12; astronaut, camera, coffee: 0.58-0.76)
TEXTURE_SPREAD_LIMIT = 0.25
#: image AUROC below which the detector is called blind to the anomalies (chance is 0.5)
CHANCE_AUROC = 0.6
#: anomalies a stress test makes by default, per device kind
DEFAULT_ANOMALIES = {"cpu": 240, "cuda": 960}
#: a shape (or mode) gets its own line in the plots only when each of its cells holds this many
MIN_CELL_ANOMALIES = 10


def default_anomalies(device: str | None) -> int:
    """Anomalies a stress test makes when none are asked for on ``device`` (``None``: CUDA when present)."""
    return DEFAULT_ANOMALIES["cuda" if str(choose_device(device)).startswith("cuda") else "cpu"]


class StressInputError(DetectError):
    """The images or settings cannot give a stress test (too few or too small tiles, bad values)."""


@dataclass(frozen=True)
class StressConfig:
    """Settings of one stress test.

    ``anomalies``   anomalies made (cycling through the shape x mode x size-bin cells).
    ``k``           false positives allowed among the anomaly-free test tiles.
    ``grid``        tiles per side of each image.
    ``image_size``  side the detector works at (capped by the tile side).
    ``pixel_size``  long side of the maps the pixel metrics use.
    ``min_side``    smallest tile side accepted, in pixels.
    """

    method: str = "synagen"
    detector: str = "patchcore"
    anomalies: int = DEFAULT_ANOMALIES["cpu"]
    k: int = 1
    seed: int = 0
    grid: int = 4
    image_size: int = 128
    pixel_size: int = 64
    min_side: int = 32

    def __post_init__(self) -> None:
        for name, low in (("anomalies", 1), ("k", 1), ("grid", 2), ("image_size", 32), ("pixel_size", 8),
                          ("min_side", 8), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < low:
                raise StressInputError(f"{name} must be a whole number of at least {low}, got {value!r}")


@dataclass(frozen=True)
class StressResult:
    """What a stress test measured.

    ``tables``    ``"shape_size"`` / ``"mode_size"`` -> pandas DataFrame with the group column,
                  ``size_bin``, ``n``, ``detected``, ``recall`` and its 95 % interval
                  ``recall_low`` / ``recall_high`` (all in [0, 1]).
    ``recall``    overall recall at k; ``recall_interval`` its 95 % Wilson interval.
    ``auroc``     image AUROC (anomalous tiles against anomaly-free tiles), ``auroc_interval`` its
                  95 % Hanley-McNeil interval.
    ``large_auroc``  the same for the anomalies of the two largest size bins only (all anomalies
                  when the method does not steer the size): a detector that cannot tell even
                  those from anomaly-free tiles is at chance level, whatever the curves show.
    ``false_positives``  threshold views above the threshold (k, or fewer on ties), of ``n_threshold``.
    ``negatives_flagged``  anomaly-free test tiles above the threshold.
    ``pooled``    shapes / modes drawn as one pooled line: ``{"shape": (...), "mode": (...)}``.
    ``texture_spread``   median histogram distance between tiles (see ``texture_spread``).
    ``warnings``  plain sentences for a reader: chance-level separation, not a texture.
    ``failures``  reasons of anomalies that could not be made (tiles too small for a bin, ...).
    """

    config: StressConfig
    tables: dict
    recall: float
    recall_interval: tuple[float, float]
    auroc: float
    auroc_interval: tuple[float, float]
    large_auroc: float
    large_auroc_interval: tuple[float, float]
    false_positives: int
    n_fit: int
    n_good: int
    n_anomalies: int
    detector_size: int
    texture_spread: float
    warnings: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    n_threshold: int = 0
    negatives_flagged: int = 0
    evaluation: Any = field(default=None, repr=False, compare=False)

    @property
    def chance_level(self) -> bool:
        """True when the detector does not separate the anomalies from the anomaly-free tiles."""
        return self.large_auroc < CHANCE_AUROC

    def text(self) -> str:
        """A few plain sentences: what was measured, the headline numbers, the warnings."""
        from detect.detectors.external import display_name, is_external

        c = self.config
        used = (f"{display_name(c.detector)} used as given" if is_external(c.detector)
                else f"{c.detector} fitted on {self.n_fit} tiles at {self.detector_size} px")
        lines = [
            f"{used}; {self.n_anomalies} {c.method} anomalies on {self.n_good} anomaly-free test tiles.",
            f"The threshold lets {self.false_positives} of {self.n_threshold} mirrored and turned views of the "
            f"anomaly-free test tiles through (k = {c.k}, a false-positive rate of "
            f"{self.false_positives / self.n_threshold:.1%}); it flags {self.negatives_flagged} of the "
            f"{self.n_good} test tiles themselves.",
            f"Recall {self.recall:.1%} (95 % interval {self.recall_interval[0]:.0%}-{self.recall_interval[1]:.0%}); "
            f"image AUROC {self.auroc:.3f} (95 % interval {self.auroc_interval[0]:.2f}-{self.auroc_interval[1]:.2f}).",
        ]
        if self.failures:
            n = len(self.failures)
            lines.append(f"{n} anomal{'y' if n == 1 else 'ies'} could not be made (e.g. {self.failures[0]}).")
        return "\n".join(lines + [f"Warning: {w}" for w in self.warnings])

    def figures(self) -> dict[str, Any]:
        """``"shape"`` / ``"mode"`` -> matplotlib Figure: recall against size bin with intervals, one
        line per shape (mode) whose cells all hold ``MIN_CELL_ANOMALIES``, the rest pooled."""
        from detect.detectors.external import display_name
        from detect.evaluation.report import plot_recall_by_size

        budget = f"k = {self.config.k}"
        figures = {}
        for by in ("shape", "mode"):
            if f"{by}_size" not in self.tables:
                continue
            table, pooled = pool_small_lines(self.tables[f"{by}_size"], by)
            note = f"; pooled (< {MIN_CELL_ANOMALIES} per cell): {', '.join(pooled)}" if pooled else ""
            figures[by] = plot_recall_by_size(table, by, f"{display_name(self.config.detector)}, {self.config.method}: per {by}, "
                                                         f"{budget}{note}")
        return figures

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers (what ``write`` stores as ``summary.json``)."""
        return {
            "config": self.config.__dict__, "recall": self.recall, "recall_interval": list(self.recall_interval),
            "auroc": self.auroc, "auroc_interval": list(self.auroc_interval),
            "large_auroc": self.large_auroc, "large_auroc_interval": list(self.large_auroc_interval),
            "false_positives": self.false_positives, "n_threshold": self.n_threshold,
            "negatives_flagged": self.negatives_flagged, "n_fit": self.n_fit, "n_good": self.n_good,
            "n_anomalies": self.n_anomalies, "detector_size": self.detector_size,
            "texture_spread": self.texture_spread, "chance_level": self.chance_level,
            "warnings": list(self.warnings), "failures": list(self.failures),
            **({"detector": self.evaluation.summary["detector"]}
               if self.evaluation is not None and isinstance(self.evaluation.summary.get("detector"), dict) else {}),
        }

    def write(self, output_dir: str | Path) -> list[Path]:
        """Write ``summary.json``, ``recall_<table>.csv`` and ``recall_<by>.png``; return the paths."""
        import matplotlib.pyplot as plt

        out = Path(output_dir)
        # summary.json marks complete results: it goes first and comes back last
        (out / "summary.json").unlink(missing_ok=True)
        written = []
        for name, table in self.tables.items():
            with atomic_path(out / f"recall_{name}.csv") as tmp:
                table.to_csv(tmp, index=False)
            written.append(out / f"recall_{name}.csv")
        for by, fig in self.figures().items():
            save_figure_atomic(fig, out / f"recall_{by}.png", dpi=120)
            plt.close(fig)
            written.append(out / f"recall_{by}.png")
        write_text_atomic(out / "summary.json", json.dumps(self.summary(), indent=2, sort_keys=True, default=str) + "\n")
        return [out / "summary.json", *written]


# ------------------------------------------------------------------------------------ pieces
def tiles(image: np.ndarray, grid: int) -> list[np.ndarray]:
    """``grid x grid`` equal tiles of ``image`` (the remainder at the right and bottom is dropped)."""
    height, width = image.shape[0] // grid, image.shape[1] // grid
    return [np.ascontiguousarray(image[r * height:(r + 1) * height, c * width:(c + 1) * width])
            for r in range(grid) for c in range(grid)]


def split_tiles(images: Sequence[np.ndarray], grid: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(fit tiles, anomaly-free test tiles): the tiles of every image, alternately (colour, same dtype)."""
    pool = [t for image in images for t in tiles(as_colour(image), grid)]
    return pool[0::2], pool[1::2]


def texture_spread(parts: Sequence[np.ndarray], bins: int = 16) -> float:
    """Median total-variation distance in [0, 1] between the brightness histograms of ``parts``.

    Near 0 for a repetitive texture (every tile looks alike), large for a photo (sky here, a face
    there): tiles of a photo are not samples of one "normal", and a detector fitted on some of them
    calls the others anomalous.
    """
    hists = []
    for part in parts:
        gray = np.asarray(part, dtype=np.float64)
        gray = gray.mean(axis=2) if gray.ndim == 3 else gray
        top = 65535.0 if np.asarray(part).dtype == np.uint16 else 255.0 if np.asarray(part).dtype == np.uint8 else 1.0
        counts, _ = np.histogram(gray, bins=bins, range=(0.0, top))
        hists.append(counts / max(1, counts.sum()))
    if len(hists) < 2:
        return 0.0
    h = np.array(hists)
    distances = 0.5 * np.abs(h[:, None, :] - h[None, :, :]).sum(axis=2)
    return float(np.median(distances[np.triu_indices(len(h), 1)]))


def wilson_interval(detected: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``detected / n`` (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    interval = uncertainty.wilson(detected, n)
    return interval.low, interval.high


def threshold_views(test_tiles: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The 7 other views of each tile (mirrored left-right and top-bottom, turned by 90, 180 and 270
    degrees, and the two diagonal mirrors): the same texture, not the same pixels."""
    views = []
    for tile in test_tiles:
        for turns in range(4):
            turned = np.rot90(tile, turns)
            views += [turned[:, ::-1]] if turns == 0 else [turned, turned[:, ::-1]]
    return [np.ascontiguousarray(v) for v in views]


def pool_small_lines(table, by: str):
    """(table, pooled names): the rows of ``by`` values with fewer than ``MIN_CELL_ANOMALIES`` anomalies
    in some cell summed into one ``"pooled"`` line per size bin (recall and Wilson interval recomputed)."""
    import pandas as pd

    small = sorted({str(v) for v, part in table.groupby(by) if (part["n"] < MIN_CELL_ANOMALIES).any()})
    if len(small) < 2:
        return table, []
    keep = table[~table[by].astype(str).isin(small)]
    rest = table[table[by].astype(str).isin(small)].groupby("size_bin", as_index=False)[["n", "detected"]].sum()
    rest[by] = "pooled"
    rest["recall"] = rest["detected"] / rest["n"]
    return pd.concat([keep, _with_intervals(rest)], ignore_index=True), small


def stress_axes(method: Any) -> tuple[list[str | None], list[str | None], list[str | None]]:
    """Shapes, modes and size bins a stress test cycles through (``None``: the method draws).

    A mixture of methods (``composite``) draws its own shape and mode: most shape x mode pairs
    belong to none of its members.
    """
    from synth import DEFAULT_BINS

    bins: list[str | None] = [b.name for b in DEFAULT_BINS] if getattr(method, "targets_size", False) else [None]
    if method.composite:
        return [None], [None], bins
    return list(method.shapes), [m for m in method.modes if m not in _NEEDS_TEXTURES], bins


def stress_cells(method: Any) -> list[tuple[str | None, str | None, str | None]]:
    """(shape, mode, size bin) of each anomaly in turn, repeating after the last cell.

    The size bin changes fastest and the shape x mode pairs follow diagonals (each next pair
    changes both), so that any first ``n`` anomalies spread over every size bin and over shapes
    and modes alike -- a short run is a coarse version of a long one, not its first rows.
    """
    shapes, modes, bins = stress_axes(method)
    pairs = sorted(((i, j) for i in range(len(shapes)) for j in range(len(modes))),
                   key=lambda p: ((p[1] - p[0]) % len(modes), p[0]))
    return [(shapes[i], modes[j], b) for i, j in pairs for b in bins]


def make_anomalies(good: Sequence[np.ndarray], config: StressConfig) -> tuple[list[dict], list[str]]:
    """(test rows for ``detect.evaluation.evaluate``, failure reasons): ``config.anomalies`` anomalies cycling
    through the cells, each on the next test tile."""
    from synth import SynthError, get_method, synthesize

    cells = stress_cells(get_method(config.method))
    rows, failures = [], []
    for j in range(config.anomalies):
        shape, mode, size_bin = cells[j % len(cells)]
        try:
            anomaly = synthesize(good[(j // len(cells) + j) % len(good)], config.method, seed=config.seed + j,
                                 shape=shape, mode=mode, size_bin=size_bin)
        except SynthError as exc:
            failures.append(str(exc))
            continue
        rows.append({"image": anomaly.image, "mask": anomaly.mask, **anomaly.record})
    return rows, failures


def _with_intervals(table):
    table = table.copy()
    intervals = [wilson_interval(int(d), int(n)) for d, n in zip(table["detected"], table["n"])]
    table["recall_low"] = [low for low, _ in intervals]
    table["recall_high"] = [high for _, high in intervals]
    return table


# ------------------------------------------------------------------------------------ protocol
def run_stress(images: Sequence[np.ndarray], config: StressConfig = StressConfig(), *, detectors=None,
               device: str | None = None, progress: bool = False,
               detector_options: dict[str, Any] | None = None) -> StressResult:
    """Run the stress test on anomaly-free ``images`` (arrays as ``synth`` reads them).

    ``detectors`` a ``detect.registry.FittedDetectors`` to reuse fitted detectors (a web app);
    ``device`` where the detector runs (default: CUDA when present); ``detector_options`` passed
    to the detector (e.g. ``{"normalize": "imagenet"}`` for an ``onnx:`` model). An external
    detector (``onnx:PATH``, ...) is used as given: the fit tiles then only fit a ``python:``
    object that has ``fit``.
    """
    import hashlib

    from synth import get_method, method_names

    from detect.evaluation.evaluate import evaluate
    from detect.registry import DETECTORS, FittedDetectors, known_detector

    if not images:
        raise StressInputError("no images: give one or more anomaly-free images of a repetitive texture")
    if config.method not in method_names():
        raise StressInputError(f"unknown method {config.method!r}; choose from {', '.join(method_names())}")
    if not known_detector(config.detector):
        raise StressInputError(f"unknown detector {config.detector!r}; choose from {', '.join(DETECTORS)}, or "
                               "name your own (onnx:PATH, torchscript:PATH, anomalib:PATH, python:FILE.py:NAME)")
    get_method(config.method)  # options it cannot build with fail here, before any work
    fit, good = split_tiles(images, config.grid)
    side = min(min(t.shape[:2]) for t in fit + good)
    if side < config.min_side or len(good) <= config.k:
        raise StressInputError(
            f"the images give {len(good)} anomaly-free test tiles of {side} px; k = {config.k} needs more than "
            f"{config.k} tiles of at least {config.min_side} px: give more or larger images (or a smaller grid)")
    rows, failures = make_anomalies(good, config)
    if not rows:
        raise StressInputError(f"no anomaly could be made: {failures[0]}")
    size = min(config.image_size, side)
    digest = hashlib.sha256()
    for tile in fit:
        digest.update(np.ascontiguousarray(tile).tobytes())
    device = str(choose_device(device))
    cache = detectors if detectors is not None else FittedDetectors(capacity=1)
    detector = cache.get(config.detector, digest.hexdigest()[:16], fit, device=device, image_size=size,
                         **(detector_options or {}))
    views = threshold_views(good)
    evaluation = evaluate(rows, list(good), detector, ks=(config.k,), table_k=config.k,
                          pixel_size=config.pixel_size, progress=progress, threshold_images=views)
    summary = evaluation.summary
    k = str(config.k)
    made = len(rows)
    detected = int(evaluation.samples[f"detected_k{config.k}"].sum())
    auroc = float(summary["image_auroc"])
    spread = texture_spread(fit + good)
    large_auroc, large_interval = _large_auroc(evaluation)
    result = StressResult(
        config=config,
        tables={name: _with_intervals(evaluation.tables[name]) for name in ("shape_size", "mode_size")
                if name in evaluation.tables},
        recall=float(summary["recall_at_k"][k]),
        recall_interval=wilson_interval(detected, made),
        auroc=auroc,
        auroc_interval=tuple(summary["intervals"]["image_auroc"]),
        large_auroc=large_auroc,
        large_auroc_interval=large_interval,
        false_positives=int(summary["false_positives_at_k"][k]),
        n_threshold=len(views), negatives_flagged=int(summary["negatives_flagged_at_k"][k]),
        n_fit=len(fit), n_good=len(good), n_anomalies=made, detector_size=size,
        texture_spread=spread,
        failures=tuple(failures),
        evaluation=evaluation,
    )
    return replace(result, warnings=_warnings(result))


def _large_auroc(evaluation) -> tuple[float, tuple[float, float]]:
    from detect.evaluation import metrics
    from detect.evaluation.report import size_bin_order

    samples = evaluation.samples
    scores = samples["score"].to_numpy(dtype=float)
    if "size_bin" in samples and samples["size_bin"].notna().all():
        largest = sorted(set(samples["size_bin"]), key=size_bin_order)[-2:]
        scores = samples.loc[samples["size_bin"].isin(largest), "score"].to_numpy(dtype=float)
    good = evaluation.good["score"].to_numpy(dtype=float)
    interval = uncertainty.bootstrap_interval(good, scores)
    return float(metrics.image_auroc(good, scores)), (interval.low, interval.high)


def _warnings(result: StressResult) -> tuple[str, ...]:
    notes = []
    if result.chance_level:
        notes.append(
            f"chance level: the detector does not tell even the largest anomalies from anomaly-free tiles "
            f"(image AUROC {result.large_auroc:.2f}, 95 % interval {result.large_auroc_interval[0]:.2f}-"
            f"{result.large_auroc_interval[1]:.2f}; 0.5 is a coin toss), so the recall curves say nothing "
            "about shapes or sizes.")
    low, high = result.auroc_interval
    if low <= 0.5 <= high:
        notes.append(f"the image AUROC's 95 % interval ({low:.2f}-{high:.2f}) contains 0.5: over all anomalies the "
                     "detector may be no better than a coin toss; make more anomalies or give more images.")
    if result.texture_spread > TEXTURE_SPREAD_LIMIT:
        notes.append(
            f"the tiles differ a lot from each other (histogram distance {result.texture_spread:.2f}, textures "
            f"stay below {TEXTURE_SPREAD_LIMIT}): this looks like a photo or a mix of different kinds of image, "
            "not a repetitive texture, so anomaly-free tiles are not alike and the threshold is set by the most "
            "unusual one.")
    small = min((int(n) for t in result.tables.values() for n in t["n"]), default=0)
    if small < MIN_CELL_ANOMALIES:
        notes.append(f"some cells hold only {small} anomalies: the plots pool the shapes and modes with fewer than "
                     f"{MIN_CELL_ANOMALIES} per cell into one line; read the shaded 95 % intervals, not single points.")
    return tuple(notes)


# ------------------------------------------------------------------------------------------ CLI
def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``anomalyforge stress`` to ``subparsers``."""
    defaults = StressConfig()
    parser = subparsers.add_parser(
        "stress",
        help="recall at k false positives per shape, mode and size on your own texture images",
        description=(
            "Cut anomaly-free images of a repetitive texture into tiles, fit a detector on half of them, "
            "make synthetic anomalies on the others and report recall at k false positives per shape and "
            "pixel manipulation against size bin, with 95 % intervals and warnings when the result is at "
            "chance level."),
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="anomaly-free images")
    parser.add_argument("--method", default=defaults.method, help=f"synthesis method (default {defaults.method})")
    parser.add_argument("--detector", default=defaults.detector, help=f"detector (default {defaults.detector})")
    parser.add_argument("--anomalies", type=arguments.positive, default=None,
                        help="anomalies to make (default: " + ", ".join(f"{n} on {kind}" for kind, n in DEFAULT_ANOMALIES.items())
                             + ")")
    parser.add_argument("--k", type=arguments.non_negative, default=defaults.k, help="false positives allowed (default 1)")
    parser.add_argument("--seed", type=arguments.seed, default=defaults.seed, help="first seed (default 0)")
    parser.add_argument("--grid", type=arguments.positive, default=defaults.grid, help="tiles per side (default 4)")
    parser.add_argument("--image-size", type=arguments.integer(8), default=defaults.image_size,
                        help=f"side the detector works at (default {defaults.image_size})")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="detector option, e.g. normalize=imagenet or higher_is_normal=true (repeatable)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow anomalib:model.pt (a pickle: loading it runs code from the file)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.add_argument("--output", type=Path, default=None, metavar="DIR",
                        help="write summary.json, recall tables (CSV) and plots (PNG) here")
    parser.set_defaults(func=guarded(_run_cli))
    return parser


def _run_cli(args: argparse.Namespace) -> int:
    if args.output is None:
        return _stress_cli(args)
    with claimed_folder(args.output, recursive=True):  # a run owns the folder it writes
        return _stress_cli(args)


def _stress_cli(args: argparse.Namespace) -> int:
    from synth import InvalidImageError, load_image

    try:
        images = [load_image(path) for path in args.images]
        anomalies = args.anomalies if args.anomalies is not None else default_anomalies(args.device)
        config = StressConfig(method=args.method, detector=args.detector, anomalies=anomalies, k=args.k,
                              seed=args.seed, grid=args.grid, image_size=args.image_size)
        options = parse_options(args.option)
        if args.trust_pickle:
            options["trust_pickle"] = True
        result = run_stress(images, config, device=args.device, detector_options=options)
    except InvalidImageError as exc:  # reported like every other bad input of the command
        raise StressInputError(str(exc)) from None
    print(result.text())
    for name, table in result.tables.items():
        print(f"\n{name}:\n" + table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.output is not None:
        for path in result.write(args.output):
            print(f"wrote {path}")
    return 0
