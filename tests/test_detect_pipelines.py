"""Detection pipelines trained on synthetic anomalies: DRAEM, defect-map prediction, the anomaly
ratio and weighted method mixes (shared with the segmenter)."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from detect.registry import load_detector
from detect.errors import DetectError
from detect.registry import build_detector
from detect.training.defect_map import DefectMap, LargeKernelConv
from detect.training.draem import DRAEMDetector
from detect.training.synthetic_training import (
    SyntheticAnomalies,
    focal_loss,
    latest_checkpoint,
    method_weights,
    ssim_loss,
    train_on_synthetic,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _crops(n: int, size: int, seed: int, name: str = "brick") -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    image = getattr(skimage.data, name)()
    return [image[y : y + size, x : x + size].copy() for y, x in rng.integers(0, 512 - size, size=(n, 2))]


def _is_flip_of_a_fit_image(sample: np.ndarray, images: np.ndarray) -> bool:
    return any(np.array_equal(sample, v) for img in images
               for v in (img, img[:, ::-1], img[::-1], img[::-1, ::-1]))


# --------------------------------------------------------------------------- anomaly ratio
def test_ratio_zero_never_draws_an_anomaly():
    images = np.stack(_crops(3, 48, 0))[:, :, :, None]
    data = SyntheticAnomalies(images, ("cutout",), seed=1, length=40, ratio=0.0, label="mask", with_source=True)
    for i in range(40):
        x, y, source = data[i]
        assert float(y.max()) == 0.0
        assert torch.equal(x, source)
        as_uint8 = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        assert _is_flip_of_a_fit_image(as_uint8, images)


def test_ratio_sets_the_share_of_samples_with_an_anomaly():
    images = np.stack(_crops(3, 48, 0))[:, :, :, None]
    for ratio in (0.25, 0.75):
        data = SyntheticAnomalies(images, ("cutout",), seed=3, length=400, ratio=ratio, label="mask")
        with_anomaly = np.mean([data.has_anomaly(i) for i in range(400)])
        assert abs(with_anomaly - ratio) < 0.07
        # the label says where: samples drawn without an anomaly are all zero, the others are not
        for i in range(12):
            assert (float(data[i][1].max()) > 0) == data.has_anomaly(i)


def test_ratio_one_gives_the_same_samples_as_before_ratios_existed():
    images = np.stack(_crops(3, 48, 0))[:, :, :, None]
    default = SyntheticAnomalies(images, ("synagen",), seed=5, length=10)
    explicit = SyntheticAnomalies(images, ("synagen",), seed=5, length=10, ratio=1.0)
    for i in range(3):
        assert all(torch.equal(a, b) for a, b in zip(default[i], explicit[i]))


@pytest.mark.parametrize("ratio", [-0.1, 1.5, "half"])
def test_ratio_outside_zero_one_is_refused(ratio):
    with pytest.raises(DetectError, match="anomaly_ratio"):
        DRAEMDetector(anomaly_ratio=ratio)


# --------------------------------------------------------------------------- method mixes
def test_a_weighted_mix_draws_only_methods_with_weight():
    images = np.stack(_crops(3, 64, 1))[:, :, :, None]
    only_cutout = SyntheticAnomalies(images, {"cutout": 1.0, "fpi": 0.0}, seed=2, length=20, label="mask")
    assert only_cutout.methods == ("cutout",)
    for i in range(6):
        x, y = only_cutout[i]
        changed = x[0].numpy()[y[0].numpy() > 0]
        # CutOut sets its square to one constant: every anomalous pixel has the same value
        assert changed.size and np.ptp(changed) == 0.0


def test_mix_weights_are_normalised_and_checked():
    assert method_weights({"draem": 3, "cutpaste": 1}) == {"draem": 0.75, "cutpaste": 0.25}
    assert method_weights("nsa") == {"nsa": 1.0}
    with pytest.raises(DetectError, match="unknown synth method"):
        method_weights({"no_such": 1.0})
    with pytest.raises(DetectError, match="every weight"):
        method_weights({"draem": 0.0})
    with pytest.raises(DetectError, match="finite and >= 0"):
        method_weights({"draem": -1.0})


# --------------------------------------------------------------------------- losses and layers
def test_focal_loss_without_focusing_is_cross_entropy_and_focusing_downweighs_easy_pixels():
    logits = torch.tensor([[[[3.0, -2.0], [0.5, -0.1]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(focal_loss(logits, target, gamma=0.0), bce)
    assert float(focal_loss(logits, target, gamma=2.0)) < float(bce)


def test_ssim_loss_is_zero_for_identical_images_and_grows_with_noise():
    image = torch.from_numpy(_crops(1, 64, 2)[0] / 255.0).float()[None, None]
    noisy = (image + 0.1 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert float(ssim_loss(image, image)) == pytest.approx(0.0, abs=1e-5)
    assert float(ssim_loss(image, noisy)) > 0.2


def test_large_kernel_with_its_small_branch_fuses_into_one_kernel():
    torch.manual_seed(0)
    layer = LargeKernelConv(4, 13)
    for bn in (layer.large[1], layer.small[1]):  # non-trivial statistics
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    layer.eval()
    x = torch.randn(2, 4, 20, 20)
    assert torch.allclose(layer(x), layer.fuse()(x), atol=1e-5)


def test_defect_map_feature_extractor_is_a_copy_not_trained():
    detector = DefectMap(steps=1, train_batch_size=2, image_size=None)
    net = detector.model
    assert not any(p.requires_grad for p in net.feature_extractor.parameters())
    for (name, a), b in zip(net.encoder.state_dict().items(), net.feature_extractor.state_dict().values()):
        assert torch.equal(a, b), name


# --------------------------------------------------------------------------- training, saving, resume
@pytest.mark.parametrize("pipeline", ["draem", "defect_map"])
def test_train_command_writes_a_pipeline_that_reloads_to_identical_scores(tmp_path, pipeline):
    from detect.training.train import main

    fit_dir = tmp_path / "good"
    fit_dir.mkdir()
    for i, crop in enumerate(_crops(4, 64, 2, "gravel")):
        Image.fromarray(crop).save(fit_dir / f"{i}.png")
    out = tmp_path / "run"
    code = main(["--fit", str(fit_dir), "--output", str(out), "--pipeline", pipeline, "--steps", "2",
                 "--batch-size", "2", "--anomaly-ratio", "0.75", "--methods", "cutout:0.5,draem:0.5",
                 "--checkpoint-every", "1", "--no-progress", "--cpu"])
    assert code == 0
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == ["step_0000001.pt", "step_0000002.pt"]
    detector = load_detector(out / "detector.pt")
    assert detector.name == pipeline and detector.trained_steps == 2
    assert detector.anomaly_ratio == 0.75 and detector.methods == {"cutout": 0.5, "draem": 0.5}
    test = _crops(2, 64, 3, "gravel")
    first = detector.score(test)
    second = load_detector(detector.save(tmp_path / "again.pt")).score(test)
    assert np.array_equal(first.scores, second.scores)
    assert all(np.array_equal(a, b) for a, b in zip(first.maps, second.maps))
    assert 0.0 <= float(first.maps[0].min()) and float(first.maps[0].max()) <= 1.0


def test_resumed_defect_map_training_equals_uninterrupted_training(tmp_path):
    fit = _crops(4, 64, 1)
    # 2 images per step over 4 images: the encoder is copied into the extractor every 2 steps
    options = dict(steps=4, train_batch_size=2, seed=0, width=8, decoder_width=8, kernels=(7, 7, 5, 3))
    straight = DefectMap(**options).fit(fit)
    interrupted = DefectMap(**options)
    train_on_synthetic(interrupted, interrupted.prepare_fit(fit), checkpoint_dir=tmp_path, progress=False, stop_at=3)
    assert latest_checkpoint(tmp_path).name == "step_0000003.pt"
    resumed = DefectMap(**options)
    train_on_synthetic(resumed, resumed.prepare_fit(fit), checkpoint_dir=tmp_path, resume=True, progress=False)
    assert resumed.trained_steps == 4
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_pipelines_are_built_by_name_with_their_paper_defaults():
    draem = build_detector("draem")
    assert (draem.anomaly_ratio, draem.lr, draem.score_kernel, draem.methods) == (0.5, 1e-4, 21, ("draem",))
    defect_map = build_detector("defect_map")
    assert defect_map.methods == ("foreground_perlin",) and defect_map.kernels == (31, 29, 27, 13)
    assert build_detector("segmenter").anomaly_ratio == 1.0


@pytest.mark.slow
def test_a_short_cpu_draem_training_separates_large_anomalies():
    from detect.evaluation.metrics import image_auroc, pixel_auroc
    from synth import synthesize

    crops = _crops(36, 64, 0)
    fit, good, defective = crops[:16], crops[16:26], crops[26:]
    anomalies = [synthesize(s, "draem", seed=100 + i, size_bin="2.5-15%") for i, s in enumerate(defective)]
    detector = DRAEMDetector(steps=100, train_batch_size=8, lr=1e-3, seed=0, methods=("cutout", "draem")).fit(fit)
    good_scores = detector.score(good).scores
    found = detector.score([a.image for a in anomalies])
    # measured: image AUROC 0.93 after 100 steps (0.80 after 60), pixel AUROC 0.69; chance is 0.5
    assert image_auroc(good_scores, found.scores) >= 0.7
    assert pixel_auroc(found.maps, [a.mask for a in anomalies]) > 0.6


# --------------------------------------------------------------------------- batched synthesis on a device
from detect.training.synthetic_training import DeviceSyntheticBatches  # noqa: E402


def _stacked(data: SyntheticAnomalies, indices) -> tuple[torch.Tensor, ...]:
    samples = [data[i] for i in indices]
    return tuple(torch.stack(parts) for parts in zip(*samples))


@pytest.mark.parametrize("label", ["mask", "logistic"])
def test_device_batches_are_the_cpu_loaders_samples(label):
    """Same draws per sample, anomalies from the batched renderer: for byte-identical methods the
    images, sources and mask labels equal the CPU loader's; the logistic label agrees to 1e-6
    (float32 exp on another implementation)."""
    images = np.stack(_crops(4, 64, 3, "gravel"))[:, :, :, None].repeat(3, axis=3)
    images[..., 1] = np.stack(_crops(4, 64, 4, "brick"))
    data = SyntheticAnomalies(images, ("cutout", "fpi", "cutpaste", "draem"), seed=4, length=100, ratio=0.75,
                              label=label, with_source=True)
    indices = list(range(10, 22))
    x, y, source = DeviceSyntheticBatches(data, "cpu").batch(indices)
    cx, cy, csource = _stacked(data, indices)
    assert torch.equal(x, cx) and torch.equal(source, csource)
    if label == "mask":
        assert torch.equal(y, cy)
    else:
        np.testing.assert_allclose(y.numpy(), cy.numpy(), atol=1e-6)
    # any batching gives the same samples
    halves = [DeviceSyntheticBatches(data, "cpu").batch(indices[:5]), DeviceSyntheticBatches(data, "cpu").batch(indices[5:])]
    assert torch.equal(torch.cat([h[0] for h in halves]), x)


def test_device_batches_keep_the_anomaly_ratio():
    images = np.stack(_crops(3, 48, 0))[:, :, :, None]
    never = SyntheticAnomalies(images, ("cutout",), seed=1, length=40, ratio=0.0, label="mask", with_source=True)
    x, y, source = DeviceSyntheticBatches(never, "cpu").batch(range(16))
    assert float(y.max()) == 0.0 and torch.equal(x, source)
    half = SyntheticAnomalies(images, ("cutout", "synagen"), seed=3, length=400, ratio=0.5, label="mask")
    x, y = DeviceSyntheticBatches(half, "cpu").batch(range(40))
    carries = [bool(y[k].max() > 0) for k in range(40)]
    assert carries == [half.has_anomaly(i) for i in range(40)]
    assert 10 < sum(carries) < 30


def test_device_batches_make_methods_without_a_batched_renderer_on_the_cpu():
    images = np.stack(_crops(2, 64, 5))[:, :, :, None]
    data = SyntheticAnomalies(images, ("hybrid", "cutout"), seed=6, length=20, label="mask")
    x, y = DeviceSyntheticBatches(data, "cpu").batch(range(6))
    cx, cy = _stacked(data, range(6))
    assert torch.equal(x, cx) and torch.equal(y, cy)


def test_device_batches_render_nsa_on_the_device_as_the_cpu_loader_does():
    """NSA samples come from the batched renderer with the CPU loader's draws and sources: each
    sample holds an anomaly on the CPU loader's source, changed by more than one level only inside
    its mask (NSA's label counts changes above one level). How close
    the Poisson blends are is bounded in tests/test_batched.py; a one-level difference there can
    change an anomaly's scale, so no pixel bound between the two loaders holds by construction
    (measured on these 16: 9 identical, at most 2 levels apart)."""
    images = np.stack(_crops(3, 64, 5))[:, :, :, None].repeat(3, axis=3)
    images[..., 1] = np.stack(_crops(3, 64, 6, "brick"))
    data = SyntheticAnomalies(images, ("nsa",), seed=6, length=40, label="mask", with_source=True)
    indices = list(range(16))
    x, y, source = DeviceSyntheticBatches(data, "cpu").batch(indices)
    cx, cy, csource = _stacked(data, indices)
    assert torch.equal(source, csource)
    for image, label in ((x, y), (cx, cy)):
        assert all(bool((label[k] > 0).any()) for k in range(len(indices)))
        outside = (label == 0).expand_as(image)
        assert float((image - source)[outside].abs().max()) <= 1 / 255 + 1e-6


def test_a_segmenter_trains_on_device_made_anomalies():
    from detect.training.segmenter import Segmenter

    fit = _crops(4, 64, 7)
    options = dict(methods=("cutout", "cutpaste"), steps=3, train_batch_size=2, pretrained=False, width=8, seed=0)
    on_device = Segmenter(synth_device="cpu", **options).fit(fit)
    assert on_device.trained_steps == 3
    # the CPU loader's samples (the logistic labels up to float32 rounding), so the same weights
    loader = Segmenter(**options).fit(fit)
    for a, b in zip(on_device.model.state_dict().values(), loader.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(DetectError, match="synth device"):
        Segmenter(synth_device="gpu0", **options)
