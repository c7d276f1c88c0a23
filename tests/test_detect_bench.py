"""``anomalyforge bench``: a grid of syntheses × pipelines × ratios trained on ``train/good`` of an
MVTec-layout folder and evaluated on its test set, resumable, with ASBench-style reports.

The folder is built from CC0 textures; its "real" defects are CutOut anomalies, a method the grid
never trains with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image

from detect.evaluation.bench import BenchConfigError, load_config
from detect.evaluation.bench_report import findings, hybrid_table, ratio_table, seed_means

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64


def _crops(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    image = skimage.data.gravel()
    return [image[y : y + SIZE, x : x + SIZE].copy() for y, x in rng.integers(0, 512 - SIZE, size=(n, 2))]


@pytest.fixture(scope="module")
def mvtec_folder(tmp_path_factory):
    from synth import synthesize

    root = tmp_path_factory.mktemp("bench") / "gravel"
    crops = _crops(14, 0)
    for split, images in (("train/good", crops[:8]), ("test/good", crops[8:11])):
        (root / split).mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray(image).save(root / split / f"{i:03d}.png")
    (root / "test" / "cutout").mkdir(parents=True)
    (root / "ground_truth" / "cutout").mkdir(parents=True)
    for i, source in enumerate(crops[11:]):
        a = synthesize(source, "cutout", seed=10 + i, size_bin="2.5-15%")
        Image.fromarray(a.image).save(root / "test" / "cutout" / f"{i:03d}.png")
        Image.fromarray(a.mask.astype(np.uint8) * 255).save(root / "ground_truth" / "cutout" / f"{i:03d}_mask.png")
    return root


def _config(tmp_path, mvtec_folder, **changes) -> object:
    config = {
        "output": "out",
        "image_size": SIZE,
        "datasets": {"gravel": str(mvtec_folder)},
        "methods": ["draem", "cutpaste"],
        "hybrids": {"mix": {"draem": 0.5, "cutpaste": 0.5}},
        "pipelines": {"draem": {"steps": 2, "train_batch_size": 2, "lr": 0.001}},
        "ratios": [0.0, 1.0],
        "seeds": [0],
        "quality": {"images": 4, "features": ["inception", "efficientnet-lite0"], "lpips": "alex"},
        **changes,
    }
    import yaml

    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def no_downloadable_weights(tmp_path, monkeypatch):
    """An empty torch hub cache: Inception and AlexNet weights are not available (as offline)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def _results(out):
    return {p.parent.name: (p.stat().st_mtime_ns, p.read_text()) for p in sorted((out / "cells").glob("*/result.json"))}


def test_bench_runs_the_grid_writes_reports_and_resumes_without_recomputing(tmp_path, mvtec_folder, no_downloadable_weights,
                                                                          capsys):
    from anomalyforge import main

    config = _config(tmp_path, mvtec_folder)
    assert main(["bench", str(config), "--no-progress"]) == 0
    out = tmp_path / "out"
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 3 * 1 * 2  # syntheses × pipelines × ratios
    assert set(frame["synthesis"]) == {"draem", "cutpaste", "mix"} and set(frame["ratio"]) == {0.0, 1.0}
    assert frame["hybrid"].tolist().count(True) == 2
    for metric in ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "aupro"):
        assert frame[metric].between(0, 1).all(), metric
    assert (frame["n_test"] == 3).all() and (frame["n_good"] == 3).all()
    assert pd.read_csv(out / "results.csv").shape[0] == 6

    printed = capsys.readouterr().out  # a short summary and where the report is, not the report
    assert f"report (tables, plots, ASBench's findings): {out / 'report.md'}" in printed
    assert "image AUROC per synthesis" in printed and "Mean per synthesis" not in printed
    assert len(printed.splitlines()) <= 6
    report = (out / "report.md").read_text()
    for title in ("Mean per synthesis", "by anomaly ratio", "Hybrids against their methods",
                  "Pearson r and p", "Skipped metrics", "ASBench's findings"):
        assert title in report, title
    for plot in ("methods.png", "ratios.png", "hybrids.png", "quality.png"):
        assert (out / plot).stat().st_size > 1000, plot
    quality = pd.read_parquet(out / "quality.parquet")
    assert set(quality["synthesis"]) == {"draem", "cutpaste", "mix"}
    assert {"SSIM", "PSNR", "FID_EfficientNetLite0", "KID_EfficientNetLite0", "IS_EfficientNetLite0"} <= set(quality.columns)
    quality_md = (out / "quality.md").read_text()
    assert "FID, KID, IS (inception)" in quality_md and "LPIPS" in quality_md  # skipped, with the missing file named
    assert "inception_v3_google" in quality_md

    # second run: every cell is finished, nothing is recomputed
    before = _results(out)
    assert main(["bench", str(config), "--no-progress"]) == 0
    assert _results(out) == before

    # a lost cell is recomputed alone, to the same result (same seed, same data)
    lost = sorted(before)[0]
    (out / "cells" / lost / "result.json").unlink()
    assert main(["bench", str(config), "--no-progress"]) == 0
    after = _results(out)
    assert after[lost][0] != before[lost][0]
    recomputed, original = json.loads(after[lost][1]), json.loads(before[lost][1])
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert recomputed[key] == original[key]
    assert {k: v for k, v in after.items() if k != lost} == {k: v for k, v in before.items() if k != lost}


