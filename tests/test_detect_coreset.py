"""PatchCore's coreset: the lazy greedy k-center selection is the textbook one, its coverage radius is
measured exactly in the feature space (or, when asked, a sample's lower bound, labelled as one), and
the evaluation says which selection ran and how the radius was measured."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch

from detect.errors import DetectError
from detect.evaluation.evaluate import coreset_text
from detect.registry import load_detector
from detect.detectors.patchcore import (PatchCore, _projected, bounded_coverage_radius, coreset_with_cover,
                                        coverage_radius, greedy_coreset, partitioned_coreset, sample_rows,
                                        sampled_coverage_radius)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _texture_features(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Patch features of real textures: 4x4 pixel blocks of gravel, brick and grass side by side
    (each row one block position: 3 x 16 = 48 dimensions)."""
    blocks = []
    for image in (skimage.data.gravel(), skimage.data.brick(), skimage.data.grass()):
        pixels = torch.from_numpy(image[:160, :160].astype(np.float64) / 255.0)
        blocks.append(pixels.unfold(0, 4, 4).unfold(1, 4, 4).reshape(-1, 16))
    return torch.cat(blocks, dim=1).to(dtype)


def _nearest_float64(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Each query's distance to its nearest bank row in float64, from the differences themselves."""
    return torch.cdist(queries.double(), bank.double(), compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values


def _rounding_interval(queries: torch.Tensor, bank: torch.Tensor, exact: float) -> tuple[float, float]:
    """Where ``nearest_distance``'s largest distance may lie in ``queries.dtype`` around ``exact``, the
    float64 one: its docstring's ``[(1 - g(D + 3)) R, (1 + g(D + 3)) sqrt(R^2 + 2 E)]``, widened by
    the float64 reference's own rounding (relative g64(D + 3))."""
    d = queries.shape[1]

    def g(n: int, dtype: torch.dtype) -> float:
        u = torch.finfo(dtype).eps / 2
        return n * u / (1 - n * u)

    q, b = float(queries.double().norm(dim=1).max()), float(bank.double().norm(dim=1).max())
    e = g(d + 2, queries.dtype) * (b * b + 2 * q * b)
    low, high = exact * (1 - g(d + 3, torch.float64)), exact * (1 + g(d + 3, torch.float64))
    return (1 - g(d + 3, queries.dtype)) * low, (1 + g(d + 3, queries.dtype)) * math.sqrt(high * high + 2 * e)


def _within_rounding(value: float, queries: torch.Tensor, bank: torch.Tensor) -> bool:
    low, high = _rounding_interval(queries, bank, float(_nearest_float64(queries, bank).max()))
    return low <= value <= high


def test_lazy_selection_is_the_full_pass_greedy_selection():
    # float64: the two loops sum the same distances in another order, which only float32 rounding of
    # near-equal distances could tell apart
    features = _texture_features(torch.float64)
    for size, seed in ((160, 3), (700, 4)):
        lazy = greedy_coreset(features, size, projection_dim=32, seed=seed)
        assert torch.equal(lazy, greedy_coreset(features, size, projection_dim=32, seed=seed, lazy=False))
        assert len(set(lazy.tolist())) == size


def test_greedy_centres_are_farther_apart_than_the_coverage_radius():
    # greedy k-center's certificate: each centre was the farthest point when chosen, so the centres
    # and the farthest remaining point are pairwise >= the final radius r apart; any k centres then
    # leave one of these k + 1 points >= r / 2 away, so r is within twice the optimal radius
    features = _texture_features(torch.float64)
    coreset = greedy_coreset(features, 120, projection_dim=32, seed=1)
    reduced, _ = _projected(features, 32, 1)
    nearest = torch.cdist(reduced, reduced[coreset]).min(dim=1)
    radius, farthest = float(nearest.values.max()), int(nearest.values.argmax())
    points = reduced[torch.cat([coreset, torch.tensor([farthest])])]
    gaps = torch.cdist(points, points) + torch.diag(torch.full((points.shape[0],), float("inf"), dtype=torch.float64))
    # (the farthest point is exactly r from its centre: allow float64 rounding, ~1e-15 relative)
    assert radius > 0 and float(gaps.min()) >= radius * (1 - 1e-12)


def test_coverage_radius_is_the_largest_distance_to_the_nearest_kept_row():
    features = _texture_features(torch.float64)
    for coreset in (greedy_coreset(features, 100, projection_dim=16, seed=0),
                    partitioned_coreset(features, 100, part=300, projection_dim=16, seed=0)):
        assert _within_rounding(coverage_radius(features, coreset), features, features[coreset])


def test_same_seed_same_centres_other_seed_other_centres():
    features = _texture_features()
    first = greedy_coreset(features, 80, seed=7)
    assert torch.equal(first, greedy_coreset(features, 80, seed=7))
    assert not torch.equal(first, greedy_coreset(features, 80, seed=8))


def _fit_patches(detector: PatchCore, images: list[np.ndarray]) -> torch.Tensor:
    with torch.no_grad():
        f = detector._features(next(detector._fit_batches(images, False)))
    return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])


