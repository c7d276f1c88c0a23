"""Evaluate a detector on a published anomaly dataset: what does it miss, by size, shape, mode?

Command line (any of)::

    accelerate launch -m detect.evaluation.evaluate --dataset org/name --revision v1.0.0 \\
        --detector patchcore --fit path/to/train/good --output results/
    python -m detect.evaluation.evaluate ...            # one process (CPU or the first GPU)
    anomalyforge evaluate ...

Several CPU processes: ``accelerate launch --multi_gpu --num_processes 2 -m detect.evaluation.evaluate ...``
(or ``torchrun --nproc_per_node 2 -m detect.evaluation.evaluate ...``); without GPUs the processes talk over
gloo. (``accelerate launch --cpu --num_processes N`` starts N processes only through MPI.) Scores
are bit-identical for any number of processes given the same threads per process: on CPU, set
``OMP_NUM_THREADS`` the same for both runs, because float sums depend on the thread count.

Steps: read the ``test`` (synthetic anomalies) and ``good`` (anomaly-free sources) splits; fit the
detector on ``--fit`` (a folder of anomaly-free images, or a split of a dataset: ``--fit-split``,
default ``train``; fitting on the ``good`` split of the evaluated dataset is refused because those
images set the false-positive threshold) or load one with ``--detector-file``; score every image,
each process taking a strided share of fixed batches (so results do not depend on the number of
processes); gather; compute the metrics of ``detect.evaluation.metrics``; write to ``--output``:

* ``scores.parquet``   one row per image (split, score, ``detected_k{K}``, all metadata columns);
* ``summary.json``     ``recall_at_k`` (k -> recall), thresholds, image/pixel AUROC and AP, AUPRO;
* ``recall_*.csv``/``.md``  recall per shape x size bin, mode x size bin, method, |brightness| bin, k;
* ``recall_*.png``     the plots of the SYNAGEN paper (Figs. 5, 6, 7);
* ``detector.pt``      the fitted detector (reload with ``detect.load_detector``).

``evaluate(test_rows, good_images, detector)`` does the same on in-memory data and returns an
``Evaluation`` (used by the app's stress-test tab).

Your own detector (``detect.detectors.external``): ``--detector onnx:PATH`` / ``torchscript:PATH`` /
``anomalib:PATH`` / ``python:FILE.py:NAME`` is used as given (nothing fitted or saved; a ``python:``
object with ``fit`` is fitted like a built-in detector), ``--scores FILE`` reads scores computed
elsewhere, matched to the rows by file name. ``summary.json``'s ``detector`` is then a block naming
the file, its size and sha256, and the input and outputs used.

Real defects: ``--dataset`` may be an MVTec AD, BTAD or VisA folder (``detect.evaluation.defect_sets``). Then
the detector is fitted on its ``train/good`` unless ``--fit`` says otherwise, ``test/good`` sets the
thresholds unless ``--good DIR`` does, pixel metrics are measured at full resolution unless
``--pixel-size`` says otherwise, and ``recall_defect.csv``/``.md`` holds recall, image AUROC, pixel
AUROC and AUPRO per defect class. In Python: ``evaluate_defect_set(read_defect_set(root), detector)``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from detect.errors import DetectError, InvalidImagesError, MetricInputError
from detect.evaluation import metrics, report, uncertainty
from detect.evaluation.dataset import GOOD_SPLIT, decode, load_dataset_dict, load_evaluation_splits, metadata_frame
from detect.runtime import make_accelerator, parse_options, script_main
from synth import arguments
from synth.atomic import atomic_path, write_text_atomic
from synth.run_lock import claimed_folder

DEFAULT_KS = (1, 2, 3, 4, 5)
#: long side of the maps the pixel metrics use on synthetic datasets (real-defect folders: full size)
SYNTHETIC_PIXEL_SIZE = 128
#: the paper's Fig. 7 subset; used when present in the data and no other subset is asked for
PAPER_BRIGHTNESS_SUBSET = {"shape": "elongated", "mode": "transparent", "size_bin": "0.02-0.1%"}


@dataclass
class Evaluation:
    """Everything an evaluation computed.

    ``samples``  pandas DataFrame, one row per test image: metadata, ``score``, ``detected_k{K}``.
    ``good``     pandas DataFrame, one row per anomaly-free image: ``source_id``, ``score``, ``flagged_k{K}``.
    ``summary``  JSON-ready dict (see ``summary.json``).
    ``tables``   name -> long pandas table (group columns, ``n``, ``detected``, ``recall``).
    """

    samples: Any
    good: Any
    summary: dict
    tables: dict = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        """name -> matplotlib Figure (Agg) for every table that has data."""
        figs: dict[str, Any] = {}
        k = self.summary["table_k"]
        if "shape_size" in self.tables and len(self.tables["shape_size"]):
            figs["recall_shape_size"] = report.plot_recall_by_size(
                self.tables["shape_size"], "shape", f"recall by shape (k={k} false positives)")
        if "mode_size" in self.tables and len(self.tables["mode_size"]):
            figs["recall_mode_size"] = report.plot_recall_by_size(
                self.tables["mode_size"], "mode", f"recall by pixel manipulation (k={k})")
        figs["recall_vs_k"] = report.plot_recall_vs_k(
            {int(kk): v for kk, v in self.summary["recall_at_k"].items()}, self.summary["n_good"],
            "recall against false positives")
        if "brightness" in self.tables and len(self.tables["brightness"]):
            subset = ", ".join(f"{a}={b}" for a, b in self.summary["brightness_subset"].items()) or "all"
            figs["recall_brightness"] = report.plot_recall_by_brightness(
                self.tables["brightness"], f"recall by |brightness Δ| ({subset}; k={k})")
        return figs

    def write(self, output_dir: str | Path) -> list[Path]:
        """Write scores.parquet, summary.json, recall tables (CSV + Markdown) and plots."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        frame = self.samples.copy()
        frame.insert(0, "split", "test")
        good = self.good.copy()
        good.insert(0, "split", "good")
        good = good.rename(columns={c: c.replace("flagged_", "detected_") for c in good.columns})
        import pandas as pd

        # summary.json marks complete results: it goes first and comes back last
        (out / "summary.json").unlink(missing_ok=True)
        combined = pd.concat([frame, good], ignore_index=True, sort=False)
        with atomic_path(out / "scores.parquet") as tmp:
            combined.to_parquet(tmp, index=False)
        written.append(out / "scores.parquet")
        md_parts = [f"# Recall at k = {self.summary['table_k']} false positives\n"]
        for name, long in self.tables.items():
            with atomic_path(out / f"recall_{name}.csv") as tmp:
                long.to_csv(tmp, index=False)
            written.append(out / f"recall_{name}.csv")
            text = self.markdown_table(name)
            write_text_atomic(out / f"recall_{name}.md", text)
            written.append(out / f"recall_{name}.md")
            md_parts.append(text)
        write_text_atomic(out / "recall_tables.md", "\n".join(md_parts))
        written.append(out / "recall_tables.md")
        for name, fig in self.figures().items():
            written.append(report.save_figure(fig, out / f"{name}.png"))
        write_text_atomic(out / "summary.json", json.dumps(self.summary, indent=2, sort_keys=True) + "\n")
        written.insert(1, out / "summary.json")
        return written

    def markdown_table(self, name: str) -> str:
        long = self.tables[name]
        titles = {
            "shape_size": "Recall [%] by shape and size bin",
            "mode_size": "Recall [%] by pixel manipulation and size bin",
            "method_size": "Recall [%] by method and size bin",
            "method": "Recall [%] by method",
            "brightness": "Recall [%] by |brightness delta|",
            "k": "Recall [%] against false positives k",
            "defect": "Recall [%] and metrics by defect class",
        }
        if name in ("shape_size", "mode_size", "method_size"):
            return report.markdown(report.recall_wide(long, long.columns[0], "size_bin"), titles[name])
        shown = long.copy()
        shown["recall"] = shown["recall"] * 100.0
        return report.markdown(shown.set_index(shown.columns[0]), titles.get(name, name))

    def text(self) -> str:
        """A short plain-text summary for the terminal: sample sizes, every metric with its 95 %
        interval, recall at k with its false-positive rate and Wilson interval."""
        s = self.summary
        block = s["detector"] if isinstance(s["detector"], dict) else {"name": s["detector"]}
        lines = [f"{block['name']}: {s['n_test']} anomalous test images, {s['n_good']} anomaly-free test images "
                 f"(negatives: {s.get('negatives_source', 'given')})",
                 *(f"  {key}: {value}" for key, value in block.items() if key != "name"),
                 threshold_text(s)]
        if s.get("small_sample_caveat"):
            lines.append(s["small_sample_caveat"])
        lines.append(f"recall at k false positives (Wilson 95 % interval over {s['n_test']} anomalies):")
        for k, value in s["recall_at_k"].items():
            low, high = s["recall_interval_at_k"][k]
            lines.append(f"  k={k} (false-positive rate {s['false_positives_at_k'][k]}/{s['n_threshold']} = "
                         f"{s['false_positive_rate_at_k'][k] * 100:.1f} %): {value * 100:.1f} % "
                         f"[{low * 100:.1f}, {high * 100:.1f}]")
        if s.get("skipped_k"):
            lines.append(skipped_k_message(s["skipped_k"], s["n_threshold"]))
        lines.append("  ".join(f"{label} {_fmt(s.get(name))}{_fmt_interval(s.get('intervals', {}).get(name))}"
                               for name, label in METRIC_LABELS.items()))
        if s.get("coreset"):
            lines.append(coreset_text(s["coreset"]))
        boot = s.get("bootstrap")
        if boot:
            lines.append(f"[low, high]: 95 % bootstrap intervals ({boot['resamples']} resamples of the images, "
                         f"stratified by label, seed {boot['seed']}); "
                         + pixel_resolution_text(s.get("pixel_metrics_size", 0)))
        for name in ("defect", "shape_size"):
            if name in self.tables and len(self.tables[name]):
                lines += ["", self.markdown_table(name)]
        return "\n".join(lines)


