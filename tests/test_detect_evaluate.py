"""The evaluation on a dataset in the published layout: outputs, schema variants, processes."""

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

from detect.detectors.patchcore import PatchCore
from detect.errors import DatasetLayoutError, DetectError
from detect.evaluation.dataset import load_evaluation_splits
from detect.evaluation.evaluate import evaluate, main
from synth import DEFAULT_BINS, synthesize
from synth.vocabulary import METHOD_NAMES, MODE_NAMES, SHAPE_NAMES

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
SIZE_BINS = ["<0.02%"] + [b.name for b in DEFAULT_BINS] + [">=15%"]
CELLS = [("elongated", "transparent", "0.1-0.5%"), ("rough", "gray_noise", "0.5-1.5%"),
         ("spattered", "mean_noise", "2.5-15%"), ("complex", "transparent_noise", "2.5-15%")]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _png(array: np.ndarray) -> dict:
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """Fit folder, a save_to_disk dataset (ClassLabel columns), the same as parquet files with
    plain string columns, and a fitted detector file."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value
    from datasets import Image as ImageFeature

    root = tmp_path_factory.mktemp("published")
    rng = np.random.default_rng(0)
    brick = skimage.data.brick()
    crops = [brick[y : y + SIZE, x : x + SIZE].copy() for y, x in rng.integers(0, 512 - SIZE, size=(18, 2))]
    fit, good = crops[:12], crops[12:]
    (root / "fit").mkdir()
    for i, crop in enumerate(fit):
        Image.fromarray(crop).save(root / "fit" / f"{i:02d}.png")
    rows = []
    for i, source in enumerate(good):
        for j, (shape, mode, size_bin) in enumerate(CELLS):
            a = synthesize(source, "synagen", seed=10 * i + j, shape=shape, mode=mode, size_bin=size_bin)
            rows.append({"image": _png(a.image), "mask": _png(a.mask_u8), "source_id": f"good/{i}.png",
                         **{k: a.record[k] for k in ("method", "shape", "mode", "size_bin", "area_fraction",
                                                     "brightness_delta", "background_brightness", "bbox",
                                                     "seed", "params")}})
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    common = {"image": ImageFeature(), "mask": ImageFeature(), "source_id": Value("string"),
              "area_fraction": Value("float32"), "brightness_delta": Value("float32"),
              "background_brightness": Value("float32"), "bbox": Sequence(Value("int32"), length=4),
              "seed": Value("int64"), "params": Value("string")}
    labelled = Features({**common, "method": ClassLabel(names=list(METHOD_NAMES)),
                         "shape": ClassLabel(names=list(SHAPE_NAMES)), "mode": ClassLabel(names=list(MODE_NAMES)),
                         "size_bin": ClassLabel(names=SIZE_BINS)})
    plain = Features({**common, **{k: Value("string") for k in ("method", "shape", "mode", "size_bin")}})
    good_columns = {"image": [_png(g) for g in good], "source_id": [f"good/{i}.png" for i in range(len(good))]}
    good_features = Features({"image": ImageFeature(), "source_id": Value("string")})
    DatasetDict({"test": Dataset.from_dict(columns, features=labelled),
                 "good": Dataset.from_dict(good_columns, features=good_features)}).save_to_disk(root / "disk")
    # the published parquet layout, loaded by datasets.load_dataset(folder) through the card's configs
    (root / "parquet" / "data").mkdir(parents=True)
    Dataset.from_dict(columns, features=plain).to_parquet(root / "parquet" / "data" / "test-00000-of-00001.parquet")
    Dataset.from_dict(good_columns, features=good_features).to_parquet(
        root / "parquet" / "data" / "good-00000-of-00001.parquet")
    (root / "parquet" / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: test\n    path: data/test-*.parquet\n"
        "  - split: good\n    path: data/good-*.parquet\n---\n"
    )
    PatchCore(coreset_ratio=0.2, seed=0).fit(fit).save(root / "patchcore.pt")
    return root


def test_evaluate_command_writes_scores_summary_tables_and_plots(layout, tmp_path, capsys):
    from anomalyforge import main as anomalyforge

    out = tmp_path / "out"
    code = anomalyforge(["evaluate", "--dataset", str(layout / "disk"), "--fit", str(layout / "fit"),
                         "--option", "coreset_ratio=0.2", "--output", str(out), "--no-progress",
                         "--brightness-shape", "elongated", "--brightness-mode", "transparent",
                         "--brightness-size-bin", "0.1-0.5%"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["recall_at_k"]) == {"1", "2", "3", "4", "5"}
    for key in ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "aupro"):
        assert 0.0 <= summary[key] <= 1.0
    recalls = [summary["recall_at_k"][str(k)] for k in range(1, 6)]
    assert recalls == sorted(recalls)  # a larger budget never finds fewer anomalies
    assert summary["n_test"] == 24 and summary["n_good"] == 6
    scores = pd.read_parquet(out / "scores.parquet")
    test = scores[scores["split"] == "test"]
    assert len(test) == 24 and (scores["split"] == "good").sum() == 6
    assert set(test["shape"]) == {"elongated", "rough", "spattered", "complex"}  # names, not ClassLabel ints
    assert {"score", "detected_k1", "brightness_delta", "size_bin", "source_id", "params"} <= set(scores.columns)
    assert test["detected_k1"].mean() == pytest.approx(summary["recall_at_k"]["1"])
    for name in ("shape_size", "mode_size", "method", "brightness", "k"):
        assert (out / f"recall_{name}.csv").is_file() and (out / f"recall_{name}.md").is_file()
    for name in ("recall_shape_size", "recall_mode_size", "recall_vs_k", "recall_brightness"):
        assert (out / f"{name}.png").stat().st_size > 1000
    shape_size = pd.read_csv(out / "recall_shape_size.csv")
    assert shape_size["n"].sum() == 24
    assert summary["brightness_subset"] == {"shape": "elongated", "mode": "transparent", "size_bin": "0.1-0.5%"}
    assert pd.read_csv(out / "recall_brightness.csv")["n"].sum() == 6
    printed = capsys.readouterr().out
    assert "recall at k false positives" in printed and "| elongated |" in printed
    # large anomalies on brick are found: measured 1.0 at one false positive among 6 crops
    large = test[test["size_bin"] == "2.5-15%"]
    assert large["detected_k1"].mean() >= 0.75


def test_string_label_columns_give_the_same_results_as_classlabels(layout, tmp_path):
    from detect.registry import load_detector

    detector = load_detector(layout / "patchcore.pt")
    results = []
    for source in ("disk", "parquet"):
        test, good = load_evaluation_splits(str(layout / source))
        results.append(evaluate(test, good, detector))
    a, b = results
    assert a.summary == b.summary
    pd.testing.assert_frame_equal(a.samples[["shape", "mode", "size_bin", "score"]],
                                  b.samples[["shape", "mode", "size_bin", "score"]])


def _run(args: list[str], out: Path) -> tuple[dict, pd.DataFrame]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(args + ["--output", str(out), "--no-progress"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "summary.json").read_text()), pd.read_parquet(out / "scores.parquet")


def test_two_processes_give_exactly_the_single_process_results(layout, tmp_path):
    common = ["-m", "detect.evaluation.evaluate", "--dataset", str(layout / "parquet"),
              "--detector-file", str(layout / "patchcore.pt"), "--batch-size", "4", "--cpu"]
    single, single_scores = _run([sys.executable, *common], tmp_path / "one")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    double, double_scores = _run([*launch, *common], tmp_path / "two")
    assert (single["process_count"], double["process_count"]) == (1, 2)
    for summary in (single, double):
        summary.pop("process_count")
    assert single == double
    pd.testing.assert_frame_equal(single_scores, double_scores)


def test_fitting_on_the_evaluated_good_split_is_refused(layout, tmp_path, capsys):
    code = main(["--dataset", str(layout / "disk"), "--fit", str(layout / "disk"), "--fit-split", "good",
                 "--output", str(tmp_path / "x"), "--no-progress"])
    assert code == 2
    assert "refusing to fit on the 'good' split" in capsys.readouterr().err


def test_an_option_that_has_its_own_flag_is_refused_in_one_line(layout, tmp_path, capsys):
    code = main(["--dataset", str(layout / "disk"), "--fit", str(layout / "fit"), "--option", "image_size=128",
                 "--output", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--option cannot set image_size (set it with --image-size)" in err
    assert "Traceback" not in err


def test_a_bad_coverage_option_is_refused_in_one_line(layout, tmp_path, capsys):
    from anomalyforge import main as anomalyforge

    code = anomalyforge(["evaluate", "--dataset", str(layout / "disk"), "--fit", str(layout / "fit"),
                         "--option", "coverage=fast", "--output", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "anomalyforge evaluate: error: coverage must be one of exact, sample, off, got 'fast'" in err
    assert "Traceback" not in err


def test_a_sampled_coverage_radius_is_printed_and_recorded_as_a_lower_bound(layout, tmp_path, capsys):
    from anomalyforge import main as anomalyforge

    out = tmp_path / "out"
    code = anomalyforge(["evaluate", "--dataset", str(layout / "disk"), "--fit", str(layout / "fit"),
                         "--option", "coreset_ratio=0.2", "--option", "coverage=sample",
                         "--option", "coverage_sample=50", "--output", str(out), "--no-progress"])
    assert code == 0
    coreset = json.loads((out / "summary.json").read_text())["coreset"]
    assert (coreset["coverage"], coreset["coverage_radius"], coreset["coverage_sample"]) == ("sample", None, 50)
    assert coreset["coverage_radius_lower_bound"] > 0
    assert (f"coverage radius >= {coreset['coverage_radius_lower_bound']:.3f} (a lower bound: the farthest of "
            "50 sampled fit patches" in capsys.readouterr().out)


def test_a_dataset_without_a_good_split_is_refused(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"test": Dataset.from_dict({"image": [_png(np.zeros((16, 16), np.uint8))],
                                            "mask": [_png(np.zeros((16, 16), np.uint8))]})}).save_to_disk(tmp_path / "d")
    with pytest.raises(DatasetLayoutError, match="missing \\['good'\\]"):
        load_evaluation_splits(str(tmp_path / "d"))


def test_in_memory_evaluation_without_metadata_gives_image_and_pixel_metrics(layout):
    from detect.registry import load_detector

    detector = load_detector(layout / "patchcore.pt")
    brick = skimage.data.brick()
    good = [brick[300 + 8 * i : 300 + 8 * i + SIZE, 100:164] for i in range(4)]
    rows = []
    for i, source in enumerate(good):
        a = synthesize(source, "synagen", seed=i, size_bin="2.5-15%")
        rows.append({"image": a.image, "mask": a.mask})
    ev = evaluate(rows, good, detector, ks=(1, 2, 3, 4, 5))
    assert ev.summary["skipped_k"] == [4, 5]  # 4 good images allow at most 3 false positives
    assert set(ev.summary["recall_at_k"]) == {"1", "2", "3"}
    assert ev.summary["pixel_auroc"] is not None
    assert set(ev.tables) == {"k"}
    assert "recall_vs_k" in ev.figures()


def test_brightness_subset_must_exist(layout):
    from detect.registry import load_detector

    test, good = load_evaluation_splits(str(layout / "disk"))
    with pytest.raises(DetectError, match="no test row has shape='scar'"):
        evaluate(test, good, load_detector(layout / "patchcore.pt"), brightness_subset={"shape": "scar"})


# Runs `anomalyforge` and SIGKILLs itself right after the file whose path ends with KILL_AFTER_WRITING
# is renamed into place (every file a command writes is renamed into place, synth.atomic).
KILLER = """
import os, signal, sys
point, real_replace = os.environ["KILL_AFTER_WRITING"], os.replace
def replace(src, dst, **kwargs):
    real_replace(src, dst, **kwargs)
    if os.fspath(dst).endswith(point):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from anomalyforge import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_after_the_scores_leaves_no_summary_and_the_rerun_writes_it_whole(layout, tmp_path):
    args = ["evaluate", "--dataset", str(layout / "parquet"), "--detector-file", str(layout / "patchcore.pt"),
            "--output", str(tmp_path / "out"), "--no-progress", "--cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    first = subprocess.run([sys.executable, "-c", KILLER, *args], cwd=ROOT, capture_output=True, text=True,
                           env={**env, "KILL_AFTER_WRITING": "no file has this name"}, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    complete = (tmp_path / "out" / "summary.json").read_bytes()
    killed = subprocess.run([sys.executable, "-c", KILLER, *args], cwd=ROOT, capture_output=True, text=True,
                            env={**env, "KILL_AFTER_WRITING": "scores.parquet"}, timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    # the marker of complete results is gone (never empty, never the previous run's beside new scores)
    assert not (tmp_path / "out" / "summary.json").exists()
    again = subprocess.run([sys.executable, "-c", KILLER, *args], cwd=ROOT, capture_output=True, text=True,
                           env={**env, "KILL_AFTER_WRITING": "no file has this name"}, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "out" / "summary.json").read_bytes() == complete
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp") or p.name.endswith(".lock")]
