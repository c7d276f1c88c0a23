"""Metrics against worked examples computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detect.errors import MetricInputError
from detect.evaluation import metrics, report


GOOD = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


def test_threshold_lets_exactly_k_good_images_through():
    # sorted good scores 0.6 > 0.5 > 0.4 ...: with k = 1 only 0.6 may lie above the threshold
    assert metrics.threshold_at_k(GOOD, 1) == 0.5
    assert metrics.threshold_at_k(GOOD, 3) == 0.3
    for k in range(1, 6):
        result = metrics.recall_at_k(GOOD, [0.0], k)
        assert result.false_positives == k


def test_recall_at_k_worked_example():
    anomalies = [0.55, 0.6, 0.45, 0.5, 0.05]
    # k = 1: threshold 0.5; 0.55 and 0.6 are above, 0.5 ties (not detected) -> 2 / 5
    r1 = metrics.recall_at_k(GOOD, anomalies, 1)
    assert r1.recall == pytest.approx(0.4)
    assert r1.detected.tolist() == [True, True, False, False, False]
    # k = 2: threshold 0.4; 0.45 and 0.5 join -> 4 / 5
    assert metrics.recall_at_k(GOOD, anomalies, 2).recall == pytest.approx(0.8)


def test_ties_among_good_scores_never_exceed_the_budget():
    good = [0.9, 0.7, 0.7, 0.7, 0.1]
    r = metrics.recall_at_k(good, [0.8, 0.75, 0.7], 2)
    # the 3rd largest is 0.7 = the 2nd largest: only 0.9 lies above 0.7, so 1 false positive
    assert r.threshold == 0.7
    assert r.false_positives == 1
    assert r.detected.tolist() == [True, True, False]


def test_recall_at_k_needs_k_plus_one_good_images():
    with pytest.raises(MetricInputError, match="at least 4"):
        metrics.recall_at_k([0.1, 0.2, 0.3], [0.5], 3)
    with pytest.raises(MetricInputError):
        metrics.recall_at_k(GOOD, [0.5], 0)
    with pytest.raises(MetricInputError, match="no anomaly scores"):
        metrics.recall_at_k(GOOD, [], 1)


def test_image_auroc_and_ap_worked_example():
    good, anomalies = [0.1, 0.4], [0.35, 0.8]
    # pairs (anomaly > good): 0.35>0.1, 0.8>0.1, 0.8>0.4; 0.35<0.4 -> 3 of 4
    assert metrics.image_auroc(good, anomalies) == pytest.approx(0.75)
    # ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-): precision 1 at the 1st positive, 2/3 at the 2nd
    assert metrics.image_ap(good, anomalies) == pytest.approx((1 + 2 / 3) / 2)


def test_pixel_auroc_and_ap_worked_example():
    maps = [np.array([[0.9, 0.2], [0.6, 0.1]])]
    masks = [np.array([[1, 0], [0, 1]])]
    # positives 0.9, 0.1; negatives 0.2, 0.6: pairs won 0.9>0.2, 0.9>0.6 -> 2 of 4
    assert metrics.pixel_auroc(maps, masks) == pytest.approx(0.5)
    # ranking 0.9(+) 0.6(-) 0.2(-) 0.1(+): precision 1 and 2/4
    assert metrics.pixel_ap(maps, masks) == pytest.approx((1 + 0.5) / 2)


def test_aupro_averages_over_regions_not_pixels():
    # 1 x 12 image: region A = pixel 0 (1 px), region B = pixels 2, 3, 4 (3 px), 8 anomaly-free
    scores = np.array([[10, 7, 9, 8, 0.5, 6, 5, 4, 3, 2, 1, 0.9]])
    mask = np.zeros((1, 12), bool)
    mask[0, 0] = True
    mask[0, 2:5] = True
    # Before the first false positive, A is fully found (1) and B 2/3 -> PRO = (1 + 2/3) / 2 = 5/6,
    # and the curve stays flat until FPR 0.3 (pixel 4 comes last): AUPRO = 5/6. A pixel-weighted
    # overlap would give 3/4 instead.
    assert metrics.aupro([scores], [mask]) == pytest.approx(5 / 6)


def test_aupro_interpolates_at_the_fpr_limit():
    # 1 x 4: region = pixels 0, 1; scores 4 (region), 3 (free), 2 (region), 1 (free)
    # curve: (0, .5) -> (.5, .5) -> (.5, 1) -> (1, 1); up to FPR 0.3 PRO is 0.5 -> AUPRO 0.5
    scores = np.array([[4.0, 2.0, 3.0, 1.0]])
    mask = np.array([[True, True, False, False]])
    assert metrics.aupro([scores], [mask]) == pytest.approx(0.5)
    assert metrics.aupro([scores], [mask], fpr_limit=1.0) == pytest.approx((0.5 * 0.5 + 0.5 * 1.0) / 1.0)


def test_perfect_maps_score_one_everywhere():
    rng = np.random.default_rng(0)
    masks = [rng.random((16, 16)) > 0.8 for _ in range(3)]
    maps = [m.astype(float) + rng.random((16, 16)) * 0.5 for m in masks]
    assert metrics.pixel_auroc(maps, masks) == 1.0
    assert metrics.pixel_ap(maps, masks) == pytest.approx(1.0)
    assert metrics.aupro(maps, masks) == pytest.approx(1.0)


def test_pixel_metrics_reject_mismatched_or_one_class_input():
    with pytest.raises(MetricInputError, match="shape"):
        metrics.pixel_auroc([np.zeros((4, 4))], [np.zeros((4, 5))])
    with pytest.raises(MetricInputError, match="both"):
        metrics.aupro([np.zeros((4, 4))], [np.zeros((4, 4))])


def test_recall_tables_group_and_order_size_bins():
    frame = pd.DataFrame(
        {
            "shape": ["rough", "rough", "rough", "elongated", "elongated"],
            "size_bin": ["2.5-15%", "0.02-0.1%", "0.02-0.1%", "0.5-1.5%", "2.5-15%"],
            "detected": [True, False, True, True, True],
        }
    )
    long = report.recall_long(frame, "detected", ["shape", "size_bin"])
    rough_small = long[(long["shape"] == "rough") & (long["size_bin"] == "0.02-0.1%")].iloc[0]
    assert (rough_small["n"], rough_small["detected"], rough_small["recall"]) == (2, 1, 0.5)
    wide = report.recall_wide(long, "shape", "size_bin")
    assert list(wide.columns) == ["0.02-0.1%", "0.5-1.5%", "2.5-15%"]
    assert np.isnan(wide.loc["rough", "0.5-1.5%"])
    assert "| rough | 50.0 | – | 100.0 |" in report.markdown(wide)


def test_brightness_bins_use_the_magnitude():
    names = report.brightness_bins(np.array([-0.05, 0.15, -0.35, 0.9]))
    assert names.tolist() == ["0-10%", "10-20%", "30-40%", ">=50%"]
