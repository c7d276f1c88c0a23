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
from detect.evaluation.bench_report import hybrid_table, ratio_table, seed_means

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
    assert {"SSIM", "PSNR"} <= set(quality.columns)
    # 4 synthetic and 3 real images: FID, KID and IS are refused with the reason, never a number
    assert not any(c.startswith(("FID", "KID", "IS")) for c in quality.columns)
    quality_md = (out / "quality.md").read_text()
    assert "FID, KID, IS (inception)" in quality_md and "LPIPS" in quality_md  # skipped, with the missing file named
    assert "inception_v3_google" in quality_md
    assert "FID_EfficientNetLite0 (gravel): refused: needs at least 1281 images per set" in quality_md
    assert "gravel, reference: 3 real defect images of gravel" in quality_md
    assert "gravel, FID/KID/IS: efficientnet-lite0 features (D = 1280), 4 synthetic and 3 reference images" in quality_md

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


def test_bench_quality_compares_the_anomalies_with_the_real_defects_of_the_grid(tmp_path, mvtec_folder,
                                                                                no_downloadable_weights):
    from anomalyforge import main
    from detect.evaluation import bench
    from detect.evaluation.defect_sets import read_defect_set
    from detect.quality.metrics import paired_quality, unpaired_quality

    config = _config(tmp_path, mvtec_folder, methods=["cutpaste"], hybrids={}, ratios=[1.0],
                     pipelines={"draem": {"steps": 1, "train_batch_size": 2}},
                     quality={"images": 4, "features": [], "lpips": None})
    assert main(["bench", str(config), "--no-progress"]) == 0
    measured = pd.read_parquet(tmp_path / "out" / "quality.parquet").iloc[0]
    ds = read_defect_set(mvtec_folder)
    images, sources = bench.quality_anomalies(ds.load_images(ds.train_good), bench.Synthesis("cutpaste", {"cutpaste": 1.0}),
                                              4, SIZE)
    real = [bench._rgb(s.load_image()) for s in ds.test_defects]  # stored at SIZE already
    against_real = unpaired_quality(images, real, with_lpips=False).means()
    assert measured["SSIM"] == against_real["SSIM"] and measured["PSNR"] == against_real["PSNR"]
    assert measured["SSIM"] != paired_quality(images, sources, with_lpips=False).means()["SSIM"]  # not the sources
    assert measured["n_reference"] == 3 and measured["reference"].startswith("3 real defect images of gravel")


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
    assert row["r(ratio, metric)"] == pytest.approx(expected) and row["n"] == 4
    assert "pearson_r" not in row  # not under a name that could pass for ASBench's statistic


def _gap_mean_frame(gaps: dict, n_good: int = 40) -> pd.DataFrame:
    """Methods whose AUROC alternates mean ± gap/2 over ratios 0.25..1 on two pipelines (seeds 0, 1),
    mean = 0.95 − gap: a higher mean has exactly a smaller gap (r = −1). Ratio 0 and a hybrid with
    another relation are in the grid and must not enter ASBench's statistic."""
    rows = []
    for method, gap in gaps.items():
        mean = 0.95 - gap
        for ratio, sign in ((0.25, 1), (0.5, -1), (0.75, 1), (1.0, -1)):
            for pipeline in ("draem", "segmenter"):
                for seed, noise in ((0, 0.01), (1, -0.01)):  # averages out over the seeds
                    rows.append((method, pipeline, ratio, seed, mean + sign * gap / 2 + noise))
        rows.append((method, "draem", 0.0, 0, 0.2))  # ratio 0: no anomaly trained, not a ratio of Tables 7–8
    rows += [("mix", "draem", r, 0, v) for r, v in ((0.25, 0.99), (0.5, 0.1))]
    frame = _frame(rows)
    frame["n_good"] = n_good
    return frame