#: summary key -> how the terminal names it
METRIC_LABELS = {"image_auroc": "image AUROC", "image_ap": "image AP", "pixel_auroc": "pixel AUROC",
                 "pixel_ap": "pixel AP", "aupro": "AUPRO"}


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _fmt_interval(interval: Sequence[float] | None) -> str:
    return "" if interval is None else f" [{interval[0]:.3f}, {interval[1]:.3f}]"


def coreset_text(coreset: dict) -> str:
    """Which memory-bank selection ran, and how far the farthest fit patch is from the bank (a sampled
    value said to be a lower bound)."""
    coverage = coreset.get("coverage")
    if coverage == "sample":
        covered = (f"coverage radius >= {coreset['coverage_radius_lower_bound']:.3f} (a lower bound: the "
                   f"farthest of {coreset['coverage_sample']} sampled fit patches; coverage=exact measures it)")
    elif coverage == "off":
        covered = "coverage radius not measured (coverage=off)"
    elif coreset.get("coverage_radius") is None:
        covered = "coverage radius unknown"
    else:
        covered = f"coverage radius {coreset['coverage_radius']:.3f} (exact)"
    patches = "" if coreset.get("patches") is None else f" of {coreset['patches']}"
    return f"memory bank: {coreset['bank']}{patches} fit patches, {coreset['selection']}; {covered}"


def threshold_text(summary: dict) -> str:
    """Which images set the k-false-positive thresholds, and whether that is an oracle operating point."""
    source = summary.get("threshold_source", "given")
    if summary.get("thresholds_are_oracle"):
        return (f"thresholds from the {summary['n_threshold']} negatives themselves ({source}): an oracle operating "
                "point; pass --good DIR (other anomaly-free images) for a threshold set apart from the test")
    return f"thresholds from {summary['n_threshold']} separate anomaly-free images ({source})"


def skipped_k_message(skipped: Sequence[int], n_good: int) -> str:
    """Why some false-positive budgets were left out (k needs at least k + 1 anomaly-free images)."""
    return (f"k = {', '.join(str(k) for k in skipped)} dropped: only {n_good} anomaly-free images set the "
            "thresholds (k needs k + 1); pass more with --good DIR")


