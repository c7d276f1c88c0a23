"""Detectors on a real texture: fit on anomaly-free brick crops, find SYNAGEN anomalies in others."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from detect.registry import load_detector
from detect.detectors.padim import PaDiM
from detect.detectors.patchcore import PatchCore, greedy_coreset
from detect.errors import DetectError, ImageConversionWarning, InvalidImagesError, NotFittedError
from detect.evaluation.evaluate import evaluate
from synth import synthesize
from synth.image import luminance

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SIZE = 128
SHAPES = ("spattered", "elongated", "rough", "complex")
BINS = ("0.02-0.1%", "0.5-1.5%", "2.5-15%")


def _crops(image: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    h, w = image.shape[:2]
    out = []
    for _ in range(n):
        y, x = rng.integers(0, h - SIZE), rng.integers(0, w - SIZE)
        out.append(image[y : y + SIZE, x : x + SIZE].copy())
    return out


@pytest.fixture(scope="module")
def brick():
    rng = np.random.default_rng(0)
    crops = _crops(skimage.data.brick(), 26, rng)
    fit, good = crops[:16], crops[16:]
    rows = []
    for i, source in enumerate(good):
        for b in BINS:
            a = synthesize(source, "synagen", seed=100 + i, shape=SHAPES[i % 4], size_bin=b)
            rows.append({"image": a.image, "mask": a.mask, **a.record})
    return fit, good, rows


@pytest.fixture(scope="module")
def patchcore(brick):
    return PatchCore(coreset_ratio=0.1, seed=0).fit(brick[0])


@pytest.fixture(scope="module")
def padim(brick):
    return PaDiM(n_features=60, seed=0).fit(brick[0])


def test_patchcore_finds_large_anomalies_and_recall_rises_with_size(brick, patchcore):
    _, good, rows = brick
    ev = evaluate(rows, good, patchcore, ks=(1, 2))
    table = ev.tables["shape_size"].groupby("size_bin")[["n", "detected"]].sum()
    recall = (table["detected"] / table["n"]).reindex(list(BINS))
    # measured: 0.2 / 0.9 / 1.0 at one false positive among 10 anomaly-free crops
    assert recall["2.5-15%"] >= 0.8
    assert recall["2.5-15%"] >= recall["0.5-1.5%"] >= recall["0.02-0.1%"]
    assert recall["2.5-15%"] > recall["0.02-0.1%"] + 0.5
    assert ev.summary["false_positives_at_k"]["1"] == 1
    assert ev.summary["pixel_auroc"] > 0.8


def test_padim_finds_large_anomalies(brick, padim):
    _, good, rows = brick
    large = [r for r in rows if r["size_bin"] == "2.5-15%"]
    ev = evaluate(large, good, padim, ks=(1,))
    # measured: 0.7 with 16 fit images (chance at 1 false positive in 10 is about 0.1)
    assert ev.summary["recall_at_k"]["1"] >= 0.5


def test_maps_are_at_input_resolution_and_peak_inside_the_anomaly(brick, patchcore):
    _, _, rows = brick
    big = [r for r in rows if r["size_bin"] == "2.5-15%"][:4]
    result = patchcore.score([r["image"] for r in big])
    assert result.scores.dtype == np.float32 and result.scores.shape == (4,)
    for r, amap in zip(big, result.maps):
        assert amap.shape == (SIZE, SIZE) and amap.dtype == np.float32
        assert amap[r["mask"]].mean() > amap[~r["mask"]].mean()


@pytest.mark.parametrize("which", ["patchcore", "padim"])
def test_saved_detectors_reload_to_identical_scores(brick, patchcore, padim, tmp_path, which):
    detector = {"patchcore": patchcore, "padim": padim}[which]
    images = [r["image"] for r in brick[2][:5]]
    before = detector.score(images)
    again = load_detector(detector.save(tmp_path / f"{which}.pt"))
    after = again.score(images)
    assert np.array_equal(before.scores, after.scores)
    assert all(np.array_equal(a, b) for a, b in zip(before.maps, after.maps))


def test_same_seed_gives_the_same_memory_bank(brick):
    fit = brick[0][:4]
    a = PatchCore(coreset_ratio=0.05, seed=3).fit(fit)
    b = PatchCore(coreset_ratio=0.05, seed=3).fit(fit)
    assert np.array_equal(a.memory_bank.numpy(), b.memory_bank.numpy())


def test_greedy_coreset_picks_far_apart_points():
    import torch

    # two tight clusters far apart: a 2-point coreset takes one from each
    points = torch.cat([torch.randn(50, 8, generator=torch.Generator().manual_seed(0)) * 0.01,
                        torch.randn(50, 8, generator=torch.Generator().manual_seed(1)) * 0.01 + 10])
    idx = greedy_coreset(points, 2, projection_dim=0, seed=0)
    assert {int(i) // 50 for i in idx} == {0, 1}


def test_partitioned_coreset_covers_every_part_and_is_exact_for_one_part():
    import torch

    from detect.detectors.patchcore import partitioned_coreset

    # four tight clusters far apart, one per part: a 4-point coreset by parts takes one from each
    gen = torch.Generator().manual_seed(0)
    points = torch.cat([torch.randn(100, 8, generator=gen) * 0.01 + 10 * c for c in range(4)])
    idx = partitioned_coreset(points, 4, part=100, projection_dim=0, seed=0)
    assert sorted(int(i) // 100 for i in idx) == [0, 1, 2, 3]
    spread = torch.randn(300, 16, generator=gen)
    assert torch.equal(partitioned_coreset(spread, 30, part=300, seed=5), greedy_coreset(spread, 30, seed=5))
    # the same selection whatever the thread count
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = partitioned_coreset(spread, 30, part=64, seed=5)
        torch.set_num_threads(2)
        assert torch.equal(single, partitioned_coreset(spread, 30, part=64, seed=5))
    finally:
        torch.set_num_threads(threads)


def test_nearest_distance_equals_the_brute_force_minimum():
    import torch

    from detect.detectors.patchcore import nearest_distance

    gen = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(500, 24, generator=gen) * 5, torch.randn(700, 24, generator=gen) * 5
    expected = torch.cdist(queries.double(), bank.double()).min(dim=1).values.float()
    for max_elements in (1 << 22, 1000):  # one block, and many small ones
        got = nearest_distance(queries, bank, max_elements=max_elements)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_map_size_shrinks_maps_once_and_keeps_image_scores(brick):
    detector = PatchCore(image_size=64, coreset_ratio=0.2).fit(brick[0][:4])
    anomaly = brick[2][-1]["image"]  # the largest size bin
    images = [np.pad(anomaly, ((0, SIZE // 2), (0, 0)), mode="reflect"), anomaly]  # 1.5 SIZE x SIZE, SIZE x SIZE
    full, small = detector.score(images), detector.score(images, map_size=48)
    assert np.array_equal(full.scores, small.scores)
    assert [m.shape for m in small.maps] == [(48, 32), (48, 48)]
    assert [m.shape for m in full.maps] == [(SIZE * 3 // 2, SIZE), (SIZE, SIZE)]
    # the small map is the full one at lower resolution: its maximum sits in the same place
    y, x = np.unravel_index(np.argmax(small.maps[1]), small.maps[1].shape)
    fy, fx = np.unravel_index(np.argmax(full.maps[1]), full.maps[1].shape)
    assert abs(y * SIZE / 48 - fy) <= SIZE / 16 and abs(x * SIZE / 48 - fx) <= SIZE / 16


def test_image_size_resizes_in_and_maps_come_back_at_input_size(brick):
    fit = brick[0][:4]
    detector = PatchCore(image_size=64, coreset_ratio=0.2).fit(fit)
    big = np.pad(fit[0], ((0, 32), (0, 0)), mode="reflect")  # 160 x 128, another size
    result = detector.score([big])
    assert result.maps[0].shape == (160, 128)


def test_empty_fit_set_is_refused():
    with pytest.raises(InvalidImagesError, match="at least one image"):
        PatchCore().fit([])


def test_fit_images_of_different_sizes_are_refused(brick):
    fit = brick[0]
    with pytest.raises(InvalidImagesError, match=r"fit images\[1\] is 64x128"):
        PaDiM().fit([fit[0], fit[1][:, :64]])


def test_scoring_another_size_without_image_size_is_refused(patchcore, brick):
    with pytest.raises(InvalidImagesError, match="fitted at 128x128"):
        patchcore.score([brick[1][0][:96, :96]])


def _tinted(gray: np.ndarray) -> np.ndarray:
    return np.stack([gray, (gray * 0.8).astype(np.uint8), (gray * 0.6).astype(np.uint8)], axis=2)


def test_a_gray_detector_scores_colour_images_as_their_luma(patchcore, brick):
    colour = _tinted(brick[1][0])
    with pytest.warns(ImageConversionWarning, match="images: 1 of 1 RGB and the detector works on gray"):
        scored = patchcore.score([colour])
    luma = luminance(colour.astype(np.float32) / 255)
    assert patchcore.channels == 1
    assert scored.scores[0] == patchcore.score([luma]).scores[0]


@pytest.mark.parametrize("detector", [PatchCore, PaDiM])
def test_a_fit_set_mixing_gray_and_colour_is_fitted_on_rgb(brick, detector):
    """Gray images are repeated into three channels, said once; the same as fitting on the
    converted images, and a gray image scores as its repeated-RGB self."""
    gray = [crop[:64, :64] for crop in brick[0][:4]]
    mixed = [gray[0], _tinted(gray[1]), gray[2], _tinted(gray[3])]
    as_rgb = [np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img for img in mixed]
    with pytest.warns(ImageConversionWarning, match="fit images: 2 of 4 gray and the detector works on RGB"):
        fitted = detector(seed=0).fit(mixed)
    reference = detector(seed=0).fit(as_rgb)
    assert fitted.channels == reference.channels == 3
    test = brick[1][0][:64, :64]
    with pytest.warns(ImageConversionWarning, match="images: 1 of 1 gray"):
        scores = fitted.score([test]).scores
    assert scores[0] == reference.score([np.repeat(test[:, :, None], 3, axis=2)]).scores[0]


def test_scoring_before_fitting_is_refused(brick):
    with pytest.raises(NotFittedError):
        PaDiM().score(brick[1][:1])


def test_float_images_outside_unit_range_are_refused(brick):
    with pytest.raises(InvalidImagesError, match=r"\[0, 1\]"):
        PatchCore().fit([brick[0][0].astype(np.float32)])


def test_rgb_texture_works_end_to_end():
    rgb = skimage.data.astronaut()[:256, 256:]  # the coloured background of the photo
    rng = np.random.default_rng(1)
    crops = [rgb[y : y + 64, x : x + 64] for y, x in rng.integers(0, 192, size=(8, 2))]
    detector = PatchCore(coreset_ratio=0.2).fit(crops[:6])
    result = detector.score(crops[6:])
    assert result.maps[0].shape == (64, 64) and np.isfinite(result.scores).all()


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(DetectError, match="not supported"):
        PatchCore(backbone="vgg16")
