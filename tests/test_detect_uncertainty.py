"""Intervals and paired tests of detect.evaluation.uncertainty, checked on cases whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, norm

from detect.errors import MetricInputError
from detect.evaluation import metrics, uncertainty


def test_wilson_matches_newcombes_worked_examples():
    # Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (Wilson score), to 4 decimals
    for (successes, n), (low, high) in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605),
                                        (0, 20): (0.0, 0.1611), (1, 29): (0.0061, 0.1718)}.items():
        interval = uncertainty.wilson(successes, n)
        assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)


def test_wilson_by_hand_for_half_of_ten():
    # p = 0.5, n = 10, z = 1.959964: centre 0.5, half width z / (1 + z²/n) * sqrt(p(1-p)/n + z²/(4n²))
    z = norm.ppf(0.975)
    half = z / (1 + z * z / 10) * math.sqrt(0.025 + z * z / 400)
    interval = uncertainty.wilson(5, 10)
    assert interval.low == pytest.approx(0.5 - half, abs=1e-12) and interval.high == pytest.approx(0.5 + half, abs=1e-12)
    assert round(interval.low, 4) == 0.2366


def test_wilson_covers_a_known_proportion_about_95_percent_of_the_time():
    # exact coverage, summed over the binomial distribution (no simulation)
    n = 40
    for p in (0.1, 0.3, 0.5, 0.8):
        covered = sum(binom.pmf(x, n, p) for x in range(n + 1) if uncertainty.wilson(x, n).contains(p))
        assert 0.92 <= covered <= 0.99, (p, covered)


def test_wilson_refuses_impossible_counts():
    with pytest.raises(MetricInputError, match="successes"):
        uncertainty.wilson(3, 2)


def test_bootstrap_interval_of_auroc_covers_the_true_value():
    # two unit normals one standard deviation apart: true AUROC = Phi(1 / sqrt 2)
    truth = norm.cdf(1 / math.sqrt(2))
    rng = np.random.default_rng(7)
    trials, covered = 200, 0
    for _ in range(trials):
        good, anomalous = rng.normal(0, 1, 40), rng.normal(1, 1, 40)
        covered += uncertainty.bootstrap_interval(good, anomalous, resamples=400, seed=int(rng.integers(2**31))).contains(truth)
    # the percentile bootstrap undercovers slightly at n = 40; far from 95 % would be a wrong interval
    assert 0.88 * trials <= covered <= 0.99 * trials


def test_intervals_contain_the_point_value_and_are_reproducible():
    rng = np.random.default_rng(0)
    good, anomalous = rng.normal(0, 1, 25), rng.normal(0.8, 1.3, 15)
    intervals = uncertainty.image_intervals(good, anomalous)
    assert intervals["image_auroc"].contains(metrics.image_auroc(good, anomalous))
    assert intervals["image_ap"].contains(metrics.image_ap(good, anomalous))
    assert uncertainty.image_intervals(good, anomalous) == intervals


def test_interval_narrows_as_the_test_set_grows():
    rng = np.random.default_rng(1)
    widths = []
    for n in (10, 40, 160):
        interval = uncertainty.bootstrap_interval(rng.normal(0, 1, n), rng.normal(1, 1, n))
        widths.append(interval.high - interval.low)
    assert widths[0] > widths[1] > widths[2]
    # the width of a bootstrap interval falls as 1/sqrt(n): 4x the images, about half the width
    assert widths[2] < 0.75 * widths[1]


def _maps(rng, n_anomalous: int, n_good: int):
    import skimage.data

    texture = skimage.data.brick().astype(np.float64) / 255.0
    maps, masks = [], []
    for i in range(n_anomalous + n_good):
        y, x = rng.integers(0, 448, size=2)
        amap = texture[y : y + 64, x : x + 64] + rng.normal(0, 0.1, (64, 64))
        mask = np.zeros((64, 64), bool)
        if i < n_anomalous:
            r, c = rng.integers(0, 48, size=2)
            mask[r : r + 12, c : c + 12] = True
            amap[mask] += 0.3
        maps.append(amap)
        masks.append(mask)
    return maps, masks


def test_pixel_intervals_contain_the_exact_pixel_metrics():
    rng = np.random.default_rng(2)
    maps, masks = _maps(rng, 8, 8)
    intervals = uncertainty.pixel_intervals(uncertainty.pixel_histograms(maps, masks), [m.any() for m in masks])
    assert intervals["pixel_auroc"].contains(metrics.pixel_auroc(maps, masks))
    assert intervals["pixel_ap"].contains(metrics.pixel_ap(maps, masks))
    assert intervals["aupro"].contains(metrics.aupro(maps, masks))


def test_paired_difference_finds_a_clearly_better_scorer_and_not_a_random_one():
    rng = np.random.default_rng(3)
    n_good, n_anomalous, seeds = 30, 30, 3
    good = rng.normal(0, 1, (seeds, n_good))
    anomalous = rng.normal(2, 1, (seeds, n_anomalous))
    random_good, random_anomalous = rng.normal(0, 1, (seeds, n_good)), rng.normal(0, 1, (seeds, n_anomalous))
    better = uncertainty.paired_difference(good, anomalous, random_good, random_anomalous)
    assert better.significant and better.difference > 0.2
    other_random = uncertainty.paired_difference(rng.normal(0, 1, (seeds, n_good)), rng.normal(0, 1, (seeds, n_anomalous)),
                                                 random_good, random_anomalous)
    assert not other_random.significant
    assert other_random.images_needed() is None or other_random.images_needed() > n_good + n_anomalous


def test_small_sample_caveat_only_below_the_minimum():
    assert "only 2 anomaly-free" in uncertainty.small_sample_caveat(2)
    assert uncertainty.small_sample_caveat(uncertainty.MIN_GOOD_IMAGES) is None


def test_correlation_interval_by_hand():
    # r = 0 from n = 28 pairs: atanh(0) ± 1.96 / sqrt(25) = ±0.392, tanh(0.392) = 0.3730
    interval = uncertainty.correlation_interval(0.0, 28)
    assert round(interval.low, 3) == -0.373 and round(interval.high, 3) == 0.373
    with pytest.raises(MetricInputError, match="at least 4 pairs"):
        uncertainty.correlation_interval(0.9, 3)