def pixel_resolution_text(pixel_size: int | None) -> str:
    """How the pixel metrics were measured, for the summary line."""
    if not pixel_size:
        return "pixel metrics at full image resolution"
    return f"pixel metrics on maps shrunk to a long side of at most {pixel_size} px"


# ----------------------------------------------------------------------------------- scoring


def score_rows(
    detector,
    get_row: Callable[[int], tuple[Any, Any]],
    n: int,
    *,
    batch_size: int = 8,
    rank: int = 0,
    world: int = 1,
    pixel_size: int = 128,
    names: Sequence[str] | None = None,
    progress: bool = False,
    desc: str = "score",
) -> list[tuple[int, float, np.ndarray, np.ndarray | None]]:
    """Score this process's share of rows ``0..n-1``.

    Rows are cut into fixed batches of ``batch_size`` in dataset order; process ``rank`` of
    ``world`` scores batches ``rank, rank + world, ...``. The batches are the same whatever
    ``world`` is, so every row gets the same score with 1 or N processes.
    ``get_row(i)`` gives ``(image, mask or None)``; ``names`` (the rows' file names) go to a detector
    that scores by name (a scores file). Returns ``(index, score, map, mask)`` per row,
    map float32 and mask bool, both shrunk so the long side is at most ``pixel_size`` (0 = as is).
    """
    from tqdm.auto import tqdm

    batches = list(range(0, n, batch_size))[rank::world]
    out = []
    for start in tqdm(batches, desc=desc, disable=not progress):
        idx = list(range(start, min(start + batch_size, n)))
        rows = [get_row(i) for i in idx]
        named = {"names": [names[i] for i in idx]} if names is not None else {}
        try:
            # maps come back at the size the pixel metrics use: resized once, from the working size
            result = detector.score([r[0] for r in rows], map_size=pixel_size or None, **named)
        except InvalidImagesError as exc:
            raise InvalidImagesError(
                f"{desc}, rows {idx[0]}-{idx[-1]} (numbered within this batch in what follows): {exc}"
            ) from None
        for i, (image, mask), score, amap in zip(idx, rows, result.scores, result.maps):
            mask_arr = None if mask is None else _shrink_mask(_mask_bool(mask, np.shape(image)[:2]), amap.shape)
            out.append((i, float(score), amap, mask_arr))
    return out


