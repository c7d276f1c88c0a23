"""Recall tables (CSV + Markdown) and plots in the style of the SYNAGEN paper (Figs. 5-7).

Every function takes the per-sample frame of an evaluation (one row per synthetic anomaly with its
metadata and a boolean ``detected_k{K}`` column per false-positive budget) and never recomputes
scores, so tables and plots always agree with ``scores.parquet``.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from synth.atomic import save_figure_atomic

#: |brightness_delta| bin edges (relative change of mean luminance; the paper's Fig. 7 uses 10 % steps)
BRIGHTNESS_EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, math.inf)


def size_bin_order(name: str) -> float:
    """Sort key of a size-bin name: ``"<0.02%"`` first, then by lower edge, ``">=15%"`` last."""
    text = str(name)
    if text.startswith("<"):
        return -1.0
    if text.startswith(">="):
        return math.inf
    match = re.match(r"\s*([0-9.eE+-]+)\s*-", text)
    return float(match.group(1)) if match else math.inf


def brightness_bin_names(edges: Sequence[float] = BRIGHTNESS_EDGES) -> list[str]:
    names = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        names.append(f">={lo * 100:g}%" if math.isinf(hi) else f"{lo * 100:g}-{hi * 100:g}%")
    return names


def brightness_bins(delta: np.ndarray, edges: Sequence[float] = BRIGHTNESS_EDGES) -> np.ndarray:
    """Bin name per value of ``|delta|`` (half-open ``[lo, hi)`` bins), object array."""
    names = np.array(brightness_bin_names(edges), dtype=object)
    idx = np.clip(np.searchsorted(np.asarray(edges[1:-1]), np.abs(delta), side="right"), 0, len(names) - 1)
    return names[idx]


def _ordered(values, column: str) -> list:
    unique = [v for v in dict.fromkeys(values) if v is not None and v == v]
    if column in ("size_bin",):
        return sorted(unique, key=size_bin_order)
    if column == "brightness_bin":
        order = brightness_bin_names()
        return sorted(unique, key=lambda v: order.index(v) if v in order else len(order))
    return sorted(unique, key=str)


def recall_long(frame, detected: str, by: Sequence[str]):
    """Long table: one row per group of ``by`` with ``n``, ``detected`` and ``recall`` (0..1)."""
    import pandas as pd

    if len(frame) == 0:
        return pd.DataFrame(columns=[*by, "n", "detected", "recall"])
    grouped = frame.groupby(list(by), dropna=True)[detected].agg(["size", "sum"]).reset_index()
    grouped = grouped.rename(columns={"size": "n", "sum": "detected"})
    grouped["detected"] = grouped["detected"].astype(int)
    grouped["recall"] = grouped["detected"] / grouped["n"]
    for column in reversed(list(by)):
        order = _ordered(grouped[column], column)
        grouped = grouped.sort_values(column, key=lambda s, o=order: s.map({v: i for i, v in enumerate(o)}),
                                      kind="stable")
    return grouped.reset_index(drop=True)


def recall_wide(long, rows: str, cols: str):
    """Pivot of a long table: ``rows`` x ``cols`` recall in percent (NaN where no sample)."""
    table = long.pivot(index=rows, columns=cols, values="recall") * 100.0
    table = table.reindex(index=_ordered(long[rows], rows), columns=_ordered(long[cols], cols))
    return table


def markdown(table, title: str | None = None, digits: int = 1) -> str:
    """A pandas table as a GitHub Markdown table (no extra dependency).

    Integers print as integers, NaN as "–"; floats in a ``recall`` column or in a wide recall table
    (all-float) with ``digits`` decimals, other floats with 4 significant digits.
    """
    head = [str(table.index.name or "")] + [str(c) for c in table.columns]
    all_float = all(str(t).startswith("float") for t in table.dtypes)
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * len(head)) + "|")
    for idx, *values in table.itertuples(name=None):
        cells = []
        for column, v in zip(table.columns, values):
            if isinstance(v, (bool, np.bool_)):
                cells.append(str(bool(v)))
            elif isinstance(v, (int, np.integer)):
                cells.append(str(int(v)))
            elif isinstance(v, (float, np.floating)):
                if v != v:
                    cells.append("–")
                elif all_float or column == "recall":
                    cells.append(f"{v:.{digits}f}")
                else:
                    cells.append(f"{v:.4g}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join([str(idx)] + cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ plots


def _figure(width: float = 5.0, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=120)
    ax.set_ylim(-2, 102)
    ax.grid(True, alpha=0.3)
    return fig, ax


#: characters per title line that fit the figure's width (a longer title is wrapped, not cut off)
TITLE_WIDTH = 56


def _title(ax, title: str) -> None:
    ax.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=10)


def plot_recall_by_size(long, group: str, title: str):
    """Recall (%) against size bin, one line per value of ``group`` (paper Fig. 5)."""
    fig, ax = _figure()
    bins = _ordered(long["size_bin"], "size_bin")
    x = np.arange(len(bins))
    for value in _ordered(long[group], group):
        part = long[long[group] == value].set_index("size_bin").reindex(bins)
        line, = ax.plot(x, part["recall"].to_numpy(dtype=float) * 100.0, marker="o", label=str(value))
        if "recall_low" in part:  # a confidence interval per cell, when the caller computed one
            ax.fill_between(x, part["recall_low"].to_numpy(dtype=float) * 100.0,
                            part["recall_high"].to_numpy(dtype=float) * 100.0, color=line.get_color(), alpha=0.12)
    ax.set_xticks(x, bins, rotation=30, ha="right")
    ax.set_xlabel("relative anomaly size")
    ax.set_ylabel("recall [%]")
    _title(ax, title)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def plot_recall_vs_k(recall_at_k: dict, n_good: int, title: str):
    """Recall (%) against the number of false positives k (paper Fig. 6); FPR on a second axis."""
    fig, ax = _figure()
    ks = sorted(int(k) for k in recall_at_k)
    ax.plot(ks, [recall_at_k[k] * 100.0 for k in ks], marker="o")
    ax.set_xticks(ks, [f"{k}\n({k / n_good * 100:.1f}%)" for k in ks])
    ax.set_xlabel("false positives k (false-positive rate)")
    ax.set_ylabel("recall [%]")
    _title(ax, title)
    fig.tight_layout()
    return fig


def plot_recall_by_brightness(long, title: str):
    """Recall (%) against |brightness delta| bin (paper Fig. 7, right)."""
    fig, ax = _figure()
    x = np.arange(len(long))
    ax.bar(x, long["recall"].to_numpy(dtype=float) * 100.0, color="tab:blue", alpha=0.8)
    for xi, n in zip(x, long["n"]):
        ax.text(xi, 2, f"n={n}", ha="center", fontsize=7, color="white")
    ax.set_xticks(x, list(long["brightness_bin"]), rotation=30, ha="right")
    ax.set_xlabel("relative brightness difference |Δ|")
    ax.set_ylabel("recall [%]")
    _title(ax, title)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    save_figure_atomic(fig, path)
    plt.close(fig)
    return path
