"""The ASBench-style reports of a bench grid (``detect.evaluation.bench``): Markdown tables and PNG plots.

Input: the tidy cell table (one row per dataset × synthesis × pipeline × ratio × seed with
``image_auroc``, ``image_ap``, ``pixel_auroc``, ``pixel_ap``, ``aupro``), the quality table (one
row per dataset × synthesis with SSIM, PSNR, LPIPS, FID, KID, IS when measured) and the hybrids'
weights. Seeds are averaged before any comparison.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import scipy.stats

from detect.evaluation import report
from detect.quality.correlation import correlate, scatter_plot
from synth.atomic import write_text_atomic

METRICS = ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "aupro")
CONTEXT = ["dataset", "pipeline", "ratio"]  # what a synthesis is compared within
#: |r| below this (or p >= 0.05) counts as a weak correlation in the findings
WEAK_R = 0.5


def seed_means(frame):
    """Mean over seeds: one row per dataset × synthesis × pipeline × ratio."""
    keys = ["dataset", "synthesis", "hybrid", "pipeline", "ratio"]
    present = [m for m in METRICS if m in frame]
    return frame.groupby(keys, as_index=False, dropna=False)[present].mean()


def pearson(x, y) -> tuple[float, float, int]:
    """Pearson r, two-sided p and n of finite pairs; NaN when fewer than 3 or a side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan, int(x.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scipy.stats.pearsonr(x, y)
    return float(res.statistic), float(res.pvalue), int(x.size)


# ------------------------------------------------------------------------------------ tables


def cells_table(frame):
    shown = frame.sort_values(["dataset", "pipeline", "synthesis", "ratio", "seed"]).copy()
    shown.index = [f"{r.synthesis} / {r.pipeline} / {r.ratio:g} / s{r.seed}" for r in shown.itertuples()]
    shown.index.name = "synthesis / pipeline / ratio / seed"
    columns = [c for c in (*METRICS, "recall_at_1", "train_seconds") if c in shown]
    if shown["dataset"].nunique() > 1:
        columns = ["dataset", *columns]
    return shown[columns]


def methods_tables(means) -> dict[str, Any]:
    """Mean metrics per synthesis and per pipeline; synthesis × pipeline for image and pixel AUROC."""
    present = [m for m in METRICS if m in means]
    per_synthesis = means.groupby("synthesis")[present].mean().sort_values("image_auroc", ascending=False)
    per_pipeline = means.groupby("pipeline")[present].mean().sort_values("image_auroc", ascending=False)
    grid = {m: means.pivot_table(index="synthesis", columns="pipeline", values=m, aggfunc="mean").astype(object)
            for m in ("image_auroc", "pixel_auroc") if m in means}
    for table in grid.values():
        table.loc["best synthesis"] = [str(table[c].astype(float).idxmax()) if table[c].notna().any() else "–"
                                       for c in table.columns]
    return {"per_synthesis": per_synthesis, "per_pipeline": per_pipeline, **{f"grid_{m}": t for m, t in grid.items()}}


def ratio_table(frame, metric: str = "image_auroc"):
    """Per dataset × pipeline × synthesis: the metric at each ratio, best–worst gap, Pearson r/p of
    ratio against the metric over all cells (seeds included); plus one row per pipeline (mean over
    syntheses) and one overall."""
    import pandas as pd

    rows = []
    for (dataset, pipeline, synthesis), part in frame.groupby(["dataset", "pipeline", "synthesis"]):
        by_ratio = part.groupby("ratio")[metric].mean()
        r, p, n = pearson(part["ratio"], part[metric])
        rows.append({"dataset": dataset, "pipeline": pipeline, "synthesis": synthesis,
                     **{f"ratio {k:g}": v for k, v in by_ratio.items()},
                     "best ratio": float(by_ratio.idxmax()), "gap": float(by_ratio.max() - by_ratio.min()),
                     "pearson_r": r, "p": p, "n": n})
    for (dataset, pipeline), part in frame.groupby(["dataset", "pipeline"]):
        by_ratio = part.groupby("ratio")[metric].mean()
        r, p, n = pearson(part["ratio"], part[metric])
        rows.append({"dataset": dataset, "pipeline": pipeline, "synthesis": "(all)",
                     **{f"ratio {k:g}": v for k, v in by_ratio.items()},
                     "best ratio": float(by_ratio.idxmax()), "gap": float(by_ratio.max() - by_ratio.min()),
                     "pearson_r": r, "p": p, "n": n})
    table = pd.DataFrame(rows)
    table.index = [f"{r.pipeline} / {r.synthesis}" + (f" ({r.dataset})" if table["dataset"].nunique() > 1 else "")
                   for r in table.itertuples()]
    table.index.name = "pipeline / synthesis"
    return table.drop(columns=["dataset", "pipeline", "synthesis"])


def hybrid_table(means, hybrids: Mapping[str, Mapping[str, float]], metric: str = "image_auroc"):
    """Each hybrid in each context against its methods, their best, and their weighted mean."""
    import pandas as pd

    rows = []
    for name, weights in hybrids.items():
        for key, part in means.groupby(CONTEXT):
            values = dict(zip(part["synthesis"], part[metric]))
            if name not in values or not all(m in values for m in weights):
                continue  # a method of the mix is not in the grid: no comparison
            parts = {m: values[m] for m in weights}
            theoretical = sum(w * parts[m] for m, w in weights.items())
            best = max(parts.values())
            dataset, pipeline, ratio = key
            rows.append({"hybrid": name, "dataset": dataset, "pipeline": pipeline, "ratio": ratio,
                         **{f"{m} (w {w:.2g})": parts[m] for m, w in weights.items()},
                         "theoretical mean": theoretical, "best single": best, "hybrid value": values[name],
                         "vs best": values[name] - best, "vs theoretical": values[name] - theoretical})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table.index = [f"{r.hybrid} / {r.pipeline} / {r.ratio:g}" for r in table.itertuples()]
    table.index.name = "hybrid / pipeline / ratio"
    return table.drop(columns=["hybrid", "pipeline", "ratio"] + (["dataset"] if table["dataset"].nunique() == 1 else []))


def quality_correlations(means, quality, targets=("image_auroc", "pixel_auroc", "aupro")):
    """Pearson r and p of each quality metric against each detection metric, one point per
    dataset × synthesis (detection metric averaged over pipelines, ratios, seeds)."""
    if quality.empty:
        return []
    multi = quality["dataset"].nunique() > 1
    label = (lambda d, s: f"{d}/{s}") if multi else (lambda d, s: s)
    metric_columns = [c for c in quality.columns if c not in ("dataset", "synthesis", "hybrid", "n_images")]
    metrics = {label(r["dataset"], r["synthesis"]): {c: r[c] for c in metric_columns if r[c] == r[c]}
               for _, r in quality.iterrows()}
    out = []
    for target in targets:
        if target not in means:
            continue
        det = means.groupby(["dataset", "synthesis"])[target].mean()
        results = {label(d, s): float(v) for (d, s), v in det.items() if v == v}
        out += correlate(metrics, results, target=target)
    return out


def correlation_frame(rows):
    import pandas as pd

    table = pd.DataFrame([{"metric": c.metric, "target": c.target, "n": c.n, "pearson_r": c.r, "p": c.p} for c in rows])
    if table.empty:
        return table
    table.index = [f"{c.metric} vs {c.target}" for c in rows]
    table.index.name = "comparison"
    return table.drop(columns=["metric", "target"])


def findings(means, hybrid, correlations, metric: str = "image_auroc") -> list[str]:
    """ASBench's three findings, checked on this grid: lines of Markdown."""
    lines = []
    singles = means[~means["hybrid"].astype(bool)]
    winners: dict[Any, list[str]] = {}  # context -> the methods sharing the best value
    ties = 0
    for key, part in singles.groupby(CONTEXT):
        values = part.dropna(subset=[metric])
        if len(values) < 2:
            continue
        best = values[values[metric] == values[metric].max()]["synthesis"].astype(str).tolist()
        if len(best) == len(values):
            ties += 1  # every method equal: no winner in this context
            continue
        winners[key] = best
    distinct = sorted({m for best in winners.values() for m in best})
    if not winners:
        lines.append("1. *No method universally best*: not testable (fewer than two single methods that differ per "
                     f"context; {ties} context(s) where all tie).")
    else:
        universal = [m for m in distinct if all(m in best for best in winners.values())]
        counts = ", ".join(f"{m} {sum(m in best for best in winners.values())}" for m in distinct)
        tie_note = f"; {ties} context(s) where all methods tie are left out" if ties else ""
        lines.append(f"1. *No method universally best* — {'does not hold' if universal else 'holds'}: best single "
                     f"method by {metric} (ties count for each) in {len(winners)} dataset × pipeline × ratio "
                     f"contexts: {counts}{tie_note}.")
    if hybrid is None or hybrid.empty:
        lines.append("2. *Hybrids ≥ best single method*: not testable (no hybrid whose methods are all in the grid).")
    else:
        n = len(hybrid)
        ge_best = int((hybrid["vs best"] >= 0).sum())
        ge_mean = int((hybrid["vs theoretical"] >= 0).sum())
        verdict = "holds" if ge_best * 2 > n else ("partly holds" if ge_mean * 2 > n else "does not hold")
        lines.append(f"2. *Hybrids ≥ best single method* — {verdict}: the hybrid reaches its best single method in "
                     f"{ge_best} of {n} contexts and the theoretical mean of its methods in {ge_mean} of {n} "
                     f"(mean difference to the best {hybrid['vs best'].mean():+.3f}, to the theoretical mean "
                     f"{hybrid['vs theoretical'].mean():+.3f}).")
    measured = [c for c in correlations if c.r == c.r]
    if not measured:
        lines.append("3. *Weak metric correlation*: not testable (no quality metric with 3 or more synthesis points).")
    else:
        strong = [c for c in measured if abs(c.r) >= WEAK_R and c.p < 0.05]
        lines.append(f"3. *Weak correlation of image-quality metrics with detection* — "
                     f"{'holds' if not strong else 'does not hold for ' + ', '.join(f'{c.metric} vs {c.target}' for c in strong)}: "
                     f"{len(measured) - len(strong)} of {len(measured)} metric × target pairs have |r| < {WEAK_R} or "
                     f"p ≥ 0.05 (n = {max(c.n for c in measured)} syntheses: with so few points only a strong "
                     "relation could reach significance).")
    return lines


# ------------------------------------------------------------------------------------ plots


def _axes(width: float = 6.0, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=120)
    ax.grid(True, axis="y", alpha=0.3)
    return fig, ax


def plot_methods(grid, title: str):
    fig, ax = _axes(max(5.0, 0.9 * len(grid.index) + 2))
    data = grid.drop(index="best synthesis", errors="ignore").astype(float)
    x = np.arange(len(data.index))
    width = 0.8 / max(1, len(data.columns))
    for i, pipeline in enumerate(data.columns):
        ax.bar(x + i * width - 0.4 + width / 2, data[pipeline], width, label=pipeline)
    ax.set_xticks(x, data.index, rotation=30, ha="right", fontsize=8)
    ax.axhline(0.5, color="gray", lw=0.8, ls="--")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_ratios(frame, metric: str = "image_auroc"):
    fig, ax = _axes()
    for (pipeline, synthesis), part in frame.groupby(["pipeline", "synthesis"]):
        by_ratio = part.groupby("ratio")[metric].mean()
        ax.plot(by_ratio.index, by_ratio.values, marker="o", label=f"{pipeline} / {synthesis}")
    ax.set_xlabel("anomaly ratio")
    ax.set_ylabel(metric)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def plot_hybrids(hybrid, metric: str = "image_auroc"):
    fig, ax = _axes(max(5.0, 1.2 * len(hybrid) + 2))
    x = np.arange(len(hybrid))
    bars = [("best single", "tab:gray"), ("theoretical mean", "tab:olive"), ("hybrid value", "tab:red")]
    for i, (column, color) in enumerate(bars):
        ax.bar(x + (i - 1) * 0.27, hybrid[column], 0.27, label=column, color=color)
    ax.set_xticks(x, hybrid.index, rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ writing


def write(frame, quality, skipped: Mapping[str, str], hybrids: Mapping[str, Mapping[str, float]], out: Path) -> dict[str, Path]:
    """Write every table (``*.md``) and plot (``*.png``) into ``out`` and ``report.md``; returns the paths."""
    written: dict[str, Path] = {}
    means = seed_means(frame)
    # a ratio-0 cell never sees an anomaly, so its synthesis is a label only: syntheses are compared
    # on the cells that trained with anomalies (all cells when the grid has only ratio 0)
    compared = means[means["ratio"] > 0] if (means["ratio"] > 0).any() else means
    parts = ["# Anomaly-synthesis benchmark", "",
             f"{frame['dataset'].nunique()} dataset(s), {frame['synthesis'].nunique()} syntheses, "
             f"{frame['pipeline'].nunique()} pipeline(s), ratios {sorted(frame['ratio'].unique().tolist())}, "
             f"seeds {sorted(frame['seed'].unique().tolist())}: {len(frame)} cells. Metrics on the real test set; "
             "AUROC/AP/AUPRO in [0, 1]. Syntheses are compared (methods, hybrids, quality correlation, findings) "
             "on the cells with an anomaly ratio > 0; ratio-0 cells train without any anomaly.", ""]

    def section(name: str, text: str) -> None:
        path = out / f"{name}.md"
        write_text_atomic(path, text)
        written[name] = path
        parts.extend([text, ""])

    def figure(name: str, fig) -> None:
        written[name + "_plot"] = report.save_figure(fig, out / f"{name}.png")
        parts.extend([f"![{name}]({name}.png)", ""])

    section("cells", report.markdown(cells_table(frame), "Every cell", digits=3))

    tables = methods_tables(compared)
    text = report.markdown(tables["per_synthesis"], "Mean per synthesis (over pipelines, ratios, seeds)", digits=3)
    text += "\n" + report.markdown(tables["per_pipeline"], "Mean per pipeline (over syntheses, ratios, seeds)", digits=3)
    for m in ("image_auroc", "pixel_auroc"):
        if f"grid_{m}" in tables:
            text += "\n" + report.markdown(tables[f"grid_{m}"], f"{m}: synthesis × pipeline (mean over ratios, seeds)")
    section("methods", text)
    if "grid_image_auroc" in tables:
        figure("methods", plot_methods(tables["grid_image_auroc"], "image AUROC"))

    text = ""
    for m in ("image_auroc", "pixel_auroc"):
        if m in frame and frame[m].notna().any():
            text += report.markdown(ratio_table(frame, m), f"{m} by anomaly ratio: best–worst gap and Pearson r with the ratio") + "\n"
    section("ratios", text)
    figure("ratios", plot_ratios(frame))

    hybrid = hybrid_table(compared, hybrids)
    if not hybrid.empty:
        section("hybrids", report.markdown(hybrid, "Hybrids against their methods (image_auroc)", digits=3))
        figure("hybrids", plot_hybrids(hybrid))

    correlations = quality_correlations(compared, quality)
    if not quality.empty or skipped:
        text = ""
        if not quality.empty:
            q = quality.set_index("synthesis")
            ordered = [c for m in ("SSIM", "PSNR", "LPIPS", "FID", "KID", "IS") for c in q.columns if c.split("_")[0] == m]
            q = q[(["dataset"] if q["dataset"].nunique() > 1 else []) + ["n_images"] + ordered]
            text += report.markdown(q,
                                    "Quality of each synthesis's anomalies (SSIM/PSNR/LPIPS vs sources; FID/KID/IS vs the real defects)")
        if correlations:
            text += "\n" + report.markdown(correlation_frame(correlations), "Pearson r and p: quality metric vs detection metric")
        if skipped:
            text += "\n### Skipped metrics\n\n" + "".join(f"- {name}: {reason}\n" for name, reason in sorted(skipped.items()))
        section("quality", text)
        usable = [c for c in correlations if c.target == "image_auroc" and c.n]
        if usable:
            written["quality_plot"] = scatter_plot(usable, out / "quality.png")
            parts.extend(["![quality](quality.png)", ""])

    section("findings", "### ASBench's findings on this grid\n\n" + "\n".join(findings(compared, hybrid, correlations)) + "\n")
    path = out / "report.md"
    write_text_atomic(path, "\n".join(parts))
    written["report"] = path
    return written
