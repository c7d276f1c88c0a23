"""PatchCore's coreset: the lazy greedy k-center selection is the textbook one, its coverage radius is
measured exactly in the feature space, and the evaluation says which selection ran."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

from detect.registry import load_detector
from detect.detectors.patchcore import PatchCore, _projected, coverage_radius, greedy_coreset, partitioned_coreset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _texture_features(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Patch features of real textures: 4x4 pixel blocks of gravel, brick and grass side by side
    (each row one block position: 3 x 16 = 48 dimensions)."""
    blocks = []
    for image in (skimage.data.gravel(), skimage.data.brick(), skimage.data.grass()):
        pixels = torch.from_numpy(image[:160, :160].astype(np.float64) / 255.0)
        blocks.append(pixels.unfold(0, 4, 4).unfold(1, 4, 4).reshape(-1, 16))
    return torch.cat(blocks, dim=1).to(dtype)


def _brute_radius(features: torch.Tensor, index: torch.Tensor) -> float:
    return float(torch.cdist(features, features[index]).min(dim=1).values.max())


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
        assert coverage_radius(features, coreset) == pytest.approx(_brute_radius(features, coreset), rel=1e-12)


def test_same_seed_same_centres_other_seed_other_centres():
    features = _texture_features()
    first = greedy_coreset(features, 80, seed=7)
    assert torch.equal(first, greedy_coreset(features, 80, seed=7))
    assert not torch.equal(first, greedy_coreset(features, 80, seed=8))


def test_patchcore_says_which_selection_ran_and_its_radius_and_keeps_it_when_saved(tmp_path):
    images = [skimage.data.gravel()[y : y + 64, 0:64] for y in range(0, 256, 64)]
    for part, selection in ((None, "greedy k-center over all patches"), (64, "greedy k-center part by part")):
        detector = PatchCore(image_size=64, coreset_part=part, coreset_ratio=0.2).fit(images)
        summary = detector.coreset_summary()
        assert summary["selection"].startswith(selection)
        assert summary["bank"] == round(0.2 * summary["patches"])
        # the radius is measured on the fit patches, in the feature space the detector scores in
        with torch.no_grad():
            f = detector._features(next(detector._fit_batches(images, False)))
        patches = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).double()
        brute = float(torch.cdist(patches, detector.memory_bank.double()).min(dim=1).values.max())
        assert summary["coverage_radius"] == pytest.approx(brute, rel=1e-4)
        detector.save(tmp_path / "p.pt")
        assert load_detector(tmp_path / "p.pt").coreset_summary() == summary


def test_patchcore_selects_over_all_patches_by_default():
    assert PatchCore().coreset_part is None