def _mask_bool(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(decode(mask))
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.shape != tuple(shape):
        raise DetectError(f"mask is {arr.shape[1]}x{arr.shape[0]} but its image is {shape[1]}x{shape[0]}")
    return arr > 0


def _shrink_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` at the map's ``shape``: a shrunk pixel is anomalous when at least half of what it covers is."""
    import cv2

    if mask.shape == tuple(shape):
        return mask
    size = (shape[1], shape[0])
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5


def _gather(items: list, accelerator) -> list:
    if accelerator is None or accelerator.num_processes == 1:
        return items
    from accelerate.utils import gather_object

    return gather_object(items)


# ----------------------------------------------------------------------------------- evaluate


def _rows_access(rows) -> tuple[int, Callable[[int], tuple[Any, Any]], Any]:
    """(n, get_row, metadata frame) for a datasets.Dataset or a list of dicts/arrays."""
    import pandas as pd

    try:
        import datasets

        is_dataset = isinstance(rows, datasets.Dataset)
    except ModuleNotFoundError:
        is_dataset = False
    if is_dataset:
        has_mask = "mask" in rows.column_names
        images = rows.select_columns(["image", "mask"] if has_mask else ["image"])
        return (
            len(rows),
            lambda i: (decode(images[i]["image"]), images[i]["mask"] if has_mask else None),
            metadata_frame(rows),
        )
    rows = list(rows)
    dict_rows = [r if isinstance(r, dict) else {"image": r} for r in rows]
    meta = pd.DataFrame([{k: v for k, v in r.items() if k not in ("image", "mask", "diff")} for r in dict_rows],
                        index=range(len(dict_rows)))
    return len(dict_rows), lambda i: (decode(dict_rows[i]["image"]), dict_rows[i].get("mask")), meta


def row_names(rows) -> list[str]:
    """Each row's file name, for detectors that look scores up by name: a dataset row's stored image
    path; a listed row's ``image_path`` (real-defect folders), ``file_name`` or ``source_id``, else
    its image's path."""
    try:
        import datasets

        if isinstance(rows, datasets.Dataset):
            # a built dataset stores each image under its file name (a good row's: its source_id);
            # a test row's source_id names its clean source, shared by many anomalies
            paths = rows.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))["image"]
            return [str(p["path"]) if isinstance(p, dict) and p.get("path") else str(i) for i, p in enumerate(paths)]
    except ModuleNotFoundError:
        pass
    return [_row_name(r if isinstance(r, dict) else {}, i) for i, r in enumerate(rows)]


def _row_name(row: dict, index: int) -> str:
    for key in ("image_path", "file_name", "source_id"):
        if row.get(key):
            return str(row[key])
    image = row.get("image")
    if isinstance(image, dict) and image.get("path"):
        return str(image["path"])
    return str(index)


def evaluate(
    test_rows,
    good_images,
    detector,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    table_k: int = 1,
    brightness_subset: dict[str, str] | None = None,
    pixel_size: int = SYNTHETIC_PIXEL_SIZE,
    batch_size: int = 8,
    accelerator=None,
    progress: bool = False,
    info: dict | None = None,
    threshold_images=None,
) -> Evaluation | None:
    """Score anomalies and anomaly-free images with a fitted detector and compute every metric.

    ``test_rows``    ``datasets.Dataset`` of the schema's ``test`` split, or a list of dicts with
                     ``image`` (array/PIL), ``mask`` (bool/uint8 ``(H, W)``) and any metadata
                     (``shape``, ``mode``, ``size_bin``, ``method``, ``brightness_delta``, ...).
    ``good_images``  ``datasets.Dataset`` with an ``image`` column, or a list of arrays/PIL images.
    ``detector``     a fitted ``detect.Detector``.
    ``ks``           false-positive budgets; those >= the number of threshold images are skipped.
    ``table_k``      the budget the recall tables and plots use (the paper: 1).
    ``brightness_subset``  column -> value filter for the |brightness delta| table (default: the
                     paper's elongated / transparent / 0.02-0.1 % when present, else all rows).
    ``pixel_size``   pixel metrics on maps shrunk so the long side is at most this (0 = native).
    ``accelerator``  an ``accelerate.Accelerator``: each process scores a share; only the main
                     process gets the ``Evaluation`` (others get ``None``).
    ``threshold_images``  anomaly-free images (as ``good_images``) that set the k-false-positive
                     thresholds. ``None``: the thresholds come from ``good_images``, the negatives of
                     the evaluation themselves, which is an oracle operating point (the summary says so).

    Every AUROC/AP/AUPRO gets a stratified bootstrap 95 % interval and every recall at k a Wilson
    interval and its false-positive rate (``detect.evaluation.uncertainty``).
    """
    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    is_main = rank == 0
    n_test, get_test, meta = _rows_access(test_rows)
    n_good, get_good, good_meta = _rows_access(good_images)
    oracle = threshold_images is None
    n_threshold, get_threshold, threshold_meta = (n_good, get_good, good_meta) if oracle else _rows_access(threshold_images)
    _check_counts(n_test, n_good, n_threshold)
    common = dict(batch_size=batch_size, rank=rank, world=world, pixel_size=pixel_size, progress=progress and is_main)
    test_names = good_names = None
    if getattr(detector, "scores_by_name", False):
        test_names, good_names = row_names(test_rows), row_names(good_images)
        detector.require(test_names + good_names)  # every missing row named at once, before any work
    test_part = score_rows(detector, get_test, n_test, desc="score anomalies", names=test_names, **common)
    good_part = score_rows(detector, get_good, n_good, desc="score anomaly-free", names=good_names, **common)
    test_all = sorted(_gather(test_part, accelerator), key=lambda t: t[0])
    good_all = sorted(_gather(good_part, accelerator), key=lambda t: t[0])
    threshold_scores = None
    if not oracle:
        threshold_part = score_rows(detector, get_threshold, n_threshold, desc="score threshold images", **common)
        threshold_all = sorted(_gather(threshold_part, accelerator), key=lambda t: t[0])
        threshold_scores = np.array([t[1] for t in threshold_all], dtype=np.float64)
    if not is_main:
        return None

    test_scores = np.array([t[1] for t in test_all], dtype=np.float64)
    good_scores = np.array([t[1] for t in good_all], dtype=np.float64)
    if oracle:
        threshold_scores = good_scores
    used_ks, skipped, table_k = _usable_ks(ks, table_k, n_threshold)
    samples = meta.copy()
    samples["score"] = test_scores.astype(np.float32)
    good = _good_frame(good_meta, good_scores, n_good)
    at_k = _recall_at_ks(used_ks, threshold_scores, test_scores, good_scores, samples, good, n_test, n_threshold)

    summary: dict[str, Any] = dict(info or {})
    summary.update(
        {
            # an external detector's block names its file, size, sha256 and the inputs/outputs used
            "detector": detector.describe() if hasattr(detector, "describe") else getattr(
                detector, "name", type(detector).__name__),
            "detector_config": detector.config() if hasattr(detector, "config") else {},
            "n_test": n_test,
            "n_good": n_good,
            "n_threshold": n_threshold,
            "thresholds_are_oracle": oracle,
            **at_k,
            "skipped_k": skipped,
            "table_k": table_k,
            "image_auroc": metrics.image_auroc(good_scores, test_scores),
            "image_ap": metrics.image_ap(good_scores, test_scores),
            "pixel_metrics_size": pixel_size,
            "process_count": world,
        }
    )
    if hasattr(detector, "coreset_summary"):
        summary["coreset"] = detector.coreset_summary()
    histograms = _add_pixel_metrics(summary, detector, test_all, good_all, good_scores, test_scores, n_test, n_good)
    detected = f"detected_k{table_k}"
    tables = _recall_tables(samples, detected, brightness_subset, summary)
    if "defect" in samples and samples["defect"].notna().any():
        tables["defect"] = _defect_table(samples, detected, good_scores, test_all, good_all, histograms,
                                         has_maps=getattr(detector, "has_maps", True))
    tables["k"] = _k_table(used_ks, at_k, samples, n_test)
    return Evaluation(samples=samples, good=good, summary=summary, tables=tables)


def _check_counts(n_test: int, n_good: int, n_threshold: int) -> None:
    if n_test == 0:
        raise MetricInputError("no test rows (synthetic anomalies) to evaluate")
    if n_good < 1:
        raise MetricInputError("no anomaly-free images: AUROC and AP need negatives")
    if n_threshold < 2:
        raise MetricInputError(
            f"{n_threshold} anomaly-free image(s) set the thresholds; recall at k false positives needs at least "
            "k + 1 (2 for k = 1)"
        )


def _usable_ks(ks: Sequence[int], table_k: int, n_threshold: int) -> tuple[list[int], list[int], int]:
    """``(used, skipped, table_k)``: a budget k needs more than k threshold images; the tables'
    budget falls back to the first usable one."""
    used_ks = [int(k) for k in ks if int(k) < n_threshold]
    skipped = [int(k) for k in ks if int(k) >= n_threshold]
    if not used_ks:
        raise MetricInputError(f"every k in {list(ks)} needs more than the {n_threshold} anomaly-free images given")
    return used_ks, skipped, table_k if table_k in used_ks else used_ks[0]


def _good_frame(good_meta, good_scores: np.ndarray, n_good: int):
    """The anomaly-free images' ``source_id`` (their index when they have none) and score."""
    good = good_meta.copy()
    if "source_id" not in good:
        good["source_id"] = [str(i) for i in range(n_good)]
    good = good[[c for c in ("source_id",) if c in good]].copy()
    good["score"] = good_scores.astype(np.float32)
    return good


def _recall_at_ks(used_ks: list[int], threshold_scores: np.ndarray, test_scores: np.ndarray,
                  good_scores: np.ndarray, samples, good, n_test: int,
                  n_threshold: int) -> dict[str, dict[str, Any]]:
    """The summary's per-budget entries; adds ``detected_k{k}`` to ``samples`` and ``flagged_k{k}`` to ``good``."""
    recall, thresholds, false_positives = {}, {}, {}
    recall_interval, false_positive_rate, negatives_flagged = {}, {}, {}
    for k in used_ks:
        r = metrics.recall_at_k(threshold_scores, test_scores, k)
        samples[f"detected_k{k}"] = r.detected
        good[f"flagged_k{k}"] = good_scores > r.threshold
        recall[str(k)], thresholds[str(k)], false_positives[str(k)] = r.recall, r.threshold, r.false_positives
        recall_interval[str(k)] = uncertainty.wilson(int(r.detected.sum()), n_test).as_list()
        false_positive_rate[str(k)] = r.false_positives / n_threshold
        negatives_flagged[str(k)] = int((good_scores > r.threshold).sum())
    return {
        "recall_at_k": recall,
        "recall_interval_at_k": recall_interval,
        "threshold_at_k": thresholds,
        "false_positives_at_k": false_positives,
        "false_positive_rate_at_k": false_positive_rate,
        "negatives_flagged_at_k": negatives_flagged,
    }


def _add_pixel_metrics(summary: dict[str, Any], detector, test_all: list, good_all: list,
                       good_scores: np.ndarray, test_scores: np.ndarray, n_test: int, n_good: int):
    """Pixel AUROC/AP/AUPRO (None without maps or masks), every metric's interval and the
    bootstrap's settings into ``summary``; returns the pixel histograms (None without pixel metrics)."""
    maps = [t[2] for t in test_all] + [t[2] for t in good_all]
    masks = [t[3] if t[3] is not None else np.zeros(t[2].shape, bool) for t in test_all] + [
        np.zeros(t[2].shape, bool) for t in good_all
    ]
    intervals = uncertainty.image_intervals(good_scores, test_scores)
    histograms = None
    try:
        if not getattr(detector, "has_maps", True):  # image-level only: no map to measure
            raise MetricInputError("the detector gives no maps")
        summary["pixel_auroc"] = metrics.pixel_auroc(maps, masks)
        summary["pixel_ap"] = metrics.pixel_ap(maps, masks)
        summary["aupro"] = metrics.aupro(maps, masks)
    except MetricInputError:  # no masks given (or all empty), or no maps: pixel metrics do not exist
        summary["pixel_auroc"] = summary["pixel_ap"] = summary["aupro"] = None
    else:
        histograms = uncertainty.pixel_histograms(maps, masks)
        intervals.update(uncertainty.pixel_intervals(histograms, [True] * n_test + [False] * n_good))
    summary["intervals"] = {name: interval.as_list() for name, interval in intervals.items()}
    summary["bootstrap"] = {"resamples": uncertainty.RESAMPLES, "seed": uncertainty.SEED, "level": uncertainty.LEVEL,
                            "stratified_by": "label (anomalous / anomaly-free images)",
                            "pixel_bins": uncertainty.PIXEL_BINS}
    summary["small_sample_caveat"] = uncertainty.small_sample_caveat(n_good)
    return histograms


def _recall_tables(samples, detected: str, brightness_subset: dict[str, str] | None,
                   summary: dict[str, Any]) -> dict[str, Any]:
    """Recall per shape/mode/method × size bin and per |brightness delta| (its subset into ``summary``)."""
    tables = {}
    for name, by in (("shape_size", ["shape", "size_bin"]), ("mode_size", ["mode", "size_bin"]),
                     ("method_size", ["method", "size_bin"]), ("method", ["method"])):
        if all(c in samples for c in by) and samples[by].notna().all(axis=1).any():
            tables[name] = report.recall_long(samples, detected, by)
    if "brightness_delta" in samples:
        subset = _brightness_subset(samples, brightness_subset)
        chosen = samples
        for column, value in subset.items():
            chosen = chosen[chosen[column].astype(str) == str(value)]
        chosen = chosen.assign(brightness_bin=report.brightness_bins(chosen["brightness_delta"].to_numpy(float)))
        tables["brightness"] = report.recall_long(chosen, detected, ["brightness_bin"])
        summary["brightness_subset"] = subset
    return tables


def _k_table(used_ks: list[int], at_k: dict[str, dict[str, Any]], samples, n_test: int):
    import pandas as pd

    return pd.DataFrame(
        {"k": used_ks, "threshold": [at_k["threshold_at_k"][str(k)] for k in used_ks],
         "false_positives": [at_k["false_positives_at_k"][str(k)] for k in used_ks],
         "n": n_test, "detected": [int(samples[f"detected_k{k}"].sum()) for k in used_ks],
         "recall": [at_k["recall_at_k"][str(k)] for k in used_ks]}
    )


def _defect_table(samples, detected: str, good_scores: np.ndarray, test_all: list, good_all: list, histograms=None,
                  has_maps: bool = True):
    """Recall per defect class, and each class's image AUROC, pixel AUROC and AUPRO measured
    against all anomaly-free images (as MVTec AD reports per category), each with its bootstrap 95 %
    interval (``*_low``, ``*_high``; pixel intervals from ``histograms``, one row per test then good image)."""
    table = report.recall_long(samples, detected, ["defect"])
    good_maps = [t[2] for t in good_all]
    good_masks = [np.zeros(m.shape, bool) for m in good_maps]
    defects = samples["defect"].to_numpy()
    image_auroc, pixel_auroc, aupro = [], [], []
    for name in table["defect"]:
        rows = [t for t, d in zip(test_all, defects) if d == name]
        image_auroc.append(metrics.image_auroc(good_scores, [t[1] for t in rows]))
        maps = [t[2] for t in rows] + good_maps
        masks = [t[3] if t[3] is not None else np.zeros(t[2].shape, bool) for t in rows] + good_masks
        try:
            if not has_maps:
                raise MetricInputError("the detector gives no maps")
            pixel_auroc.append(metrics.pixel_auroc(maps, masks))
            aupro.append(metrics.aupro(maps, masks))
        except MetricInputError:  # a class without masks has no pixel metrics
            pixel_auroc.append(float("nan"))
            aupro.append(float("nan"))
    table = table.assign(image_auroc=image_auroc, pixel_auroc=pixel_auroc, aupro=aupro)
    return table.assign(**_defect_intervals(table["defect"], defects, good_scores, test_all, histograms))


def _defect_intervals(names, defects: np.ndarray, good_scores: np.ndarray, test_all: list, histograms) -> dict:
    """``{metric_low: [...], metric_high: [...]}`` per defect class (NaN where the metric does not exist)."""
    columns: dict[str, list[float]] = {f"{m}_{end}": [] for m in ("image_auroc", "pixel_auroc", "aupro")
                                       for end in ("low", "high")}
    n_test = len(test_all)
    for name in names:
        chosen = np.flatnonzero(defects == name)
        found = {"image_auroc": uncertainty.bootstrap_interval(good_scores, [test_all[i][1] for i in chosen])}
        if histograms is not None and histograms.positive[chosen].sum() > 0:
            rows = np.r_[chosen, np.arange(n_test, histograms.negative.shape[0])]
            subset = uncertainty.PixelHistograms(*(np.asarray(a)[rows] for a in (
                histograms.negative, histograms.positive, histograms.region_share, histograms.regions)))
            found.update(uncertainty.pixel_intervals(subset, rows < n_test))
        for metric in ("image_auroc", "pixel_auroc", "aupro"):
            interval = found.get(metric)
            columns[f"{metric}_low"].append(float("nan") if interval is None else interval.low)
            columns[f"{metric}_high"].append(float("nan") if interval is None else interval.high)
    return columns


def _brightness_subset(samples, requested: dict[str, str] | None) -> dict[str, str]:
    if requested is not None:
        for column, value in requested.items():
            if column not in samples:
                raise DetectError(f"cannot filter the brightness table on {column!r}: no such column")
            if not (samples[column].astype(str) == str(value)).any():
                present = sorted(set(samples[column].dropna().astype(str)))
                raise DetectError(f"no test row has {column}={value!r}; present: {', '.join(present)}")
        return dict(requested)
    if all(c in samples for c in PAPER_BRIGHTNESS_SUBSET):
        mask = np.ones(len(samples), bool)
        for column, value in PAPER_BRIGHTNESS_SUBSET.items():
            mask &= (samples[column].astype(str) == value).to_numpy()
        if mask.any():
            return dict(PAPER_BRIGHTNESS_SUBSET)
    return {}


# ----------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--dataset", required=True,
                        help="Hub repo ORG/NAME, a local dataset folder, or a real-defect folder in MVTec AD, "
                             "BTAD or VisA layout")
    parser.add_argument("--category", default=None, help="the VisA object, when --dataset is the VisA root")
    parser.add_argument("--good", default=None, metavar="DIR",
                        help="folder of anomaly-free images that sets the k-false-positive thresholds "
                             "(default: the dataset's good split, or test/good of a real-defect folder)")
    parser.add_argument("--revision", default=None, help="dataset version tag, branch or commit (e.g. v1.0.0)")
    parser.add_argument("--detector", default="patchcore",
                        help="patchcore, padim, segmenter, draem or defect_map (the last three train on synthetic "
                             "anomalies: --option steps=...), or your own, used as given: onnx:PATH, "
                             "torchscript:PATH, anomalib:PATH, python:FILE.py:NAME")
    parser.add_argument("--scores", default=None, metavar="FILE",
                        help="scores of a detector run elsewhere: parquet or CSV with file_name, score and "
                             "optionally map (a .npy/.png path); replaces --detector")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow anomalib:model.pt, a pickle (loading it runs code from the file)")
    parser.add_argument("--detector-file", default=None,
                        help="a detector saved by a previous evaluation or `anomalyforge train` (skips fitting)")
    parser.add_argument("--fit", default=None,
                        help="anomaly-free images to fit on: a folder of images, or a dataset (repo or folder) "
                             "whose --fit-split is used (default for a real-defect folder: its train/good)")
    parser.add_argument("--fit-split", default="train", help="split of a --fit dataset (default: train)")
    parser.add_argument("--fit-revision", default=None, help="revision of a --fit dataset")
    parser.add_argument("--output", required=True, help="folder for scores, summary, tables and plots")
    parser.add_argument("--backbone", default=None, help="efficientnet_lite0 (default, offline), resnet18, wide_resnet50_2, ...")
    parser.add_argument("--image-size", type=arguments.integer(8), default=None, help="resize every image to SIZE x SIZE (default: native)")
    parser.add_argument("--batch-size", type=arguments.positive, default=8)
    parser.add_argument("--seed", type=arguments.seed, default=0)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="detector option, e.g. coreset_ratio=0.05 or steps=500 (repeatable; JSON values)")
    parser.add_argument("--ks", nargs="+", default="1,2,3,4,5",
                        help="false-positive budgets, space- or comma-separated (default 1,2,3,4,5)")
    parser.add_argument("--table-k", type=arguments.positive, default=1, help="budget used by the recall tables and plots")
    parser.add_argument("--brightness-shape", default=None)
    parser.add_argument("--brightness-mode", default=None)
    parser.add_argument("--brightness-size-bin", default=None)
    parser.add_argument("--pixel-size", type=arguments.non_negative, default=None,
                        help="long side of maps for pixel metrics (0 = full resolution; default: full resolution "
                             f"for real-defect folders, {SYNTHETIC_PIXEL_SIZE} for synthetic datasets)")
    parser.add_argument("--cpu", action="store_true", help="do not use GPUs even when present")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _fit_images(args) -> list[np.ndarray]:
    from detect.images import read_image_folder

    fit = Path(args.fit)
    if not fit.exists() and (fit.is_absolute() or str(args.fit).startswith((".", "~"))):
        raise DetectError(f"--fit {args.fit} does not exist; pass a folder of anomaly-free images or a dataset")
    if fit.is_dir() and not (fit / "dataset_dict.json").is_file() and not any(fit.glob("**/*.parquet")):
        return read_image_folder(fit)[0]
    if args.fit_split == GOOD_SPLIT and str(args.fit).rstrip("/") == str(args.dataset).rstrip("/") \
            and args.fit_revision in (None, args.revision):
        raise DetectError(
            "refusing to fit on the 'good' split of the evaluated dataset: those images set the "
            "false-positive threshold, and a detector that memorised them would report inflated recall; "
            "fit on separate anomaly-free images (e.g. MVTec's train/good folder)"
        )
    dd = load_dataset_dict(args.fit, args.fit_revision)
    if args.fit_split not in dd:
        raise DetectError(f"--fit dataset {args.fit} has splits {sorted(dd)}, not {args.fit_split!r}; pass --fit-split")
    split = dd[args.fit_split]
    return [decode(split[i]["image"]) for i in range(len(split))]


def _digest(image) -> str:
    """Content hash of an image's pixels (shape, dtype and values): the same image under another path or name
    has the same digest."""
    import hashlib

    array = np.ascontiguousarray(np.asarray(decode(image)))
    return hashlib.sha256(f"{array.shape}{array.dtype}".encode() + array.tobytes()).hexdigest()


def _digests(rows) -> set[str]:
    """Digests of every image of ``rows`` (list of dicts or arrays, or a ``datasets.Dataset``)."""
    n, get_row, _ = _rows_access(rows)
    return {_digest(get_row(i)[0]) for i in range(n)}


def _refuse_overlap_with_fit(fit_images, fit_source: str, evaluated: dict[str, Any]) -> None:
    """A detector scored on (or thresholded by) its own fit images reports inflated numbers: refuse any
    image of ``evaluated`` (name -> rows, ``None`` to skip) whose pixels equal a fit image's."""
    fit = {_digest(image) for image in fit_images}
    for name, rows in evaluated.items():
        if rows is None:
            continue
        shared = len(_digests(rows) & fit)
        if shared:
            raise DetectError(
                f"refusing to evaluate: {shared} image(s) of {name} have the same pixels as images the detector is "
                f"fitted on ({fit_source}); a detector scored on its own fit images reports inflated numbers. "
                "Fit on images that are neither threshold nor test images, or set the thresholds with other images"
            )


def evaluate_defect_set(defect_set, detector, *, good=None, pixel_size: int = 0, **options) -> Evaluation | None:
    """``evaluate`` on a real-defect folder read by ``detect.evaluation.defect_sets.read_defect_set``.

    ``good``        anomaly-free images that set the thresholds (list of arrays/rows; default: the
                    set's ``test_good``).
    ``pixel_size``  0 (default) measures pixel metrics at full image resolution.
    Other options as for ``evaluate``. The ``defect`` table holds recall, image AUROC, pixel AUROC
    and AUPRO per defect class.
    """
    if good is None:
        if not defect_set.test_good:
            raise DetectError(f"{defect_set.root} has no anomaly-free test images; pass good=[...]")
        good = defect_set.good_rows()
    info = {"dataset": str(defect_set.root), "dataset_layout": defect_set.layout, **options.pop("info", {})}
    return evaluate(defect_set.evaluation_rows(), good, detector, pixel_size=pixel_size, info=info, **options)


def _good_folder_rows(folder: str) -> list[dict]:
    """``--good DIR``: every image under DIR as an anomaly-free row (``source_id`` = relative path)."""
    from detect.images import read_image_folder

    images, paths = read_image_folder(folder)
    return [{"image": image, "source_id": path} for image, path in zip(images, paths)]


def run(args: argparse.Namespace) -> int:
    """Entry point of ``anomalyforge evaluate`` / ``python -m detect.evaluation.evaluate``."""
    accelerator = make_accelerator(args.cpu)
    out = Path(args.output)
    # the processes of one launch share the folder; another run into it is refused
    with claimed_folder(out, shared=accelerator.num_processes > 1, recursive=True):
        return _evaluate_into(args, accelerator, out)


def _evaluate_into(args: argparse.Namespace, accelerator: Any, out: Path) -> int:
    """``anomalyforge evaluate`` with its output folder claimed."""
    ks = _parsed_ks(args.ks)
    sets = _evaluation_sets(args)
    pixel_size = args.pixel_size
    if pixel_size is None:
        pixel_size = 0 if sets.defect_set is not None else SYNTHETIC_PIXEL_SIZE
    detector, detector_file, fit_seconds = _ready_detector(args, accelerator, out, sets)
    subset = {k: v for k, v in (("shape", args.brightness_shape), ("mode", args.brightness_mode),
                                ("size_bin", args.brightness_size_bin)) if v is not None} or None
    evaluation = evaluate(
        sets.test, sets.good, detector, ks=ks, table_k=args.table_k, brightness_subset=subset,
        pixel_size=pixel_size, batch_size=args.batch_size, accelerator=accelerator,
        progress=not args.no_progress, threshold_images=sets.threshold_rows,
        info={"dataset": str(args.dataset), "revision": args.revision,
              "dataset_layout": sets.defect_set.layout if sets.defect_set is not None else "anomalyforge",
              "fit": None if args.fit is None else str(args.fit), "detector_file": str(detector_file),
              "negatives_source": sets.good_source,
              "threshold_source": sets.good_source if sets.threshold_rows is None else sets.threshold_source,
              "fit_seconds": fit_seconds},
    )
    if evaluation is not None:
        evaluation.write(out)
        print(evaluation.text())
        print(f"results in {out}")
    accelerator.wait_for_everyone()
    return 0


def _parsed_ks(ks: Any) -> list[int]:
    """``--ks``: whole numbers in the one list syntax of every command."""
    from synth.config import parse_names

    try:
        return [int(k) for k in parse_names(ks, "--ks") or []]
    except ValueError:
        raise DetectError(f"--ks takes whole numbers, e.g. 1 2 3 or 1,2,3; got {ks!r}") from None


@dataclass
class _EvaluationSets:
    """The images ``anomalyforge evaluate`` scores, and where each set comes from."""

    test: Any
    good: Any
    good_source: str
    #: anomaly-free images that set the thresholds; ``None``: the negatives ``good`` set them
    threshold_rows: Any
    threshold_source: str
    #: the real-defect folder read, ``None`` for an anomalyforge dataset
    defect_set: Any


def _evaluation_sets(args: argparse.Namespace) -> _EvaluationSets:
    """Test rows and negatives from ``--dataset`` (a real-defect folder or an anomalyforge dataset),
    and the threshold images from ``--good`` unless they are the negatives themselves."""
    from detect.evaluation.defect_sets import detect_layout, read_defect_set

    defect_set = None
    if detect_layout(args.dataset) is not None:
        defect_set = read_defect_set(args.dataset, args.category)
        test, good = defect_set.evaluation_rows(), defect_set.good_rows()
        good_source = f"{_short(defect_set.root)}/test/good" if defect_set.layout != "visa" else "VisA test normal"
    else:
        if args.category is not None:
            raise DetectError(f"--category is for VisA folders; {args.dataset} is not one")
        test, good = load_evaluation_splits(args.dataset, args.revision)
        good_source = f"{args.dataset} split {GOOD_SPLIT!r}"
    threshold_rows, threshold_source = None, good_source
    if args.good is not None:
        threshold_rows, threshold_source = _good_folder_rows(args.good), str(args.good)
        if not good:  # no anomaly-free test images: the threshold set is the only set of negatives
            good, good_source, threshold_rows = threshold_rows, threshold_source, None
    elif defect_set is not None and not defect_set.test_good:
        raise DetectError(f"{defect_set.root} has no anomaly-free test images; pass --good DIR to set the "
                          "false-positive thresholds")
    if threshold_rows is not None and _digests(threshold_rows) & _digests(good):
        threshold_rows = None  # the same pixels as the negatives: thresholds from the negatives, said so
    return _EvaluationSets(test, good, good_source, threshold_rows, threshold_source, defect_set)


def _ready_detector(args: argparse.Namespace, accelerator: Any, out: Path,
                    sets: _EvaluationSets) -> tuple[Any, Path, float | None]:
    """(detector ready to score, its file, fit seconds or None): an external one used as given (fitted
    first if it needs it), else ``--detector-file``, else a built-in one fitted and saved."""
    from detect.registry import load_detector

    detector_file = Path(args.detector_file) if args.detector_file else out / "detector.pt"
    fit_seconds = None
    external = _external_detector(args, accelerator)
    if external is not None:
        detector, detector_file = external
        if getattr(detector, "needs_fit", False):
            fit_seconds = _fit_refusing_overlap(detector, detector.name, args, sets, {})
        return detector, detector_file, fit_seconds
    if args.detector_file is None:
        if args.fit is None and sets.defect_set is None:
            raise DetectError("pass --fit (anomaly-free images to fit on) or --detector-file (a fitted detector)")
        if accelerator.is_main_process:
            # one process fits and saves; every process then loads the same file, so the scores
            # cannot depend on how many processes run
            fit_seconds = _fit_and_save(args, accelerator, out, sets, detector_file)
        accelerator.wait_for_everyone()
    return load_detector(detector_file, device=accelerator.device), detector_file, fit_seconds


def _fit_and_save(args: argparse.Namespace, accelerator: Any, out: Path, sets: _EvaluationSets,
                  detector_file: Path) -> float:
    """Build the built-in ``--detector`` with its options, fit it and save it; the fit's seconds."""
    from detect.registry import build_detector

    options = parse_options(args.option)
    own_flags = {"image_size": "--image-size", "batch_size": "--batch-size", "seed": "--seed", "device": "accelerate"}
    if taken := [f"{key} (set it with {own_flags[key]})" for key in options if key in own_flags]:
        raise DetectError(f"--option cannot set {', '.join(taken)}")
    if args.backbone and args.detector in ("patchcore", "padim"):
        options.setdefault("backbone", args.backbone)
    detector = build_detector(args.detector, image_size=args.image_size, batch_size=args.batch_size,
                              seed=args.seed, device=str(accelerator.device), **options)
    fit_seconds = _fit_refusing_overlap(detector, args.detector, args, sets, {"progress": not args.no_progress})
    print(f"fitted in {fit_seconds:.1f} s", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    detector.save(detector_file)
    return fit_seconds


def _fit_refusing_overlap(detector: Any, name: str, args: argparse.Namespace, sets: _EvaluationSets,
                          fit_options: dict) -> float:
    """Fit ``detector`` on its anomaly-free images, refused when any equals a threshold or test
    negative; the fit's seconds."""
    images, fit_source = _fit_source(args, sets.defect_set)
    _refuse_overlap_with_fit(images, fit_source, {sets.threshold_source: sets.threshold_rows,
                                                   sets.good_source: sets.good})
    print(f"fitting {name} on {len(images)} anomaly-free images ({fit_source})", file=sys.stderr)
    started = time.perf_counter()
    detector.fit(images, **fit_options)
    return time.perf_counter() - started


def _fit_source(args, defect_set) -> tuple[list[np.ndarray], str]:
    """(anomaly-free images to fit on, where they come from): ``--fit``, else the folder's train/good."""
    if args.fit is None:
        if defect_set is None:
            raise DetectError("pass --fit (anomaly-free images to fit on) or --detector-file (a fitted detector)")
        return defect_set.load_images(defect_set.train_good), f"{_short(defect_set.root)}/train/good"
    return _fit_images(args), str(args.fit)


def _external_detector(args, accelerator):
    """(detector, its file) for ``--scores FILE`` or an external ``--detector`` (used as given:
    nothing is fitted or saved), else None."""
    from detect.detectors.external import ScoresFile, is_external
    from detect.registry import build_detector

    options = parse_options(args.option)
    if args.scores is not None:
        unknown = sorted(set(options) - {"higher_is_normal"})
        if unknown:
            raise DetectError(f"--scores takes only --option higher_is_normal=true; not {', '.join(unknown)}")
        return ScoresFile(args.scores, **options), Path(args.scores)
    if not is_external(args.detector):
        if args.trust_pickle:
            raise DetectError("--trust-pickle is for anomalib:model.pt; the built-in detectors are no pickles")
        return None
    if args.detector_file is not None:
        raise DetectError(f"--detector-file is for the built-in detectors; {args.detector} is used as given")
    if args.trust_pickle:
        options["trust_pickle"] = True
    if args.image_size is not None:
        options.setdefault("image_size", args.image_size)
    detector = build_detector(args.detector, batch_size=args.batch_size, device=str(accelerator.device), **options)
    return detector, Path(args.detector.split(":", 1)[1])


def _short(path: Path) -> str:
    return path.name or str(path)


def main(argv: Sequence[str] | None = None) -> int:
    return script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
