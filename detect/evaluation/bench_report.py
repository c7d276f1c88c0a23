"""The ASBench-style reports of a bench grid (``detect.evaluation.bench``): Markdown tables and PNG plots.

Input: the tidy cell table (one row per dataset × synthesis × pipeline × ratio × seed with
``image_auroc``, ``image_ap``, ``pixel_auroc``, ``pixel_ap``, ``aupro``), the quality table (one
row per dataset × synthesis with SSIM, PSNR, LPIPS, FID, KID, IS when measured) and the hybrids'
weights, and each cell's per-image test scores. Seeds are averaged before any comparison.

Every comparison the report makes (method against method, hybrid against its best method and the
weighted mean of its methods, best against worst anomaly ratio) is a paired bootstrap over the same
test images and seeds (``detect.evaluation.uncertainty.paired_contrast``, image AUROC). A finding is
stated only when it is significant and rests on at least ``MIN_GOOD_IMAGES`` anomaly-free test
images; otherwise it reads "not determined at this sample size", with the number of test images
that would make the observed difference significant.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import scipy.stats

from detect.evaluation import report, uncertainty
from detect.quality.correlation import correlate, scatter_plot
from synth.atomic import write_text_atomic

METRICS = ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "aupro")
CONTEXT = ["dataset", "pipeline", "ratio"]  # what a synthesis is compared within
#: |r| below this (or p >= 0.05) counts as a weak correlation in the findings
WEAK_R = 0.5
#: how this grid's pipelines relate to ASBench's, said at the top of every report
PIPELINES_NOTE = ("The pipelines here are segmenter (NSA's recipe), DRAEM and defect-map; ASBench's are DRAEM, "
                  "DestSeg, MemSeg and AnomalyDiffusion. Only DRAEM is shared, so these tables follow ASBench's "
                  "design but are not its numbers. The ratio tables give the best–worst gap and this report's "
                  "Pearson r of ratio against the metric, not ASBench's Tables 7–8 statistic.")
#: a cell key: dataset, synthesis, pipeline, ratio, seed
CellKey = tuple


class Significance:
    """Paired tests between cells on their per-image scores.

    ``scores``  cell key (dataset, synthesis, pipeline, ratio, seed) -> (good scores, anomalous scores),
    the test images of a dataset in the same order for every cell.
    """

    def __init__(self, scores: Mapping[CellKey, tuple[Any, Any]]) -> None:
        self.scores = {tuple(k): (np.asarray(g, float), np.asarray(a, float)) for k, (g, a) in scores.items()}

    def contrast(self, dataset: str, pipeline: str, members: list[tuple[str, float]],
                 weights: list[float]) -> uncertainty.PairedDifference | None:
        """``sum w * AUROC(member)`` over the seeds every member has; members are (synthesis, ratio)."""
        seed_sets = [{k[4] for k in self.scores if k[:4] == (dataset, s, pipeline, r)} for s, r in members]
        seeds = sorted(set.intersection(*seed_sets)) if seed_sets else []
        if not seeds:
            return None
        scorers = [(np.stack([self.scores[(dataset, s, pipeline, r, seed)][0] for seed in seeds]),
                    np.stack([self.scores[(dataset, s, pipeline, r, seed)][1] for seed in seeds])) for s, r in members]
        return uncertainty.paired_contrast(scorers, weights)

    def chance_cells(self) -> list[str]:
        """Cells whose image AUROC 95 % interval contains 0.5."""
        return [f"{d}/{s}/{p}/{r:g}/s{seed}" for (d, s, p, r, seed), (g, a) in sorted(self.scores.items())
                if uncertainty.bootstrap_interval(g, a).contains(0.5)]

    def good_counts(self) -> dict[str, int]:
        return {k[0]: int(g.size) for k, (g, _) in self.scores.items()}


def determined(test: uncertainty.PairedDifference | None) -> bool:
    """A difference the report may state: significant and measured on enough anomaly-free images."""
    return test is not None and test.significant and test.n_good >= uncertainty.MIN_GOOD_IMAGES


def difference_text(test: uncertainty.PairedDifference | None) -> str:
    if test is None:
        return "–"
    return f"{test.difference:+.3f} [{test.interval.low:+.3f}, {test.interval.high:+.3f}]"


def undetermined_text(test: uncertainty.PairedDifference | None) -> str:
    """Why a comparison is not a finding, and the sample size that would make it one."""
    if test is None:
        return "not determined (no per-image scores for these cells)"
    sizes = f"{test.n_good} anomaly-free + {test.n_anomalous} defective test images"
    needed = test.images_needed()
    # a finding also needs MIN_GOOD_IMAGES anomaly-free images: as many test images as that takes
    enough_good = math.ceil(uncertainty.MIN_GOOD_IMAGES * (test.n_good + test.n_anomalous) / test.n_good)
    needed = None if needed is None else max(needed, enough_good)
    if test.significant:  # significant, but on too few anomaly-free images to trust the bootstrap
        return (f"not determined at this sample size ({sizes}; intervals from fewer than "
                f"{uncertainty.MIN_GOOD_IMAGES} anomaly-free images are not trusted; about {needed} test images "
                "would be needed if the observed difference were the true one)")
    if needed is None:
        return f"not determined at this sample size ({sizes}; no difference measured)"
    return (f"not determined at this sample size ({sizes}; about {needed} test "
            "images would be needed if the observed difference were the true one)")


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


def seed_table(frame, metric: str = "image_auroc"):
    """Per dataset × synthesis × pipeline × ratio: mean ± sd of ``metric`` over seeds, and the number of seeds."""
    grouped = frame.groupby(["dataset", "synthesis", "pipeline", "ratio"])[metric]
    table = grouped.agg(["mean", "std", "count"]).reset_index()
    table.index = [f"{r.synthesis} / {r.pipeline} / {r.ratio:g}" + (f" ({r.dataset})" if frame["dataset"].nunique() > 1 else "")
                   for r in table.itertuples()]
    table.index.name = "synthesis / pipeline / ratio"
    table[f"{metric} mean ± sd"] = [f"{m:.3f} ± {sd:.3f}" if sd == sd else f"{m:.3f} (1 seed)"
                                    for m, sd in zip(table["mean"], table["std"])]
    return table[[f"{metric} mean ± sd", "count"]].rename(columns={"count": "seeds"})


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


def ratio_table(frame, metric: str = "image_auroc", significance: Significance | None = None):
    """Per dataset × pipeline × synthesis: the metric at each ratio, best–worst gap (with, for image
    AUROC, its paired bootstrap interval and whether it is a finding), Pearson r/p of ratio against the
    metric over all cells (seeds included); plus one row per pipeline (mean over syntheses)."""
    import pandas as pd

    rows = []
    for (dataset, pipeline, synthesis), part in frame.groupby(["dataset", "pipeline", "synthesis"]):
        by_ratio = part.groupby("ratio")[metric].mean()
        r, p, n = pearson(part["ratio"], part[metric])
        row = {"dataset": dataset, "pipeline": pipeline, "synthesis": synthesis,
               **{f"ratio {k:g}": v for k, v in by_ratio.items()},
               "best ratio": float(by_ratio.idxmax()), "gap": float(by_ratio.max() - by_ratio.min()),
               "pearson_r": r, "p": p, "n": n}
        if significance is not None and metric == "image_auroc" and len(by_ratio) > 1:
            test = significance.contrast(dataset, pipeline, [(synthesis, float(by_ratio.idxmax())),
                                                             (synthesis, float(by_ratio.idxmin()))], [1.0, -1.0])
            row["best − worst [95 %]"] = difference_text(test)
            row["finding"] = "ratio matters" if determined(test) else "not determined"
        rows.append(row)
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


def hybrid_table(means, hybrids: Mapping[str, Mapping[str, float]], metric: str = "image_auroc",
                 significance: Significance | None = None):
    """Each hybrid in each context against its methods, their best, and their weighted mean; with
    ``significance`` (image AUROC), both differences as paired bootstrap intervals and ``determined``
    flags (significant on enough anomaly-free images)."""
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
            row = {"hybrid": name, "dataset": dataset, "pipeline": pipeline, "ratio": ratio,
                   **{f"{m} (w {w:.2g})": parts[m] for m, w in weights.items()},
                   "theoretical mean": theoretical, "best single": best, "hybrid value": values[name],
                   "vs best": values[name] - best, "vs theoretical": values[name] - theoretical}
            if significance is not None and metric == "image_auroc":
                best_method = max(parts, key=parts.get)
                vs_best = significance.contrast(dataset, pipeline, [(name, ratio), (best_method, ratio)], [1.0, -1.0])
                vs_mean = significance.contrast(dataset, pipeline, [(name, ratio)] + [(m, ratio) for m in weights],
                                                [1.0] + [-w for w in weights.values()])
                row.update({"vs best [95 %]": difference_text(vs_best), "vs theoretical [95 %]": difference_text(vs_mean),
                            "_vs_best": vs_best, "_vs_theoretical": vs_mean})
            rows.append(row)
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


def findings(means, hybrid, correlations, metric: str = "image_auroc",
             significance: Significance | None = None) -> list[str]:
    """ASBench's three findings, checked on this grid with paired tests: lines of Markdown."""
    return [_finding_methods(means, metric, significance), _finding_hybrids(hybrid), _finding_correlation(correlations)]