def test_ratio_zero_cells_train_without_anomalies_whatever_the_method(tmp_path, mvtec_folder, no_downloadable_weights):
    from anomalyforge import main

    config = _config(tmp_path, mvtec_folder, ratios=[0.0], hybrids={}, quality=False)
    assert main(["bench", str(config), "--no-progress"]) == 0
    frame = pd.read_parquet(tmp_path / "out" / "results.parquet").set_index("synthesis")
    # no anomaly is ever drawn at ratio 0: both methods train the same network on the same images
    assert frame.loc["draem", "image_auroc"] == frame.loc["cutpaste", "image_auroc"]
    assert frame.loc["draem", "aupro"] == frame.loc["cutpaste", "aupro"]


@pytest.mark.parametrize("change, message", [
    ({"methods": ["no_such_method"]}, "unknown synth method"),
    ({"pipelines": {"patchcore": {}}}, "unknown pipeline"),
    ({"ratios": [1.5]}, "anomaly_ratio"),
    ({"hybrids": {"h": {"draem": 1.0}}}, "at least two methods"),
    ({"pipelines": {"draem": {"anomaly_ratio": 0.5}}}, "set by the grid"),
    ({"colour": "blue"}, "unknown config key"),
])
def test_bad_configs_are_refused_with_the_reason(tmp_path, mvtec_folder, change, message):
    with pytest.raises(BenchConfigError, match=message):
        load_config(_config(tmp_path, mvtec_folder, **change))


@pytest.mark.slow
def test_two_processes_share_the_cells_and_give_the_single_process_results(tmp_path, mvtec_folder):
    root = Path(__file__).resolve().parents[1]
    config = _config(tmp_path, mvtec_folder, hybrids={}, quality=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    common = ["-m", "detect.evaluation.bench", str(config), "--cpu"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    frames = {}
    for name, prefix in (("one", [sys.executable]), ("two", launch)):
        proc = subprocess.run([*prefix, *common, "--output", str(tmp_path / name)], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        frames[name] = pd.read_parquet(tmp_path / name / "results.parquet")
        ran = {line.split("]")[0] for line in proc.stderr.splitlines() if line.startswith("[bench ")}
        assert ran == ({"[bench 0"} if name == "one" else {"[bench 0", "[bench 1"})
    metrics = ["synthesis", "ratio", "image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "aupro"]
    pd.testing.assert_frame_equal(frames["one"][metrics], frames["two"][metrics])


# --------------------------------------------------------------------------- report arithmetic
def _frame(rows):
    return pd.DataFrame(
        [{"dataset": "d", "synthesis": s, "hybrid": s == "mix", "pipeline": p, "ratio": r, "seed": seed,
          "image_auroc": v, "image_ap": v, "pixel_auroc": v, "pixel_ap": v, "aupro": v}
         for s, p, r, seed, v in rows]
    )


def test_hybrid_is_compared_with_its_best_method_and_the_weighted_mean_of_its_methods():
    frame = _frame([("a", "draem", 1.0, 0, 0.6), ("a", "draem", 1.0, 1, 0.8),  # a: mean 0.7 over seeds
                    ("b", "draem", 1.0, 0, 0.9), ("mix", "draem", 1.0, 0, 0.85)])
    table = hybrid_table(seed_means(frame), {"mix": {"a": 0.25, "b": 0.75}})
    row = table.iloc[0]
    assert row["theoretical mean"] == pytest.approx(0.25 * 0.7 + 0.75 * 0.9)
    assert row["best single"] == pytest.approx(0.9)
    assert row["vs best"] == pytest.approx(-0.05)
    assert row["vs theoretical"] == pytest.approx(0.85 - 0.85)


def test_ratio_table_gives_the_best_worst_gap_and_the_correlation_with_the_ratio():
    frame = _frame([("a", "draem", r, 0, v) for r, v in ((0.25, 0.6), (0.5, 0.7), (0.75, 0.8), (1.0, 0.75))])
    row = ratio_table(frame).loc["draem / a"]
    assert row["gap"] == pytest.approx(0.2)
    assert row["best ratio"] == 0.75
    expected = np.corrcoef([0.25, 0.5, 0.75, 1.0], [0.6, 0.7, 0.8, 0.75])[0, 1]
    assert row["pearson_r"] == pytest.approx(expected) and row["n"] == 4


def test_findings_name_the_winning_methods():
    frame = _frame([("a", "draem", 0.5, 0, 0.9), ("b", "draem", 0.5, 0, 0.7),
                    ("a", "draem", 1.0, 0, 0.6), ("b", "draem", 1.0, 0, 0.8)])
    lines = findings(seed_means(frame), None, [])
    assert "holds" in lines[0] and "a 1, b 1" in lines[0]
    frame = _frame([("a", "draem", 0.5, 0, 0.9), ("b", "draem", 0.5, 0, 0.7)])
    assert "does not hold" in findings(seed_means(frame), None, [])[0]
    # a context where every method ties names no winner
    frame = _frame([("a", "draem", 0.5, 0, 0.9), ("b", "draem", 0.5, 0, 0.7),
                    ("a", "draem", 1.0, 0, 0.0), ("b", "draem", 1.0, 0, 0.0)])
    line = findings(seed_means(frame), None, [])[0]
    assert "does not hold" in line and "a 1" in line and "1 context(s) where all methods tie" in line