def test_patchcore_says_which_selection_ran_and_its_radius_and_keeps_it_when_saved(tmp_path):
    images = [skimage.data.gravel()[y : y + 64, 0:64] for y in range(0, 256, 64)]
    for part, selection in ((None, "greedy k-center over all patches"), (64, "greedy k-center part by part")):
        detector = PatchCore(image_size=64, coreset_part=part, coreset_ratio=0.2).fit(images)
        summary = detector.coreset_summary()
        assert summary["selection"].startswith(selection)
        assert summary["bank"] == round(0.2 * summary["patches"])
        # the radius is measured on the fit patches, in the feature space the detector scores in
        assert summary["coverage"] == "exact"
        assert _within_rounding(summary["coverage_radius"], _fit_patches(detector, images), detector.memory_bank)
        assert coreset_text(summary).endswith(f"coverage radius {summary['coverage_radius']:.3f} (exact)")
        detector.save(tmp_path / "p.pt")
        assert load_detector(tmp_path / "p.pt").coreset_summary() == summary


def test_exact_radius_is_the_float64_largest_nearest_distance_within_the_rounding_bound():
    # float32 features of real textures; the pass measures only the rows whose cover could be the
    # farthest (here far fewer than all), and the result is the full pass's within the derived bound
    features = _texture_features()
    for part in (None, 300):
        index, cover = coreset_with_cover(features, 100, part=part, projection_dim=16, seed=0)
        bank = features[index]
        assert torch.isin(cover, index).all()
        radius, measured = bounded_coverage_radius(features, index, cover, block=64)
        assert measured < features.shape[0] // 4
        assert _within_rounding(radius, features, bank)
        assert radius == coverage_radius(features, index, cover)
        # no cover, or a useless one (every row pointed at one kept row): every row is measured
        assert _within_rounding(coverage_radius(features, index), features, bank)
        useless = torch.full_like(cover, int(index[0]))
        assert _within_rounding(bounded_coverage_radius(features, index, useless, block=64)[0], features, bank)


def test_sampled_radius_is_a_seeded_lower_bound_of_the_exact_one():
    features = _texture_features()
    index, cover = coreset_with_cover(features, 100, projection_dim=16, seed=0)
    bank = features[index]
    exact = float(_nearest_float64(features, bank).max())
    samples = {}
    for seed in (0, 1, 2):
        rows = sample_rows(features.shape[0], 200, seed)
        assert len(set(rows.tolist())) == 200
        sampled = sampled_coverage_radius(features, index, 200, seed)
        assert sampled == sampled_coverage_radius(features, index, 200, seed)
        # the farthest of the sampled rows, no farther than the farthest of all
        assert _within_rounding(sampled, features[rows], bank)
        assert float(_nearest_float64(features[rows], bank).max()) <= exact
        samples[seed] = sampled
    assert len(set(samples.values())) > 1
    # 200 of 1600 rows miss the farthest one for some seed: then the sample is below the radius
    assert min(samples.values()) < _rounding_interval(features, bank, exact)[0]