def _finding_methods(means, metric: str, significance: Significance | None) -> str:
    """1. No method universally best: per context, the best single method is a winner only when it is
    significantly above every other single method."""
    title = "1. *No method universally best*"
    singles = means[~means["hybrid"].astype(bool)]
    winners: dict[Any, str] = {}
    undetermined: list[uncertainty.PairedDifference | None] = []
    contexts = 0
    for (dataset, pipeline, ratio), part in singles.groupby(CONTEXT):
        values = part.dropna(subset=[metric])
        if len(values) < 2:
            continue
        contexts += 1
        ranked = values.sort_values(metric, ascending=False)["synthesis"].astype(str).tolist()
        tests = [None if significance is None else
                 significance.contrast(dataset, pipeline, [(ranked[0], ratio), (other, ratio)], [1.0, -1.0])
                 for other in ranked[1:]]
        if all(determined(t) and t.difference > 0 for t in tests):
            winners[(dataset, pipeline, ratio)] = ranked[0]
        else:
            undetermined.append(tests[0])  # the closest comparison: best against the runner-up
    if not contexts:
        return f"{title}: not testable (fewer than two single methods per dataset × pipeline × ratio context)."
    distinct = sorted(set(winners.values()))
    counts = ", ".join(f"{m} {list(winners.values()).count(m)}" for m in distinct) or "none"
    where = f"significant winners by {metric} in {len(winners)} of {contexts} contexts ({counts})"
    if len(distinct) > 1:
        return f"{title} — holds: {where}."
    if len(winners) == contexts:
        return f"{title} — does not hold: {where}."
    closest = undetermined_text(undetermined[0]) if undetermined else ""
    return f"{title} — {closest}: {where}; best against runner-up not significant elsewhere."