def test_asbench_ratio_statistic_relates_each_methods_range_to_its_mean_across_methods():
    from detect.evaluation.bench_report import gap_mean_statistic

    gaps = {"a": 0.02, "b": 0.05, "c": 0.1, "d": 0.2, "e": 0.3}
    (stat,) = gap_mean_statistic(_gap_mean_frame(gaps))
    assert sorted(stat.per_synthesis) == sorted(gaps)  # the hybrid is left out, as in ASBench's tables
    for method, gap in gaps.items():
        assert stat.per_synthesis[method] == pytest.approx((0.95 - gap, gap))
    assert stat.n == 5 and stat.r == pytest.approx(-1.0)
    assert stat.interval.high < 0


def test_report_states_the_asbench_statistic_as_a_finding_only_when_determined(tmp_path):
    from detect.evaluation import bench_report

    exact = _gap_mean_frame({"a": 0.02, "b": 0.05, "c": 0.1, "d": 0.2, "e": 0.3})
    bench_report.write(exact, pd.DataFrame(), {}, {}, tmp_path)
    ratios = (tmp_path / "ratios.md").read_text()
    assert "ASBench's ratio statistic (Tables 7–8)" in ratios and "r(ratio, metric)" in ratios
    assert "Pearson r(range, mean) across 5 syntheses = -1.000" in ratios
    assert "syntheses with a higher mean have a smaller best–worst gap over ratios" in ratios

    # the same exact relation on 2 anomaly-free images: no finding
    bench_report.write(_gap_mean_frame({"a": 0.02, "b": 0.05, "c": 0.1, "d": 0.2, "e": 0.3}, n_good=2),
                       pd.DataFrame(), {}, {}, tmp_path)
    ratios = (tmp_path / "ratios.md").read_text()
    assert "not determined at this sample size (2 anomaly-free test images < 20)" in ratios
    assert "higher mean have a" not in ratios

    # no relation (gap and mean independent): the interval contains 0, no finding
    flat = _gap_mean_frame({"a": 0.02, "b": 0.3, "c": 0.1, "d": 0.05, "e": 0.2})
    flat.loc[flat["synthesis"].isin(["b", "d"]), "image_auroc"] -= 0.5
    bench_report.write(flat, pd.DataFrame(), {}, {}, tmp_path)
    ratios = (tmp_path / "ratios.md").read_text()
    assert "not determined at this sample size (the interval contains 0)" in ratios

    # three methods: r = −1 exactly, but too few syntheses for an interval
    bench_report.write(_gap_mean_frame({"a": 0.02, "b": 0.1, "c": 0.3}), pd.DataFrame(), {}, {}, tmp_path)
    ratios = (tmp_path / "ratios.md").read_text()
    assert "across 3 syntheses = -1.000" in ratios and "a Fisher-z interval needs at least 4 syntheses" in ratios


def _scored_grid(n_good: int, n_anomalous: int, separation: dict) -> tuple[pd.DataFrame, dict]:
    """Cells of methods a and b (pipeline draem, ratios 0.5 and 1, seeds 0-2) on one test set whose
    per-image scores are drawn: anomalous images score ``separation[(method, ratio)]`` standard
    deviations above the anomaly-free ones (0: a random scorer)."""
    from detect.evaluation import metrics

    rng = np.random.default_rng(0)
    rows, scores = [], {}
    for (method, ratio), shift in separation.items():
        for seed in range(3):
            good, anomalous = rng.normal(0, 1, n_good), rng.normal(shift, 1, n_anomalous)
            scores[("d", method, "draem", ratio, seed)] = (good.tolist(), anomalous.tolist())
            auroc = metrics.image_auroc(good, anomalous)
            rows.append({"dataset": "d", "synthesis": method, "hybrid": False, "pipeline": "draem", "ratio": ratio,
                         "seed": seed, "image_auroc": auroc, "image_ap": auroc, "pixel_auroc": auroc,
                         "pixel_ap": auroc, "aupro": auroc, "n_good": n_good, "n_test": n_anomalous})
    return pd.DataFrame(rows), scores


