"""PatchCore's coreset selections report their coverage radius, and the evaluation says which ran."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

from detect.detectors.detector import load_detector
from detect.detectors.patchcore import PatchCore, _projected, greedy_coreset, partitioned_coreset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _features() -> torch.Tensor:
    # patch features of a real texture: gravel pixels in 4x4 blocks as 48-dimensional points
    gravel = torch.from_numpy(skimage.data.gravel()[:160, :160].astype(np.float32) / 255.0)
    return gravel.unfold(0, 4, 4).unfold(1, 4, 4).reshape(-1, 16).repeat(1, 3) + torch.linspace(0, 0.01, 48)


def _true_radius(features: torch.Tensor, chosen: torch.Tensor, projection_dim: int) -> float:
    reduced, _ = _projected(features, projection_dim, 0)
    return float(torch.cdist(reduced, reduced[chosen]).min(dim=1).values.max())


def test_exact_selection_reports_its_coverage_radius():
    features = _features()
    chosen, radius = greedy_coreset(features, 40, projection_dim=32, with_radius=True)
    assert radius == pytest.approx(_true_radius(features, chosen, 32), rel=1e-4, abs=1e-5)


def test_part_by_part_radius_bounds_the_true_coverage_radius():
    features = _features()
    chosen, bound = partitioned_coreset(features, 40, part=400, projection_dim=32, with_radius=True)
    assert _true_radius(features, chosen, 32) <= bound + 1e-5


def test_patchcore_says_which_selection_ran_and_keeps_it_when_saved(tmp_path):
    images = [skimage.data.gravel()[y : y + 64, 0:64] for y in range(0, 256, 64)]
    for part, selection in ((None, "exact greedy k-center"), (64, "greedy k-center part by part")):
        detector = PatchCore(image_size=64, coreset_part=part, coreset_ratio=0.2).fit(images)
        summary = detector.coreset_summary()
        assert summary["selection"].startswith(selection) and summary["coverage_radius"] > 0
        assert summary["bank"] == round(0.2 * summary["patches"])
        assert summary["radius_is_bound"] is (part is not None)
        detector.save(tmp_path / "p.pt")
        assert load_detector(tmp_path / "p.pt").coreset_summary() == summary