def _finding_hybrids(hybrid) -> str:
    title = "2. *Hybrids ≥ best single method*"
    if hybrid is None or hybrid.empty:
        return f"{title}: not testable (no hybrid whose methods are all in the grid)."
    if "_vs_best" not in hybrid:
        return f"{title} — not determined (the cells keep no per-image scores)."
    tests = list(hybrid["_vs_best"])
    above = sum(determined(t) and t.difference > 0 for t in tests)
    below = sum(determined(t) and t.difference < 0 for t in tests)
    counts = (f"the hybrid is significantly above its best single method in {above}, below it in {below}, "
              f"undetermined in {len(tests) - above - below} of {len(tests)} contexts")
    if below:
        return f"{title} — does not hold: {counts}."
    if above:
        return f"{title} — holds where determined: {counts}."
    closest = next((t for t in tests if t is not None), None)
    return f"{title} — {undetermined_text(closest)}: {counts}."


def _finding_correlation(correlations) -> str:
    """3. Weak correlation: determined when the Fisher-z interval of r lies inside (-WEAK_R, WEAK_R)
    (weak) or outside it (strong); n needed from the interval's half width."""
    title = "3. *Weak correlation of image-quality metrics with detection*"
    measured = [c for c in correlations if c.r == c.r and c.n >= 4]
    if not measured:
        return f"{title}: not determined at this sample size (fewer than 4 synthesis points per metric)."
    weak, strong, open_ = [], [], []
    for c in measured:
        interval = uncertainty.correlation_interval(c.r, c.n)
        if -WEAK_R < interval.low and interval.high < WEAK_R:
            weak.append(c)
        elif interval.low >= WEAK_R or interval.high <= -WEAK_R:
            strong.append(c)
        else:
            open_.append(c)
    counts = (f"{len(weak)} weak, {len(strong)} strong, {len(open_)} undetermined of {len(measured)} metric × "
              f"target pairs (|r| < {WEAK_R} counts as weak; Fisher-z 95 % interval of r)")
    if strong:
        return f"{title} — does not hold for {', '.join(f'{c.metric} vs {c.target}' for c in strong)}: {counts}."
    if weak and not open_:
        return f"{title} — holds: {counts}."
    z = uncertainty.z_value(uncertainty.LEVEL)
    room = [math.atanh(WEAK_R) - abs(math.atanh(max(-0.999, min(0.999, c.r)))) for c in open_]
    needed = [int(math.ceil((z / r) ** 2 + 3)) for r in room if r > 0]
    hint = f"; about {max(needed)} syntheses would be needed" if needed else ""
    return f"{title} — not determined at this sample size (n = {max(c.n for c in measured)} syntheses{hint}): {counts}."