def _report(tmp_path, frame, scores) -> str:
    from detect.evaluation import bench_report

    bench_report.write(frame, pd.DataFrame(), {}, {}, tmp_path, scores)
    return (tmp_path / "report.md").read_text()


def test_report_finds_the_clearly_better_method_and_nothing_else(tmp_path):
    # a separates anomalies by 3 sd, b scores at random, in both ratio contexts
    frame, scores = _scored_grid(40, 40, {("a", 0.5): 3.0, ("a", 1.0): 3.0, ("b", 0.5): 0.0, ("b", 1.0): 0.0})
    report = _report(tmp_path, frame, scores)
    assert "1. *No method universally best* — does not hold: significant winners by image_auroc in 2 of 2 " \
           "contexts (a 2)" in report
    assert "Warning**: d has" not in report  # 40 anomaly-free images: no small-sample warning
    assert "6 of 12 cells have an image AUROC whose 95 % interval contains 0.5" in report  # b's cells
    ratios = (tmp_path / "ratios.md").read_text()
    assert "ratio matters" not in ratios  # the ratio changes nothing here, and the report does not claim it does
    assert " ± " in (tmp_path / "seeds.md").read_text()


def test_report_finds_a_different_winner_per_context(tmp_path):
    frame, scores = _scored_grid(40, 40, {("a", 0.5): 3.0, ("a", 1.0): 0.0, ("b", 0.5): 0.0, ("b", 1.0): 3.0})
    report = _report(tmp_path, frame, scores)
    assert "1. *No method universally best* — holds: significant winners by image_auroc in 2 of 2 contexts (a 1, b 1)" \
        in report
    assert "ratio matters" in (tmp_path / "ratios.md").read_text()


def test_report_on_two_good_images_declares_no_finding_and_warns_at_the_top(tmp_path):
    # the same clear difference, measured on 2 anomaly-free x 8 defective images
    frame, scores = _scored_grid(2, 8, {("a", 0.5): 3.0, ("a", 1.0): 3.0, ("b", 0.5): 0.0, ("b", 1.0): 0.0})
    report = _report(tmp_path, frame, scores)
    top = report.split("### Every cell")[0]
    assert "**Warning**: d has 2 anomaly-free test image(s) (< 20)" in top
    assert "1. *No method universally best* — not determined at this sample size (2 anomaly-free + 8 defective" in report
    line = report.split("### ASBench's findings")[1].splitlines()[2]
    assert "does not hold" not in line
    # the sample size that could decide it has at least 20 anomaly-free images: 100 test images at 2 in 10
    import re

    assert int(re.search(r"about (\d+) test images would be needed", line).group(1)) >= 100


def _one_cell_config(tmp_path, mvtec_folder, **pipeline):
    return _config(tmp_path, mvtec_folder, methods=["draem"], hybrids={}, ratios=[1.0], seeds=[0], quality=False,
                   pipelines={"draem": {"steps": 2, "train_batch_size": 2, "lr": 0.001, **pipeline}})


def test_a_changed_configuration_never_reuses_a_cell_trained_with_another(tmp_path, mvtec_folder):
    from anomalyforge import main

    out = tmp_path / "out"
    assert main(["bench", str(_one_cell_config(tmp_path, mvtec_folder)), "--no-progress"]) == 0
    first = _results(out)
    assert main(["bench", str(_one_cell_config(tmp_path, mvtec_folder, steps=3)), "--no-progress"]) == 0
    both = _results(out)
    assert len(both) == 2 and both[next(iter(first))] == first[next(iter(first))]  # the old cell is left as it was
    new = json.loads(both[next(name for name in both if name not in first)][1])
    assert new["steps"] == 3 and new["settings"]["options"]["steps"] == 3
    frame = pd.read_parquet(out / "results.parquet")
    assert frame["steps"].tolist() == [3]  # the report rests on the cell of this configuration only
    header = (out / "report.md").read_text().split("### Every cell")[0]
    setup = next(line for line in header.splitlines() if line.startswith("Pipeline draem: "))
    assert "Images resized to 64 × 64 px" in header and "ASBench's are DRAEM, DestSeg, MemSeg" in header
    for item in ("steps 3", "train_batch_size 2", "lr 0.001", "rec_width 16", "disc_width 8"):
        assert item in setup, item


