"""Do intrinsic image metrics predict detection performance? Pearson r and p per metric (ASBench table 9).

Inputs: per-method metric values (the JSON written by ``anomalyforge quality --by method`` and/or
``anomalyforge diversity --by method``: ``{method: {metric: value}}``) and per-method detection
results (``summary.json`` files written by the evaluation, e.g. with ``image_auroc`` or
``recall_at_k``). For every metric, the methods that have both a finite metric value and a result
give one point; ``scipy.stats.pearsonr`` gives r and the two-sided p-value.

Outputs: a Markdown and a CSV table (metric, n, r, p) and a scatter plot per metric (matplotlib).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detect.errors import CorrelationInputError
from detect.runtime import guarded
from synth.atomic import save_figure_atomic, write_text_atomic

# keys in metric files that describe the computation, not a metric
_NOT_METRICS = ("n_images", "n_pairs")


@dataclass(frozen=True)
class Correlation:
    """Pearson correlation of one metric with the detection result over ``n`` methods.

    ``r`` and ``p`` are NaN when fewer than 3 methods have both values or one side is constant.
    """

    metric: str
    target: str
    n: int
    r: float
    p: float
    methods: tuple[str, ...]
    x: tuple[float, ...]
    y: tuple[float, ...]


def correlate(
    metrics: Mapping[str, Mapping[str, float]],
    results: Mapping[str, float],
    *,
    target: str = "image_auroc",
) -> list[Correlation]:
    """Pearson r and p of each metric against ``results`` across methods.

    Args:
        metrics: method -> {metric name -> value}. Keys ending in ``_std`` and counts are skipped.
        results: method -> detection performance (e.g. image AUROC).
        target: name of the detection result, for labels.

    Returns:
        One :class:`Correlation` per metric, in first-seen order.
    """
    import scipy.stats  # slow to import: only when correlations are computed

    names: list[str] = []
    for values in metrics.values():
        names += [k for k in values if k not in names and k not in _NOT_METRICS and "_std" not in k]
    if not names:
        raise CorrelationInputError("no metric values given")
    out = []
    for name in names:
        methods, xs, ys = [], [], []
        for method in sorted(metrics):
            x = metrics[method].get(name)
            y = results.get(method)
            if x is None or y is None or not (math.isfinite(float(x)) and math.isfinite(float(y))):
                continue  # e.g. PSNR = inf for an unchanged image: no point on a line
            methods.append(method)
            xs.append(float(x))
            ys.append(float(y))
        r = p = math.nan
        if len(xs) >= 3 and np.ptp(xs) > 0 and np.ptp(ys) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = scipy.stats.pearsonr(xs, ys)
            r, p = float(res.statistic), float(res.pvalue)
        out.append(Correlation(name, target, len(xs), r, p, tuple(methods), tuple(xs), tuple(ys)))
    return out


def load_metric_files(paths: list[Path]) -> dict[str, dict[str, float]]:
    """Merge ``{method: {metric: value}}`` JSON files (later files add metrics to the same method)."""
    merged: dict[str, dict[str, float]] = {}
    for path in paths:
        data = _read_json(path)
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise CorrelationInputError(
                f"{path} is not a per-method metric file ({{method: {{metric: value}}}}); write it with "
                "`anomalyforge quality --by method --output FILE` or `anomalyforge diversity --by method --output FILE`"
            )
        for method, values in data.items():
            merged.setdefault(method, {}).update({k: v for k, v in values.items() if isinstance(v, (int, float)) or v is None})
    return merged


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys: {"recall_at_k": {"1": 0.5}} -> {"recall_at_k.1": 0.5}."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def summary_value(summary: Mapping[str, Any], key: str, *, source: str = "summary") -> float:
    """The number at ``key`` in a (nested) summary: an exact dotted path, or a unique path ending in it."""
    flat = flatten(dict(summary))
    if key in flat:
        value = flat[key]
    else:
        hits = [k for k in flat if k.endswith("." + key)]
        if len(hits) != 1:
            numeric = sorted(k for k, v in flat.items() if isinstance(v, (int, float)))
            what = "no entry" if not hits else f"{len(hits)} entries ({', '.join(hits[:4])})"
            raise CorrelationInputError(f"{source}: {what} for {key!r}; give a full dotted path, one of: {', '.join(numeric[:20])}")
        value = flat[hits[0]]
    if not isinstance(value, (int, float)):
        raise CorrelationInputError(f"{source}: {key!r} is {value!r}, not a number")
    return float(value)


def load_results(specs: list[str], target: str) -> dict[str, float]:
    """``METHOD=PATH`` pairs (or folders ``PATH/<method>/summary.json``) -> method -> value at ``target``."""
    results: dict[str, float] = {}
    for spec in specs:
        if "=" in spec:
            method, path = spec.split("=", 1)
            results[method] = summary_value(_read_json(Path(path)), target, source=path)
            continue
        folder = Path(spec)
        found = sorted(folder.glob("*/summary.json"))
        if not found:
            raise CorrelationInputError(f"{spec}: give METHOD=path/summary.json, or a folder with <method>/summary.json files")
        for path in found:
            results[path.parent.name] = summary_value(_read_json(path), target, source=str(path))
    return results


def markdown_table(rows: list[Correlation]) -> str:
    """| metric vs target | n | Pearson r | p-value |, as ASBench table 9."""
    lines = ["| comparison | n | Pearson r | p-value |", "|---|---:|---:|---:|"]
    for c in rows:
        lines.append(f"| {c.metric} vs {c.target} | {c.n} | {_num(c.r)} | {_num(c.p)} |")
    return "\n".join(lines)


def csv_table(rows: list[Correlation]) -> str:
    """CSV with columns metric, target, n, r, p, methods."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["metric", "target", "n", "r", "p", "methods"])
    for c in rows:
        writer.writerow([c.metric, c.target, c.n, _num(c.r), _num(c.p), " ".join(c.methods)])
    return buf.getvalue()


