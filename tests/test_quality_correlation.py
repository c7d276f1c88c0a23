"""Correlation of per-method metrics with detection results (ASBench table 9)."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import scipy.stats
from PIL import Image

from detect.quality.metrics import main
from detect.quality.correlation import (
    CorrelationInputError,
    correlate,
    csv_table,
    load_results,
    markdown_table,
    summary_value,
    write_report,
)

METRICS = {
    "synagen": {"SSIM": 0.91, "PSNR": 31.0, "LPIPS": 0.08, "n_images": 30.0, "KID_std": 0.01},
    "nsa": {"SSIM": 0.95, "PSNR": 35.5, "LPIPS": 0.05},
    "cutpaste": {"SSIM": 0.97, "PSNR": 38.0, "LPIPS": 0.03},
    "draem": {"SSIM": 0.88, "PSNR": float("inf"), "LPIPS": 0.11},
}
AUROC = {"synagen": 0.71, "nsa": 0.80, "cutpaste": 0.86, "draem": 0.64}


def test_pearson_r_and_p_match_scipy_per_metric():
    rows = {c.metric: c for c in correlate(METRICS, AUROC)}
    assert list(rows) == ["SSIM", "PSNR", "LPIPS"]  # counts and *_std columns are not metrics
    methods = sorted(METRICS)
    expected = scipy.stats.pearsonr([METRICS[m]["SSIM"] for m in methods], [AUROC[m] for m in methods])
    assert rows["SSIM"].r == pytest.approx(expected.statistic)
    assert rows["SSIM"].p == pytest.approx(expected.pvalue)
    assert rows["SSIM"].n == 4
    assert rows["LPIPS"].r < -0.9  # more perceptual change, lower AUROC in this data


def test_infinite_psnr_is_left_out_of_its_correlation():
    psnr = next(c for c in correlate(METRICS, AUROC) if c.metric == "PSNR")
    assert psnr.n == 3 and "draem" not in psnr.methods
    assert math.isfinite(psnr.r)


def test_perfect_linear_relation_gives_r_one():
    metrics = {m: {"FID": 10.0 * k} for k, m in enumerate("abcde")}
    results = {m: 0.5 + 0.1 * k for k, m in enumerate("abcde")}
    (row,) = correlate(metrics, results)
    assert row.r == pytest.approx(1.0) and row.p < 1e-6


def test_too_few_methods_give_no_correlation():
    (row,) = correlate({"a": {"IS": 1.0}, "b": {"IS": 2.0}}, {"a": 0.5, "b": 0.7})
    assert row.n == 2 and math.isnan(row.r) and math.isnan(row.p)


def test_summary_lookup_by_dotted_path_and_unique_suffix():
    summary = {"detector": "patchcore", "metrics": {"image_auroc": 0.9, "recall_at_k": {"1": 0.4, "5": 0.7}}}
    assert summary_value(summary, "image_auroc") == 0.9
    assert summary_value(summary, "recall_at_k.5") == 0.7
    assert summary_value(summary, "metrics.recall_at_k.1") == 0.4
    with pytest.raises(CorrelationInputError, match="image_ap"):
        summary_value(summary, "image_ap")
    with pytest.raises(CorrelationInputError, match="2 entries"):
        summary_value({"a": {"x": 1}, "b": {"x": 2}}, "x")


def test_report_files(tmp_path):
    rows = correlate(METRICS, AUROC)
    paths = write_report(rows, tmp_path / "report")
    table = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert [r["metric"] for r in table] == ["SSIM", "PSNR", "LPIPS"]
    assert float(table[0]["r"]) == pytest.approx(rows[0].r, abs=1e-4)
    assert "| SSIM vs image_auroc | 4 |" in paths["markdown"].read_text()
    with Image.open(paths["plot"]) as png:
        assert png.format == "PNG" and png.width > 300
        pixels = np.asarray(png.convert("L"))
    assert pixels.std() > 5  # something is drawn


def test_correlate_cli_from_metric_files_and_summaries(tmp_path, capsys):
    (tmp_path / "quality.json").write_text(json.dumps({m: {k: v for k, v in d.items() if k != "PSNR"} for m, d in METRICS.items()}))
    (tmp_path / "diversity.json").write_text(json.dumps({m: {"LPIPS□": 0.3 + 0.1 * k} for k, m in enumerate(sorted(METRICS))}))
    for method, auroc in AUROC.items():
        (tmp_path / "runs" / method).mkdir(parents=True)
        (tmp_path / "runs" / method / "summary.json").write_text(json.dumps({"image_auroc": auroc, "recall_at_k": {"1": auroc / 2}}))
    code = main(["correlate", "--metrics", str(tmp_path / "quality.json"), "--metrics", str(tmp_path / "diversity.json"),
                 "--summary", str(tmp_path / "runs"), "--target", "recall_at_k.1", "--output-dir", str(tmp_path / "out")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "LPIPS□ vs recall_at_k.1" in printed
    assert (tmp_path / "out" / "correlation.png").is_file()


def test_results_from_method_equals_path(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"image_auroc": 0.75}))
    assert load_results([f"nsa={tmp_path / 's.json'}"], "image_auroc") == {"nsa": 0.75}
    with pytest.raises(CorrelationInputError, match="does not exist"):
        load_results([f"nsa={tmp_path / 'missing.json'}"], "image_auroc")


def test_markdown_and_csv_mark_missing_values():
    (row,) = correlate({"a": {"IS": 1.0}}, {"a": 0.5})
    assert "n/a" in markdown_table([row]) and "n/a" in csv_table([row])
