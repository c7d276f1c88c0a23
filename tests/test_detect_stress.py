"""The stress test as a protocol: the same numbers from Python and from ``anomalyforge stress``,
intervals that contain the estimate, and warnings when the numbers mean nothing."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import skimage.data

from detect.evaluation.stress import (
    StressConfig, StressInputError, pool_small_lines, run_stress, texture_spread, threshold_views, tiles, wilson_interval,
)
from detect.registry import FittedDetectors
from synth import save_png

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: small and quick: 40 anomalies on 16 tiles of one image
QUICK = dict(anomalies=40)


@pytest.fixture(scope="module")
def brick_result():
    return run_stress([skimage.data.brick()], StressConfig(**QUICK))


def test_brick_large_anomalies_are_found_and_every_cell_has_its_interval(brick_result):
    r = brick_result
    assert r.n_fit == 8 and r.n_good == 8 and r.n_anomalies == 40
    assert r.false_positives <= 1 and not r.chance_level
    assert r.large_auroc >= 0.8  # measured 0.94: large anomalies on a brick wall stand out
    for table in r.tables.values():
        assert table["n"].sum() == 40
        assert ((table["recall_low"] <= table["recall"]) & (table["recall"] <= table["recall_high"])).all()
    assert r.recall_interval[0] <= r.recall <= r.recall_interval[1]
    assert not any("chance level" in w for w in r.warnings)


def test_the_threshold_comes_from_7_other_views_of_each_test_tile_not_from_the_negatives(brick_result):
    r = brick_result
    assert r.n_threshold == 7 * r.n_good == 56
    summary = r.evaluation.summary
    assert summary["thresholds_are_oracle"] is False and summary["n_good"] == 8
    assert f"lets {r.false_positives} of 56 mirrored and turned views" in r.text()
    assert "(k = 1, a false-positive rate of 1.8%)" in r.text()
    views = threshold_views([skimage.data.brick()[:64, :96]])
    digests = {v.tobytes() + bytes(str(v.shape), "ascii") for v in views}
    assert len(views) == len(digests) == 7 and skimage.data.brick()[:64, :96].tobytes() not in {v.tobytes() for v in views}


def test_plots_pool_the_shapes_with_few_anomalies_per_cell():
    table = pd.DataFrame({"shape": ["a", "a", "b", "b", "c", "c"], "size_bin": ["s", "l"] * 3,
                          "n": [20, 20, 3, 2, 4, 1], "detected": [10, 15, 1, 2, 2, 1]})
    table["recall"] = table["detected"] / table["n"]
    pooled, names = pool_small_lines(table, "shape")
    assert names == ["b", "c"]
    line = pooled[pooled["shape"] == "pooled"].set_index("size_bin")
    assert (line.loc["s", "n"], line.loc["s", "detected"], line.loc["l", "n"]) == (7, 3, 3)
    assert line.loc["s", "recall_low"] <= 3 / 7 <= line.loc["s", "recall_high"]
    assert set(pooled["shape"]) == {"a", "pooled"}


def test_an_auroc_interval_containing_chance_is_warned_about():
    # 8 anomalies on a photo: too few to tell the detector from a coin toss
    r = run_stress([skimage.data.astronaut()], StressConfig(anomalies=8))
    assert r.auroc_interval[0] <= 0.5 <= r.auroc_interval[1]
    assert any("contains 0.5" in w for w in r.warnings)


def test_a_photo_is_flagged_as_chance_level_and_not_a_texture():
    r = run_stress([skimage.data.astronaut()], StressConfig(**QUICK))
    assert r.texture_spread > 0.25
    assert any("not a repetitive texture" in w for w in r.warnings)
    assert r.chance_level and any("chance level" in w for w in r.warnings)


def test_a_mix_of_two_textures_is_named_as_a_possible_cause_of_unlike_tiles():
    # brick and grass are each a texture; tiles of both together are as unlike as a photo's
    r = run_stress([skimage.data.brick(), skimage.data.grass()], StressConfig(**QUICK))
    assert r.texture_spread > 0.25
    assert any("a photo or a mix of different kinds of image, not a repetitive texture" in w for w in r.warnings)


def test_texture_spread_separates_textures_from_photos():
    for name in ("brick", "grass", "gravel"):
        assert texture_spread(tiles(getattr(skimage.data, name)(), 4)) < 0.2
    for name in ("astronaut", "camera", "coffee"):
        assert texture_spread(tiles(getattr(skimage.data, name)(), 4)) > 0.4


def test_wilson_interval_is_narrower_with_more_samples():
    low4, high4 = wilson_interval(2, 4)
    low100, high100 = wilson_interval(50, 100)
    assert low4 < 0.5 < high4 and high100 - low100 < high4 - low4
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_a_reused_detector_gives_the_same_numbers(brick_result):
    cache = FittedDetectors(capacity=2)
    first = run_stress([skimage.data.brick()], StressConfig(**QUICK), detectors=cache)
    again = run_stress([skimage.data.brick()], StressConfig(**QUICK), detectors=cache)
    assert len(cache) == 1
    assert first.recall == again.recall == brick_result.recall
    assert first.auroc == again.auroc


def test_images_too_small_to_tile_are_refused_with_the_sizes():
    with pytest.raises(StressInputError, match="tiles of 25 px; k = 1 needs more than 1 tiles of at least 32 px"):
        run_stress([skimage.data.grass()[:100, :100]], StressConfig(**QUICK))
    with pytest.raises(StressInputError, match="unknown detector 'nope'"):
        run_stress([skimage.data.grass()], StressConfig(detector="nope", **QUICK))


def test_stress_command_prints_and_writes_the_same_numbers(tmp_path, capsys, brick_result):
    from anomalyforge import main as anomalyforge

    image = tmp_path / "brick.png"
    save_png(image, skimage.data.brick())
    out = tmp_path / "out"
    code = anomalyforge(["stress", str(image), "--detector", "patchcore", "--anomalies", "40",
                         "--output", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_anomalies"] == 40 and summary["n_good"] == 8
    assert summary["recall"] == pytest.approx(brick_result.recall)
    assert pd.read_csv(out / "recall_shape_size.csv")["n"].sum() == 40
    assert (out / "recall_shape.png").stat().st_size > 1000 and (out / "recall_mode.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "Recall" in printed and "95 % interval" in printed and "shape_size:" in printed


def test_stress_command_refuses_a_missing_image_with_exit_2(tmp_path, capsys):
    from anomalyforge import main as anomalyforge

    assert anomalyforge(["stress", str(tmp_path / "missing.png")]) == 2
    assert "anomalyforge stress: error:" in capsys.readouterr().err


def test_a_plot_title_naming_the_pooled_lines_fits_its_figure_whole(brick_result):
    import matplotlib.pyplot as plt

    _, pooled = pool_small_lines(brick_result.tables["mode_size"], "mode")
    assert len(pooled) >= 2, "40 anomalies leave modes with fewer than 10 per cell"
    for by, figure in brick_result.figures().items():
        title = figure.axes[0].title
        figure.canvas.draw()
        box, frame = title.get_window_extent(), figure.bbox
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and box.y1 <= frame.y1, (by, title.get_text())
        if by == "mode":
            assert all(name in title.get_text() for name in pooled), title.get_text()
        plt.close(figure)