def test_patchcore_coverage_sample_and_off_are_labelled_and_kept_when_saved(tmp_path):
    images = [skimage.data.gravel()[y : y + 64, 0:64] for y in range(0, 256, 64)]
    exact = PatchCore(image_size=64, coreset_ratio=0.2).fit(images).coreset_summary()
    sampled = PatchCore(image_size=64, coreset_ratio=0.2, coverage="sample", coverage_sample=100).fit(images)
    summary = sampled.coreset_summary()
    assert (summary["coverage"], summary["coverage_radius"], summary["coverage_sample"]) == ("sample", None, 100)
    patches = _fit_patches(sampled, images)
    rows = sample_rows(patches.shape[0], 100, sampled.seed)
    assert _within_rounding(summary["coverage_radius_lower_bound"], patches[rows], sampled.memory_bank)
    assert summary["coverage_radius_lower_bound"] <= exact["coverage_radius"]
    text = coreset_text(summary)
    assert f"coverage radius >= {summary['coverage_radius_lower_bound']:.3f} (a lower bound" in text
    assert "100 sampled fit patches" in text and "(exact)" not in text
    sampled.save(tmp_path / "s.pt")
    assert load_detector(tmp_path / "s.pt").coreset_summary() == summary
    # a sample as large as the fit patches is all of them: the exact radius, said so
    whole = PatchCore(image_size=64, coreset_ratio=0.2, coverage="sample", coverage_sample=10_000).fit(images)
    assert whole.coreset_summary() == exact
    off = PatchCore(image_size=64, coreset_ratio=0.2, coverage="off").fit(images)
    summary = off.coreset_summary()
    assert summary["coverage"] == "off"
    assert summary["coverage_radius"] is None and summary["coverage_radius_lower_bound"] is None
    assert coreset_text(summary).endswith("coverage radius not measured (coverage=off)")
    off.save(tmp_path / "o.pt")
    assert load_detector(tmp_path / "o.pt").coreset_summary() == summary


def test_a_detector_file_from_before_the_coverage_option_reads_as_exact(tmp_path):
    images = [skimage.data.gravel()[y : y + 64, 0:64] for y in range(0, 256, 64)]
    detector = PatchCore(image_size=64, coreset_ratio=0.2).fit(images)
    detector.save(tmp_path / "p.pt")
    payload = torch.load(tmp_path / "p.pt", weights_only=True)
    for key in ("coverage", "coverage_sample"):
        del payload["config"][key]
    payload["state"]["coreset_stats"] = payload["state"]["coreset_stats"][:2]
    torch.save(payload, tmp_path / "old.pt")
    assert load_detector(tmp_path / "old.pt").coreset_summary() == detector.coreset_summary()


@pytest.mark.parametrize(("option", "message"), [
    ({"coverage": "fast"}, "coverage must be one of exact, sample, off, got 'fast'"),
    ({"coverage": None}, "coverage must be one of exact, sample, off, got None"),
    ({"coverage_sample": 0}, "coverage_sample must be a positive number of fit patches, got 0"),
    ({"coverage_sample": 2.5}, "coverage_sample must be a positive number of fit patches, got 2.5"),
])
def test_a_bad_coverage_option_is_a_clear_error(option, message):
    with pytest.raises(DetectError) as raised:
        PatchCore(**option)
    assert str(raised.value) == message


def test_patchcore_selects_over_all_patches_and_measures_the_exact_radius_by_default():
    assert (PatchCore().coreset_part, PatchCore().coverage) == (None, "exact")
