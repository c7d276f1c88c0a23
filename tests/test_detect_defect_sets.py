"""Real-defect folders (MVTec AD, BTAD, VisA layouts): reading them, and evaluating on them from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image

from detect.errors import DatasetLayoutError
from detect.evaluation.defect_sets import detect_layout, read_btad, read_defect_set, read_mvtec, read_visa
from synth import synthesize

SIZE = 64
METHODS = ("cutout", "synagen")  # each becomes a defect class: test/<method>/, ground_truth/<method>/

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _crops(n: int, seed: int) -> list[np.ndarray]:
    """``n`` 64x64 gray uint8 crops, cycling through brick, grass and gravel (CC0 textures)."""
    rng = np.random.default_rng(seed)
    textures = [skimage.data.brick(), skimage.data.grass(), skimage.data.gravel()]
    out = []
    for i in range(n):
        texture = textures[i % 3]
        y, x = rng.integers(0, 512 - SIZE, size=2)
        out.append(np.ascontiguousarray(texture[y : y + SIZE, x : x + SIZE]))
    return out


def _save(folder: Path, name: str, array: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(folder / name)


@pytest.fixture(scope="module")
def mvtec(tmp_path_factory) -> Path:
    """An MVTec AD-layout folder: 12 train/good, 8 test/good, 3 anomalies per synth method."""
    root = tmp_path_factory.mktemp("textures")
    for i, crop in enumerate(_crops(12, 0)):
        _save(root / "train" / "good", f"{i:03d}.png", crop)
    for i, crop in enumerate(_crops(8, 1)):
        _save(root / "test" / "good", f"{i:03d}.png", crop)
    for m, method in enumerate(METHODS):
        for i, source in enumerate(_crops(3, 2 + m)):
            anomaly = synthesize(source, method, seed=i, size_bin="2.5-15%")
            _save(root / "test" / method, f"{i:03d}.png", anomaly.image)
            _save(root / "ground_truth" / method, f"{i:03d}_mask.png", anomaly.mask_u8)
    return root


def _evaluate(args: list[str], capsys) -> tuple[int, str, str]:
    from anomalyforge import main as anomalyforge

    code = anomalyforge(["evaluate", *args, "--option", "coreset_ratio=0.25", "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------ reading


def test_mvtec_folder_reads_as_train_good_test_good_and_defects_with_masks(mvtec):
    ds = read_defect_set(mvtec)
    assert (ds.layout, ds.name) == ("mvtec", mvtec.name)
    assert (len(ds.train_good), len(ds.test_good), len(ds.test_defects)) == (12, 8, 6)
    assert ds.defect_classes == METHODS
    for sample in ds.test_defects:
        assert sample.mask == mvtec / "ground_truth" / sample.defect / f"{sample.image.stem}_mask.png"
        mask = sample.load_mask()
        assert mask.dtype == bool and mask.shape == sample.load_image().shape[:2]
        assert 0.0 < mask.mean() < 0.5  # the large size bin: a few % of the crop, not nothing, not all
    assert all(s.is_good and s.mask is None for s in ds.train_good + ds.test_good)
    assert not ds.test_good[0].load_mask().any()


def test_a_defect_image_without_its_mask_is_refused_by_name(mvtec, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(mvtec, copy)
    (copy / "ground_truth" / "cutout" / "001_mask.png").unlink()
    with pytest.raises(DatasetLayoutError, match="cutout/001.png has no mask .*001_mask.png"):
        read_mvtec(copy)


def test_a_folder_in_no_known_layout_is_refused(tmp_path):
    _save(tmp_path / "images", "a.png", _crops(1, 0)[0])
    assert detect_layout(tmp_path / "images") is None
    with pytest.raises(DatasetLayoutError, match="not a real-defect folder"):
        read_defect_set(tmp_path / "images")


def test_btad_folder_reads_ok_and_ko_with_masks_of_any_suffix(tmp_path):
    crops = _crops(5, 0)
    for i in range(2):
        _save(tmp_path / "train" / "ok", f"{i:03d}.bmp", crops[i])
    _save(tmp_path / "test" / "ok", "000.bmp", crops[2])
    for i, suffix in enumerate((".png", ".bmp")):
        _save(tmp_path / "test" / "ko", f"{i:03d}.bmp", crops[3 + i])
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[10:20, 10:20] = 255
        _save(tmp_path / "ground_truth" / "ko", f"{i:03d}{suffix}", mask)
    ds = read_btad(tmp_path)
    assert ds.layout == "btad" and detect_layout(tmp_path) == "btad"
    assert (len(ds.train_good), len(ds.test_good), len(ds.test_defects)) == (2, 1, 2)
    assert ds.defect_classes == ("ko",)
    assert [int(s.load_mask().sum()) for s in ds.test_defects] == [100, 100]


def test_visa_object_reads_from_the_one_class_split_file(tmp_path):
    crops = _crops(5, 0)
    lines = ["object,split,label,image,mask"]
    for i, (split, label) in enumerate([("train", "normal"), ("train", "normal"), ("test", "normal"),
                                        ("test", "anomaly")]):
        image = f"candle/Data/Images/{label.title()}/{i:03d}.JPG"
        _save(tmp_path / Path(image).parent, Path(image).name, crops[i])
        mask = ""
        if label == "anomaly":  # VisA masks are 0/1, not 0/255
            mask = f"candle/Data/Masks/Anomaly/{i:03d}.png"
            values = np.zeros((SIZE, SIZE), np.uint8)
            values[:8, :8] = 1
            _save(tmp_path / Path(mask).parent, Path(mask).name, values)
        lines.append(f"candle,{split},{label},{image},{mask}")
    lines.append("pcb1,train,normal,pcb1/x.JPG,")  # another object: listed, not read
    (tmp_path / "split_csv").mkdir()
    (tmp_path / "split_csv" / "1cls.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetLayoutError, match="choose one with category=.*candle, pcb1"):
        read_visa(tmp_path)
    for ds in (read_visa(tmp_path, "candle"), read_defect_set(tmp_path / "candle")):
        assert (ds.layout, ds.name) == ("visa", "candle")
        assert (len(ds.train_good), len(ds.test_good), len(ds.test_defects)) == (2, 1, 1)
        assert int(ds.test_defects[0].load_mask().sum()) == 64


# ------------------------------------------------------------------------------- evaluation


def test_evaluate_fits_on_train_good_and_reports_each_defect_class_at_full_resolution(mvtec, tmp_path, capsys):
    out = tmp_path / "out"
    code, printed, err = _evaluate(["--dataset", str(mvtec), "--output", str(out)], capsys)
    assert code == 0, err
    assert "on 12 anomaly-free images" in err and "train/good" in err  # fitted on the folder's own train/good
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n_test"], summary["n_good"], summary["dataset_layout"]) == (6, 8, "mvtec")
    assert summary["pixel_metrics_size"] == 0 and "pixel metrics at full image resolution" in printed
    assert summary["skipped_k"] == [] and set(summary["recall_at_k"]) == {"1", "2", "3", "4", "5"}
    table = pd.read_csv(out / "recall_defect.csv")
    assert list(table["defect"]) == list(METHODS) and list(table["n"]) == [3, 3]
    for column in ("recall", "image_auroc", "pixel_auroc", "aupro"):
        assert table[column].between(0.0, 1.0).all()
    scores = pd.read_parquet(out / "scores.parquet")
    test = scores[scores["split"] == "test"]
    assert list(test["defect"]) == [m for m in METHODS for _ in range(3)]
    assert test["image_path"].iloc[0] == "test/cutout/000.png"
    assert "| cutout |" in printed and "| synagen |" in printed
    # large anomalies on these textures stand out: measured image AUROC 0.94, pixel AUROC 0.83-0.85 per class
    assert summary["image_auroc"] >= 0.85 and (table["pixel_auroc"] >= 0.75).all()


def test_a_separate_good_folder_sets_the_thresholds_and_test_good_stays_the_negatives(mvtec, tmp_path, capsys):
    good = tmp_path / "good"
    for i, crop in enumerate(_crops(3, 7)):
        _save(good, f"{i}.png", crop)
    out = tmp_path / "out"
    code, printed, err = _evaluate(["--dataset", str(mvtec), "--good", str(good), "--output", str(out)], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    # thresholds from the 3 separate images; AUROC/AP against the 8 test/good images, both named
    assert (summary["n_threshold"], summary["n_good"]) == (3, 8)
    assert summary["threshold_source"] == str(good) and summary["negatives_source"].endswith("/test/good")
    assert summary["thresholds_are_oracle"] is False
    assert f"thresholds from 3 separate anomaly-free images ({good})" in printed
    assert summary["skipped_k"] == [3, 4, 5] and set(summary["recall_at_k"]) == {"1", "2"}
    message = "k = 3, 4, 5 dropped: only 3 anomaly-free images"
    assert (err + printed).count(message) == 1  # said once
    negatives = pd.read_parquet(out / "scores.parquet").query("split == 'good'")
    assert len(negatives) == 8 and negatives["source_id"].iloc[0] == "test/good/000.png"


def test_thresholds_from_the_test_negatives_are_labelled_an_oracle_operating_point(mvtec, tmp_path, capsys):
    # without --good, and with --good naming a copy of test/good (same pixels, other path)
    copy = tmp_path / "copy"
    for i, crop in enumerate(_crops(8, 1)):
        _save(copy, f"other_{i}.png", crop)
    for extra in ([], ["--good", str(copy)]):
        out = tmp_path / f"out{len(extra)}"
        code, printed, err = _evaluate(["--dataset", str(mvtec), "--output", str(out), *extra], capsys)
        assert code == 0, err
        summary = json.loads((out / "summary.json").read_text())
        assert summary["thresholds_are_oracle"] is True and summary["n_threshold"] == summary["n_good"] == 8
        assert "an oracle operating point" in printed


def test_good_images_that_are_fit_images_are_refused_by_content(mvtec, tmp_path, capsys):
    # the default fit is train/good; --good holds two of its images renamed: same pixels, other path
    good = tmp_path / "renamed"
    for i, crop in enumerate(_crops(12, 0)[:2] + _crops(2, 9)):
        _save(good, f"g{i}.png", crop)
    code, _, err = _evaluate(["--dataset", str(mvtec), "--good", str(good), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and f"2 image(s) of {good} have the same pixels as images the detector is fitted on" in err


def test_fitting_on_the_images_that_set_the_threshold_is_refused(mvtec, tmp_path, capsys):
    code, _, err = _evaluate(["--dataset", str(mvtec), "--fit", str(mvtec / "test" / "good"),
                              "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and "refusing to evaluate: 8 image(s)" in err


def test_evaluate_prints_intervals_sample_sizes_and_false_positive_rates(mvtec, tmp_path, capsys):
    out = tmp_path / "out"
    code, printed, err = _evaluate(["--dataset", str(mvtec), "--output", str(out)], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert "6 anomalous test images, 8 anomaly-free test images" in printed
    assert "caveat: only 8 anomaly-free test image(s)" in printed
    for name in ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "aupro"):
        low, high = summary["intervals"][name]
        assert 0.0 <= low <= summary[name] <= high <= 1.0, name
    for k in ("1", "2"):
        low, high = summary["recall_interval_at_k"][k]
        assert low <= summary["recall_at_k"][k] <= high
        assert summary["false_positive_rate_at_k"][k] == summary["false_positives_at_k"][k] / 8
    assert "k=1 (false-positive rate 1/8 = 12.5 %)" in printed
    table = pd.read_csv(out / "recall_defect.csv")
    for metric in ("image_auroc", "pixel_auroc", "aupro"):  # per defect class too
        assert ((table[f"{metric}_low"] <= table[metric]) & (table[metric] <= table[f"{metric}_high"])).all(), metric
    # the same scores give the same intervals: the bootstrap seed is fixed
    again = tmp_path / "again"
    assert _evaluate(["--dataset", str(mvtec), "--detector-file", str(out / "detector.pt"), "--output", str(again)],
                     capsys)[0] == 0
    assert json.loads((again / "summary.json").read_text())["intervals"] == summary["intervals"]


def test_pixel_size_shrinks_maps_and_masks_together(mvtec, tmp_path, capsys):
    out = tmp_path / "out"
    code, printed, err = _evaluate(["--dataset", str(mvtec), "--pixel-size", "32", "--output", str(out)], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pixel_metrics_size"] == 32 and "at most 32 px" in printed
    assert 0.5 < summary["pixel_auroc"] <= 1.0
