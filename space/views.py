"""What the tabs show: table columns and rows, the detector's heatmap gallery, its colour bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from synth.atomic import save_figure_atomic
from synth.preview import contour_overlay, heatmap_overlay, shrink
from synth.record import RECORD_COLUMNS, Column

from detect.evaluation.calibration import CLEAN, Calibration

from space.config import PREVIEW_SIDE
from space.storage import save_view


#: the record columns of each generated anomaly (``params``, long JSON, stays in the downloads)
_SHOWN = [c for c in RECORD_COLUMNS if c.name != "params"]
TABLE_COLUMNS = ["area_%" if c.name == "area_fraction" else c.name for c in _SHOWN] + ["file_name"]


#: what the numbers of the table mean (the schema's own words; area as a percentage here)
TABLE_LEGEND = " · ".join(
    f"**{'area_%' if c.name == 'area_fraction' else c.name}**: "
    + ("changed pixels / all pixels, in %" if c.name == "area_fraction" else c.doc)
    for c in _SHOWN if c.kind in ("float32", "bbox")
)


def _cell(column: Column, value: Any) -> Any:
    if column.name == "area_fraction":
        return round(100.0 * float(value), 4)
    if column.kind == "float32":
        return round(float(value), 1 if column.name == "angle" else 4)
    if column.kind == "bbox":
        return " ".join(str(v) for v in value)
    return int(value) if column.kind == "int64" else value


def record_table(rows: Sequence[dict]) -> pd.DataFrame:
    records = [dict(zip(TABLE_COLUMNS, [*(_cell(c, row[c.name]) for c in _SHOWN), row["file_name"]])) for row in rows]
    return pd.DataFrame(records, columns=TABLE_COLUMNS)



DETECT_COLUMNS = ["file", "verdict", "x threshold", "score", "threshold"]
STRESS_COLUMNS = ["by", "value", "size_bin", "n", "detected", "recall", "recall_low", "recall_high"]
BROWSE_COLUMNS = ["source_id", "method", "shape", "mode", "size_bin", "area_%", "brightness_delta", "seed"]


def colour_bar(path: Path, detector: str) -> str:
    """A horizontal colour bar for the heatmaps: typical anomaly-free level, threshold, twice as far."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.cm import ScalarMappable

    fig, ax = plt.subplots(figsize=(6.0, 0.9), dpi=110)
    bar = fig.colorbar(ScalarMappable(Normalize(0, 2), colormaps["inferno"]), cax=ax, orientation="horizontal",
                       ticks=[0, 1, 2])
    bar.ax.set_xticklabels(["typical anomaly-free", "threshold", "2x threshold"], fontsize=8)
    bar.ax.set_title(f"{detector} anomaly map, per image: transparent below the typical level", fontsize=8)
    fig.subplots_adjust(left=0.16, right=0.84, top=0.62, bottom=0.38)  # room for the end labels
    save_figure_atomic(fig, path)
    plt.close(fig)
    return str(path)


#: colour of the true mask's outline on a heatmap (red is too close to the heat colours)
TRUTH_RGB = (0, 255, 255)


def detect_views(folder: Path, tests: Sequence[tuple[str, np.ndarray, Any]], result: Any,
                  calibration: Calibration, one_image: bool) -> tuple[list[tuple[str, str]], list[dict]]:
    """(gallery of captioned heatmaps, table rows) for the scored test images."""
    gallery, rows = [], []
    for i, ((name, image, truth), score, amap) in enumerate(zip(tests, result.scores, result.maps)):
        # one scale for every image, anchored on the reference: the threshold is mid-scale
        heat = heatmap_overlay(image, amap, calibration.typical, calibration.heat_top, opacity=0.6,
                               max_side=PREVIEW_SIDE)
        if truth is not None and truth is not CLEAN:  # the true mask outlined on the heatmap
            heat = contour_overlay(heat, shrink(truth.astype(np.uint8) * 255, max(heat.shape[:2])) > 0,
                                   colour=TRUTH_RGB)
        overlay = save_view(folder, f"heatmap_{i}.png", heat)
        verdict = calibration.verdict(score, truth, one_image)
        ratio = calibration.ratio(score) if calibration.threshold > 0 else None  # no scale without a threshold
        scale = f"{ratio:.2f}x threshold" if ratio is not None else f"score {float(score):.4g}"
        gallery.append((overlay, f"{verdict.upper()} · {scale} · {name}"))
        rows.append({"file": name, "verdict": verdict, "x threshold": None if ratio is None else round(ratio, 3),
                     "score": round(float(score), 4), "threshold": round(calibration.threshold, 4)})
    return gallery, rows