def scatter_plot(rows: list[Correlation], path: Path) -> Path:
    """One scatter panel per metric (metric on x, detection result on y, methods labelled) as PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    cols = min(3, len(rows))
    lines = math.ceil(len(rows) / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(4.2 * cols, 3.6 * lines), squeeze=False)
    for ax, c in zip(axes.flat, rows):
        ax.scatter(c.x, c.y, color="tab:blue")
        for method, x, y in zip(c.methods, c.x, c.y):
            ax.annotate(method, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xlabel(c.metric)
        ax.set_ylabel(c.target)
        ax.set_title(f"r = {_num(c.r)}, p = {_num(c.p)} (n = {c.n})", fontsize=9)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return path


def write_report(rows: list[Correlation], output_dir: Path) -> dict[str, Path]:
    """Write correlation.md, correlation.csv and correlation.png into ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    md = output_dir / "correlation.md"
    write_text_atomic(md, markdown_table(rows) + "\n")
    table = output_dir / "correlation.csv"
    write_text_atomic(table, csv_table(rows))
    return {"markdown": md, "csv": table, "plot": scatter_plot(rows, output_dir / "correlation.png")}


def register_correlate_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``correlate`` under ``anomalyforge quality``."""
    parser = subparsers.add_parser(
        "correlate",
        help="Pearson r/p of per-method metrics vs detection results (ASBench table 9)",
        description="Relate per-method intrinsic metrics to detection performance: table (Markdown, CSV) and scatter plot.",
    )
    parser.add_argument("--metrics", type=Path, action="append", required=True, metavar="JSON",
                        help="per-method metrics from `quality --by method` or `diversity --by method` (repeatable)")
    parser.add_argument("--summary", action="append", required=True, metavar="METHOD=PATH",
                        help="detection summary.json of a method's dataset (repeatable), or a folder of <method>/summary.json")
    parser.add_argument("--target", default="image_auroc",
                        help="summary key to correlate with, dotted for nested entries (default image_auroc)")
    parser.add_argument("--output-dir", type=Path, default=Path("correlation"), help="folder for the report (default correlation/)")
    parser.set_defaults(func=guarded(run_correlate_cli))
    return parser


def run_correlate_cli(args: argparse.Namespace) -> int:
    """Entry point of ``anomalyforge quality correlate``."""
    metrics = load_metric_files(args.metrics)
    results = load_results(args.summary, args.target)
    unknown = sorted(set(results) - set(metrics))
    if unknown and not set(results) & set(metrics):
        raise CorrelationInputError(
            f"no method appears in both the metric files ({', '.join(sorted(metrics))}) and the summaries ({', '.join(unknown)})"
        )
    rows = correlate(metrics, results, target=args.target)
    print(markdown_table(rows))
    for kind, path in write_report(rows, args.output_dir).items():
        print(f"wrote {path}")
    return 0


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CorrelationInputError(f"{path} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise CorrelationInputError(f"{path} is not JSON: {exc}") from exc


def _num(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.4f}"