def test_a_resumed_cell_counts_the_training_time_of_every_segment(tmp_path, mvtec_folder):
    from anomalyforge import main
    from detect.evaluation import bench
    from detect.registry import build_detector
    from detect.training.synthetic_training import train_on_synthetic

    path = _one_cell_config(tmp_path, mvtec_folder, steps=4)
    config = load_config(path)
    cell = bench.cells(config)[0]
    checkpoints = tmp_path / "out" / "cells" / cell.id / "checkpoints"
    # an earlier run that stopped after 2 of 4 steps and had spent 500 s on them
    detector = build_detector("draem", methods=("draem",), anomaly_ratio=1.0, seed=0, image_size=SIZE,
                              **config.pipelines["draem"])
    fit = detector.prepare_fit(bench._Datasets(config).train_images("gravel"))
    train_on_synthetic(detector, fit, checkpoint_dir=checkpoints, checkpoint_every=1, stop_at=2, progress=False)
    (checkpoints / bench.TIME_FILE).write_text(json.dumps({"train_seconds": 500.0}))
    assert main(["bench", str(path), "--no-progress"]) == 0
    result = json.loads((tmp_path / "out" / "cells" / cell.id / "result.json").read_text())
    assert result["steps"] == 4 and result["train_seconds"] >= 500.0


def test_own_detectors_are_evaluated_beside_the_grid_with_paths_relative_to_the_config(tmp_path, mvtec_folder):
    from anomalyforge import main
    from detect.evaluation.defect_sets import read_defect_set
    from detect.evaluation.evaluate import evaluate_defect_set
    from detect.registry import build_detector

    (tmp_path / "contrast.py").write_text(
        "import numpy as np\n\n"
        "class Contrast:\n"
        "    def score(self, images):\n"
        "        maps = [np.abs(i.astype(np.float32).mean(axis=2) - i.mean()) for i in images]\n"
        "        return [float(m.max()) for m in maps], maps\n")
    config = _config(tmp_path, mvtec_folder, methods=["cutpaste"], hybrids={}, ratios=[0.0], quality=False,
                     detectors={"contrast": "python:contrast.py:Contrast"})
    assert main(["bench", str(config), "--no-progress"]) == 0
    external = pd.read_csv(tmp_path / "out" / "external.csv")
    assert external[["dataset", "detector"]].values.tolist() == [["gravel", "contrast"]]
    reference = evaluate_defect_set(read_defect_set(mvtec_folder),
                                    build_detector(f"python:{tmp_path / 'contrast.py'}:Contrast"), ks=(1,)).summary
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert external.loc[0, key] == pytest.approx(reference[key], rel=1e-12)
    assert "## external" in (tmp_path / "out" / "report.md").read_text()
    # a rerun serves the finished result; a changed model at the same path is evaluated again
    (result,) = (tmp_path / "out" / "external").glob("*/result.json")
    finished = result.stat().st_mtime_ns
    assert main(["bench", str(config), "--no-progress"]) == 0
    assert result.stat().st_mtime_ns == finished
    (tmp_path / "contrast.py").write_text((tmp_path / "contrast.py").read_text().replace("m.max()", "m.mean()"))
    assert main(["bench", str(config), "--no-progress"]) == 0
    results = [json.loads(p.read_text()) for p in (tmp_path / "out" / "external").glob("*/result.json")]
    assert len(results) == 2 and results[0]["settings"]["model"] != results[1]["settings"]["model"]
    assert len(pd.read_csv(tmp_path / "out" / "external.csv")) == 1  # the report reads the current model's only
    with pytest.raises(BenchConfigError, match="'bad' must name onnx:PATH"):
        load_config(_config(tmp_path, mvtec_folder, detectors={"bad": "patchcore"}))
