"""Quality metrics of synthetic anomalies (ASBench 4.4): SSIM, PSNR, LPIPS, FID, KID, IS.

FID and KID are checked on Gaussians with known distances; the feature networks on real textures.
Inception weights cannot be downloaded here: a TORCH_HOME with seeded random checkpoints under the
standard file names exercises the loading path; EfficientNet-Lite0 uses its real shipped weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import torch_home_with_alexnet
import torch
import torchvision
from PIL import Image

from detect.quality.diversity import as_float_rgb
from detect.quality.lpips_backbones import MissingWeightsError
from detect.quality.metrics import (
    KID_MIN_IMAGES,
    QualityInputError,
    distribution_quality,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    main,
    paired_quality,
    ssim_psnr,
    unpaired_quality,
)
from detect.quality.features import FeatureExtractor, build_fid_inception


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    """TORCH_HOME with seeded random AlexNet, Inception-v3 and FID-Inception checkpoints."""
    home = tmp_path_factory.mktemp("torch_home")
    checkpoints = torch_home_with_alexnet(home, seed=7)
    inception = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(inception.state_dict(), checkpoints / "inception_v3_google-0cc3c7bd.pth")
    torch.save(build_fid_inception().state_dict(), checkpoints / "pt_inception-2015-12-05-6726825d.pth")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        yield home


def crops(texture: np.ndarray, n: int, size: int = 64) -> list[np.ndarray]:
    """n non-overlapping size×size crops along the diagonal of a texture."""
    return [texture[k * size : (k + 1) * size, k * size : (k + 1) * size] for k in range(n)]


def blob(source: np.ndarray, radius: int, value: int = 255) -> np.ndarray:
    image = source.copy()
    h, w = image.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    image[(yy - h // 2) ** 2 + (xx - w // 2) ** 2 <= radius**2] = value
    return image


# --------------------------------------------------------------------------- FID on known Gaussians
def test_fid_of_one_dimensional_gaussians():
    # closed form in 1-D: (mu1 − mu2)² + (sigma1 − sigma2)²
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == pytest.approx(4.0 + 1.0)


def test_fid_with_equal_covariances_is_the_squared_mean_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    sigma = a @ a.T + np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(float(np.sum((mu1 - mu2) ** 2)), rel=1e-6)


def test_fid_of_commuting_covariances_matches_the_closed_form():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a, b = rng.uniform(0.5, 3.0, 6), rng.uniform(0.5, 3.0, 6)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu1, mu2 = np.zeros(6), np.full(6, 0.5)
    expected = 6 * 0.25 + float(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


def test_fid_of_samples_approaches_the_distance_of_their_gaussians():
    rng = np.random.default_rng(2)
    mu1, mu2 = np.array([0.0, 0.0, 1.0]), np.array([1.0, -1.0, 1.0])
    sd1, sd2 = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
    f1 = mu1 + sd1 * rng.normal(size=(40000, 3))
    f2 = mu2 + sd2 * rng.normal(size=(40000, 3))
    expected = 2.0 + float(np.sum((sd1 - sd2) ** 2))
    assert fid_from_features(f1, f2) == pytest.approx(expected, rel=0.03)
    assert fid_from_features(f1, f1) == pytest.approx(0.0, abs=1e-6)


def test_fid_with_fewer_samples_than_dimensions_agrees_with_sqrtm():
    rng = np.random.default_rng(3)
    f1 = rng.normal(size=(12, 40))
    f2 = 0.3 + 1.4 * rng.normal(size=(15, 40))
    via_sqrtm = frechet_distance(*feature_statistics(f1), *feature_statistics(f2))
    assert fid_from_features(f1, f2) == pytest.approx(via_sqrtm, rel=1e-5)


def test_fid_refuses_a_single_sample():
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(np.ones((1, 4)), np.ones((3, 4)))


# --------------------------------------------------------------------------- KID and IS
def test_kid_equals_the_unbiased_mmd_written_out():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(5, 3)), rng.normal(1.0, 1.0, size=(5, 3))

    def k(a, b):
        return (a @ b / 3 + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(5)) / 25
    kid, std = kernel_inception_distance(x, y, n_subsets=3, subset_size=5)
    assert kid == pytest.approx(xx + yy - 2 * xy, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)  # every subset is the whole set


def test_kid_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same, _ = kernel_inception_distance(a, b, n_subsets=20, subset_size=200, seed=0)
    near, _ = kernel_inception_distance(a, b + 0.5, n_subsets=20, subset_size=200, seed=0)
    far, _ = kernel_inception_distance(a, b + 2.0, n_subsets=20, subset_size=200, seed=0)
    assert abs(same) < 0.05 < near < far
    assert kernel_inception_distance(a, b, subset_size=50, seed=9) == kernel_inception_distance(a, b, subset_size=50, seed=9)


def test_inception_score_bounds():
    assert inception_score(np.full((20, 10), 0.1), splits=2)[0] == pytest.approx(1.0)
    confident = np.eye(10)[np.arange(40) % 10]  # sure of one class each, every class equally often
    mean, std = inception_score(confident, splits=4)
    assert mean == pytest.approx(10.0) and std == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------- paired metrics
def test_unchanged_image_has_ssim_one_and_infinite_psnr(textures):
    ssim, psnr = ssim_psnr(textures["brick"], textures["brick"])
    assert ssim == pytest.approx(1.0) and psnr == float("inf")


def test_larger_anomaly_lowers_ssim_and_psnr(textures):
    source = textures["gravel"]
    small = ssim_psnr(blob(source, 8), source)
    large = ssim_psnr(blob(source, 40), source)
    assert large[0] < small[0] < 1.0
    assert large[1] < small[1] < float("inf")


def test_psnr_follows_the_mean_squared_error(textures):
    source = textures["grass"]
    changed = source.astype(np.int16)
    changed[:, ::2] += 10  # half the pixels 10 gray levels brighter (no clipping at the top)
    changed = np.clip(changed, 0, 255).astype(np.uint8)
    mse = np.mean((changed.astype(np.float64) - source) ** 2) / 255.0**2
    assert ssim_psnr(changed, source)[1] == pytest.approx(10 * np.log10(1.0 / mse), rel=1e-6)


def test_paired_quality_lpips_is_zero_for_unchanged_and_positive_for_anomalies(torch_home, textures):
    sources = [textures["brick"][:96, :96], textures["grass"][:96, :96]]
    anomalies = [blob(s, 20) for s in sources]
    result = paired_quality(sources + anomalies, sources + sources)
    assert result.lpips[:2] == pytest.approx([0.0, 0.0], abs=1e-7)
    assert (result.lpips[2:] > 0).all()
    assert set(result.means()) == {"SSIM", "PSNR", "LPIPS"}


def test_paired_quality_refuses_mismatched_counts(textures):
    with pytest.raises(QualityInputError, match="originals"):
        paired_quality([textures["brick"]], [], with_lpips=False)


# --------------------------------------------------------------------------- feature networks
def test_missing_inception_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for kind, name in (("inception", "inception_v3_google-0cc3c7bd.pth"),
                       ("fid-inception", "pt_inception-2015-12-05-6726825d.pth")):
        with pytest.raises(MissingWeightsError) as info:
            FeatureExtractor(kind, device="cpu")
        assert name in str(info.value) and str(tmp_path / "hub" / "checkpoints") in str(info.value)


def test_inception_features_and_identical_sets(torch_home, textures):
    images = crops(textures["brick"], 2)
    for kind, classes in (("inception", 1000), ("fid-inception", 1008)):
        extractor = FeatureExtractor(kind, device="cpu")
        features, probs = extractor([as_float_rgb(i) for i in images[:2]])
        assert features.shape == (2, extractor.feature_dim) == (2, 2048) and probs.shape == (2, classes)
        assert extractor.classes == classes
        assert probs.sum(axis=1) == pytest.approx(1.0)
        assert extractor.comparable
        assert fid_from_features(features, features) == pytest.approx(0.0, abs=1e-3)


def test_efficientnet_fid_tells_textures_apart(textures):
    extractor = FeatureExtractor("efficientnet-lite0", device="cpu")
    brick_a, brick_b = crops(textures["brick"], 4), crops(np.flipud(textures["brick"]), 4)
    grass = crops(textures["grass"], 4)
    embed = lambda images: extractor([as_float_rgb(i) for i in images])[0]  # noqa: E731
    a, b, g = embed(brick_a), embed(brick_b), embed(grass)
    assert a.shape[1] == extractor.feature_dim == 1280
    assert fid_from_features(a, b) < fid_from_features(a, g)
    assert kernel_inception_distance(a, b, subset_size=4)[0] < kernel_inception_distance(a, g, subset_size=4)[0]


def _many_crops(texture: np.ndarray, n: int, size: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    h, w = texture.shape[:2]
    return [texture[y : y + size, x : x + size] for y, x in zip(rng.integers(0, h - size, n), rng.integers(0, w - size, n))]


def test_fid_kid_is_are_refused_below_their_minimum_counts_with_the_reason(textures):
    extractor = FeatureExtractor("efficientnet-lite0", device="cpu")
    brick, grass = _many_crops(textures["brick"], KID_MIN_IMAGES), _many_crops(textures["grass"], KID_MIN_IMAGES)
    below = distribution_quality(brick[:-1], grass, extractor=extractor, kid_subset_size=KID_MIN_IMAGES)
    assert below.as_dict() == {}  # no number below a minimum
    refused = below.refusals()
    assert set(refused) == {"FID_EfficientNetLite0", "KID_EfficientNetLite0", "IS_EfficientNetLite0"}
    assert "at least 1281 images per set" in refused["FID_EfficientNetLite0"]  # D + 1, D = 1280
    assert f"at least {KID_MIN_IMAGES} images per set" in refused["KID_EfficientNetLite0"]
    assert "got 49 synthetic and 50 reference images" in refused["KID_EfficientNetLite0"]
    assert "at least 1000 synthetic images" in refused["IS_EfficientNetLite0"]  # C = 1000 classes
    assert below.describe() == "efficientnet-lite0 features (D = 1280), 49 synthetic and 50 reference images"
    at = distribution_quality(brick, grass, extractor=extractor, kid_subset_size=KID_MIN_IMAGES)
    assert set(at.as_dict()) == {"KID_EfficientNetLite0", "KID_std_EfficientNetLite0"}  # at the minimum: computed
    assert at.as_dict()["KID_EfficientNetLite0"] > 0 and not at.comparable
    assert set(at.refusals()) == {"FID_EfficientNetLite0", "IS_EfficientNetLite0"}


def test_unpaired_quality_compares_every_synthetic_image_with_every_reference(textures):
    image, other = textures["brick"][:64, :64], textures["grass"][:64, :64]
    alone = unpaired_quality([image], [image], with_lpips=False)
    assert alone.ssim.tolist() == [pytest.approx(1.0)] and alone.psnr.tolist() == [float("inf")]
    both = unpaired_quality([image], [image, other], with_lpips=False)
    assert both.means()["SSIM"] == pytest.approx((1.0 + ssim_psnr(image, other)[0]) / 2)
    # a reference of another size is resized to the synthetic image's size (here: an exact 2x upscale)
    large = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    assert unpaired_quality([image], [large], with_lpips=False).ssim[0] == pytest.approx(1.0)
    sampled = unpaired_quality([image, other, image], [image, other, other], with_lpips=False, max_pairs=4)
    assert sampled.ssim.size == 4


# --------------------------------------------------------------------------- command line
def test_quality_cli_on_a_synth_folder(torch_home, tmp_path, textures, capsys):
    out, sources = tmp_path / "out", tmp_path / "sources"
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    sources.mkdir()
    lines = []
    for i, name in enumerate(("brick", "grass", "gravel", "brick", "grass", "gravel")):
        source = textures[name][:96, :96]
        Image.fromarray(source).save(sources / f"{name}.png")
        image = blob(source, 10 + 4 * i, value=0 if i < 3 else 255)
        mask = (image != source).astype(np.uint8) * 255
        Image.fromarray(image).save(out / "images" / f"{i}.png")
        Image.fromarray(mask).save(out / "masks" / f"{i}.png")
        lines.append(json.dumps({"file_name": f"images/{i}.png", "mask_file_name": f"masks/{i}.png",
                                 "source_id": f"{name}.png", "method": "dark" if i < 3 else "bright"}))
    (out / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    result = tmp_path / "quality.json"
    code = main(["--dataset", str(out), "--sources", str(sources), "--by", "method",
                 "--features", "efficientnet-lite0", "--kid-subset-size", "3", "--output", str(result)])
    assert code == 0
    table = json.loads(result.read_text())
    assert sorted(table) == ["bright", "dark"]
    for metrics in table.values():
        assert 0 < metrics["SSIM"] < 1 and 0 < metrics["PSNR"] < 100 and metrics["LPIPS"] > 0
        assert "FID_EfficientNetLite0" not in metrics and metrics["n_images"] == 3  # 3 images: refused, no number
        assert "at least 1281 images" in metrics["refused"]["FID_EfficientNetLite0"]
        assert metrics["reference"].startswith("anomaly-free sources (3 images")
    printed = capsys.readouterr().out
    assert "NOT comparable" in printed and "dark: KID_EfficientNetLite0 not computed: needs at least 50" in printed
    assert "FID/KID/IS with efficientnet-lite0 features (D = 1280), 3 synthetic and 3 reference images" in printed


def test_quality_cli_with_real_defects_compares_with_them_not_with_the_sources(torch_home, tmp_path, textures, capsys):
    # a synth folder of gravel anomalies, and a real-defect set (MVTec layout) of brick
    out, sources, real = tmp_path / "out", tmp_path / "sources", tmp_path / "brick"
    for folder in (out / "images", out / "masks", sources, real / "train" / "good", real / "test" / "good",
                   real / "test" / "hole", real / "ground_truth" / "hole"):
        folder.mkdir(parents=True)
    gravel, brick = textures["gravel"][:96, :96], textures["brick"][:96, :96]
    Image.fromarray(gravel).save(sources / "gravel.png")
    image = blob(gravel, 12)
    Image.fromarray(image).save(out / "images" / "0.png")
    Image.fromarray((image != gravel).astype(np.uint8) * 255).save(out / "masks" / "0.png")
    (out / "metadata.jsonl").write_text(json.dumps({"file_name": "images/0.png", "mask_file_name": "masks/0.png",
                                                    "source_id": "gravel.png"}) + "\n")
    Image.fromarray(gravel).save(real / "train" / "good" / "000.png")  # never a reference: not a defect
    Image.fromarray(gravel).save(real / "test" / "good" / "000.png")
    Image.fromarray(blob(brick, 9)).save(real / "test" / "hole" / "000.png")
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(real / "ground_truth" / "hole" / "000_mask.png")
    result = tmp_path / "quality.json"
    assert main(["--dataset", str(out), "--sources", str(sources), "--real", str(real), "--no-lpips",
                 "--features", "none", "--output", str(result)]) == 0
    metrics = json.loads(result.read_text())
    assert metrics["SSIM"] == pytest.approx(ssim_psnr(image, blob(brick, 9))[0])  # the real defect, not the source
    assert metrics["SSIM"] != pytest.approx(ssim_psnr(image, gravel)[0])
    assert metrics["reference"].startswith(f"real defects {real} (1 images")
    assert f"reference: real defects {real}" in capsys.readouterr().out


def test_quality_cli_without_sources_explains_what_is_missing(tmp_path, textures, capsys):
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    Image.fromarray(textures["brick"][:32, :32]).save(out / "images" / "0.png")
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(out / "masks" / "0.png")
    (out / "metadata.jsonl").write_text(json.dumps({"file_name": "images/0.png", "mask_file_name": "masks/0.png",
                                                    "source_id": "brick.png"}) + "\n")
    assert main(["--dataset", str(out), "--no-lpips", "--features", "none"]) == 2
    assert "--sources" in capsys.readouterr().err


def test_real_anomaly_folder_in_mvtec_layout_is_the_reference(tmp_path, textures):
    from detect.quality.anomaly_rows import load_reference_images

    real = tmp_path / "wood"
    for defect in ("crack", "hole"):
        (real / "test" / defect).mkdir(parents=True)
        (real / "ground_truth" / defect).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(blob(textures["brick"][:64, :64], 6 + k)).save(real / "test" / defect / f"00{k}.png")
            Image.fromarray(np.zeros((64, 64), np.uint8)).save(real / "ground_truth" / defect / f"00{k}_mask.png")
    images = load_reference_images(real)
    assert len(images) == 4  # the masks under ground_truth/ are not reference images
    assert images[0].shape == (64, 64)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_reference_images(empty)