def warnings_lines(frame, significance: Significance | None) -> list[str]:
    """The report's opening warnings: too few anomaly-free test images, cells at chance level."""
    lines = []
    counts = significance.good_counts() if significance is not None else \
        dict(frame.groupby("dataset")["n_good"].min()) if "n_good" in frame else {}
    for dataset, n_good in sorted(counts.items()):
        if n_good < uncertainty.MIN_GOOD_IMAGES:
            lines.append(f"**Warning**: {dataset} has {n_good} anomaly-free test image(s) (< "
                         f"{uncertainty.MIN_GOOD_IMAGES}): every interval is wide and no finding is declared from it.")
    if significance is not None:
        chance = significance.chance_cells()
        if chance:
            shown = ", ".join(chance[:8]) + (f" and {len(chance) - 8} more" if len(chance) > 8 else "")
            lines.append(f"**Warning**: {len(chance)} of {len(significance.scores)} cells have an image AUROC whose "
                         f"95 % interval contains 0.5 (chance level): {shown}.")
    else:
        lines.append("**Warning**: the cells keep no per-image scores: no interval or paired test could be computed.")
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


def write(frame, quality, skipped: Mapping[str, str], hybrids: Mapping[str, Mapping[str, float]], out: Path,
          scores: Mapping[CellKey, tuple[Any, Any]] | None = None, setup: list[str] | None = None) -> dict[str, Path]:
    """Write every table (``*.md``) and plot (``*.png``) into ``out`` and ``report.md``; returns the paths.

    ``scores``  cell key (dataset, synthesis, pipeline, ratio, seed) -> (good, anomalous) per-image
    scores: the paired tests and intervals rest on them (without them, no finding is declared)."""
    written: dict[str, Path] = {}
    significance = Significance(scores) if scores else None
    means = seed_means(frame)
    # a ratio-0 cell never sees an anomaly, so its synthesis is a label only: syntheses are compared
    # on the cells that trained with anomalies (all cells when the grid has only ratio 0)
    compared = means[means["ratio"] > 0] if (means["ratio"] > 0).any() else means
    parts = ["# Anomaly-synthesis benchmark", "",
             f"{frame['dataset'].nunique()} dataset(s), {frame['synthesis'].nunique()} syntheses, "
             f"{frame['pipeline'].nunique()} pipeline(s), ratios {sorted(frame['ratio'].unique().tolist())}, "
             f"seeds {sorted(frame['seed'].unique().tolist())}: {len(frame)} cells. Metrics on the real test set; "
             "AUROC/AP/AUPRO in [0, 1]. Syntheses are compared (methods, hybrids, quality correlation, findings) "
             "on the cells with an anomaly ratio > 0; ratio-0 cells train without any anomaly. Comparisons are "
             "paired bootstrap tests of image AUROC over the same test images and seeds; a finding is stated only "
             f"when significant on at least {uncertainty.MIN_GOOD_IMAGES} anomaly-free test images.", "",
             *(line for text in setup or [] for line in (text, "")),
             PIPELINES_NOTE, ""]
    parts[2:2] = [line for warning in warnings_lines(frame, significance) for line in (warning, "")]

    def section(name: str, text: str) -> None:
        path = out / f"{name}.md"
        write_text_atomic(path, text)
        written[name] = path
        parts.extend([text, ""])

    def figure(name: str, fig) -> None:
        written[name + "_plot"] = report.save_figure(fig, out / f"{name}.png")
        parts.extend([f"![{name}]({name}.png)", ""])

    section("cells", report.markdown(cells_table(frame), "Every cell", digits=3))
    section("seeds", report.markdown(seed_table(frame), "Image AUROC over seeds (mean ± sd)"))

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
            text += report.markdown(ratio_table(frame, m, significance),
                                    f"{m} by anomaly ratio: best–worst gap and Pearson r with the ratio") + "\n"
    section("ratios", text)
    figure("ratios", plot_ratios(frame))

    hybrid = hybrid_table(compared, hybrids, significance=significance)
    if not hybrid.empty:
        shown = hybrid.drop(columns=[c for c in hybrid.columns if c.startswith("_")])
        section("hybrids", report.markdown(shown, "Hybrids against their methods (image_auroc)", digits=3))
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

    section("findings", "### ASBench's findings on this grid\n\n" + "\n".join(findings(compared, hybrid, correlations, significance=significance)) + "\n")
    path = out / "report.md"
    write_text_atomic(path, "\n".join(parts))
    written["report"] = path
    return written
