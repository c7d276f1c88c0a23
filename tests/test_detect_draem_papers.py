"""DRAEM as its papers run it: anomalies filled from a texture folder (DTD) and training images
rotated, in training (CPU loader and device batches alike) and in ``anomalyforge bench`` configs;
today's defaults (self-tile fill, flips) keep their samples."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from detect.errors import DetectError
from detect.evaluation.bench import BenchConfigError, cells, config_from_dict, quality_jobs
from detect.training.draem import DRAEMDetector
from detect.training.synthetic_training import DeviceSyntheticBatches, SyntheticAnomalies, rotated, texture_files
from synth import synthesize

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64


def _crops(n: int, seed: int, name: str = "gravel") -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    image = getattr(skimage.data, name)()
    return [image[y : y + SIZE, x : x + SIZE].copy() for y, x in rng.integers(0, 512 - SIZE, size=(n, 2))]


def _rgb_fit_images() -> np.ndarray:
    images = np.stack(_crops(3, 0))[:, :, :, None].repeat(3, axis=3)
    images[..., 1] = np.stack(_crops(3, 1, "grass"))
    return images


@pytest.fixture
def texture_folder(tmp_path):
    """Two texture images larger than the training images (brick, and the astronaut photo)."""
    folder = tmp_path / "textures"
    folder.mkdir()
    Image.fromarray(skimage.data.brick()[:200, :200]).save(folder / "brick.png")
    Image.fromarray(skimage.data.astronaut()[::2, ::2]).save(folder / "astronaut.png")
    return folder


def test_training_anomalies_fill_from_the_texture_folder(texture_folder):
    images = _rgb_fit_images()
    files = texture_files(texture_folder)
    data = SyntheticAnomalies(images, ("draem",), seed=2, length=50, ratio=1.0, label="mask", with_source=True,
                              textures=files)
    plain = SyntheticAnomalies(images, ("draem",), seed=2, length=50, ratio=1.0, label="mask", with_source=True)
    picks = set()
    for index in range(6):
        # the texture is drawn on a stream of its own: every other draw is a run without textures'
        draw, partner, method, seed = data.draw_attempt(np.random.default_rng([2, index]))
        assert (draw, partner, method, seed) == plain.draw_attempt(np.random.default_rng([2, index]))
        source = data._source(draw)
        picks.add(data.texture_pick(index))
        texture = np.asarray(Image.open(files[data.texture_pick(index)]))
        anomaly = synthesize(source, "draem", seed=seed, partners=(data.partner(partner),), textures=(texture,))
        assert anomaly.spec.params["fill"]["source"] == "texture"
        assert torch.equal(data[index][0], torch.from_numpy(anomaly.image.astype(np.float32) / 255.0).permute(2, 0, 1))
        # without textures DRAEM falls back to the image's own tiles, as before
        fallback = synthesize(source, "draem", seed=seed, partners=(plain.partner(partner),))
        assert fallback.spec.params["fill"]["source"] == "tiles"
        assert torch.equal(plain[index][0], torch.from_numpy(fallback.image.astype(np.float32) / 255.0).permute(2, 0, 1))
    assert picks == {0, 1}  # both textures are used


def test_rotate_turns_about_three_in_ten_training_images_and_flips_stay_the_default():
    images = _rgb_fit_images()
    rotating = SyntheticAnomalies(images, ("draem",), seed=5, length=400, ratio=0.0, source_augment="rotate")
    turned = 0
    for index in range(120):
        draw = rotating.draw_source(np.random.default_rng([5, index]))
        sample = (rotating[index][0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        original = images[draw[0]]
        if draw[3] is None:
            assert np.array_equal(sample, original)  # no flips with DRAEM's augmentation
        else:
            turned += 1
            assert -90.0 <= draw[3] <= 90.0 and np.array_equal(sample, rotated(original, draw[3]))
            if 10.0 < abs(draw[3]) < 80.0:  # black corners, as DRAEM's imgaug rotation
                assert not sample[0, 0].any() and not sample[-1, -1].any()
    # probability 0.3 over 120 samples: mean 36, sd 5.0; these seeds give a fixed count well inside 4 sd
    assert 16 <= turned <= 56
    flipping = SyntheticAnomalies(images, ("draem",), seed=5, length=400, ratio=0.0)
    for index in range(40):
        sample = (flipping[index][0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        assert any(np.array_equal(sample, v) for img in images for v in (img, img[:, ::-1], img[::-1], img[::-1, ::-1]))


def test_device_batches_use_the_same_textures_and_rotations(texture_folder):
    images = _rgb_fit_images()
    data = SyntheticAnomalies(images, ("draem", "cutpaste"), seed=4, length=100, ratio=0.75, label="mask",
                              with_source=True, textures=texture_files(texture_folder),
                              source_augment="rotate")
    indices = list(range(10, 22))
    batched = DeviceSyntheticBatches(data, "cpu").batch(indices)
    loader = tuple(torch.stack(parts) for parts in zip(*(data[i] for i in indices)))
    for a, b in zip(batched, loader):
        assert torch.equal(a, b)


def test_draem_options_are_checked_and_recorded(texture_folder):
    with pytest.raises(DetectError, match="source_augment must be one of flips, rotate"):
        DRAEMDetector(source_augment="rotations")
    detector = DRAEMDetector(textures=str(texture_folder), source_augment="rotate", steps=1, train_batch_size=2)
    assert detector.config()["textures"] == str(texture_folder) and detector.config()["source_augment"] == "rotate"
    with pytest.raises(DetectError, match="is not a folder"):
        DRAEMDetector(textures=str(texture_folder / "missing"), steps=1).fit(_crops(2, 3))
    detector.fit(_crops(2, 3))  # trains on texture-filled anomalies in rotated images
    assert detector.trained_steps == 1
    assert DRAEMDetector().config()["textures"] is None and DRAEMDetector().config()["source_augment"] == "flips"


def _raw(dataset, **changes) -> dict:
    return {"datasets": {"d": str(dataset)}, "methods": ["draem"], "ratios": [1.0], "seeds": [0], "quality": {"images": 4},
            "pipelines": {"draem": {"steps": 2}, "segmenter": {"steps": 2}}, **changes}


def test_bench_config_texture_folder_reaches_every_pipeline_and_each_cell_identity(tmp_path, texture_folder):
    dataset = tmp_path / "data"
    dataset.mkdir()
    plain = config_from_dict(_raw(dataset), base=tmp_path, default_output=tmp_path / "out")
    dtd = config_from_dict(_raw(dataset, textures="textures"), base=tmp_path, default_output=tmp_path / "out")
    assert plain.textures is None and dtd.textures == texture_folder.resolve()
    assert all(options["textures"] == str(texture_folder.resolve()) for options in dtd.pipelines.values())
    assert all("textures" not in options for options in plain.pipelines.values())
    # a cell or quality job with textures is another cell than one without
    assert not {c.id for c in cells(plain)} & {c.id for c in cells(dtd)}
    assert json.loads(quality_jobs(dtd)[0].settings)["textures"] == str(texture_folder.resolve())
    assert quality_jobs(plain)[0].settings != quality_jobs(dtd)[0].settings
    with pytest.raises(BenchConfigError, match="is not a folder"):
        config_from_dict(_raw(dataset, textures="no_such_folder"), base=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchConfigError, match="no images .* found in"):
        config_from_dict(_raw(dataset, textures="empty"), base=tmp_path)


def test_bench_trains_draem_the_papers_way_and_the_report_header_says_so(tmp_path, texture_folder):
    from anomalyforge import main
    from synth import synthesize as make

    root = tmp_path / "gravel"
    crops = _crops(8, 7)
    for split, images in (("train/good", crops[:4]), ("test/good", crops[4:6])):
        (root / split).mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray(image).save(root / split / f"{i:03d}.png")
    (root / "test" / "cutout").mkdir(parents=True)
    (root / "ground_truth" / "cutout").mkdir(parents=True)
    for i, source in enumerate(crops[6:]):
        a = make(source, "cutout", seed=10 + i, size_bin="2.5-15%")
        Image.fromarray(a.image).save(root / "test" / "cutout" / f"{i:03d}.png")
        Image.fromarray(a.mask_u8).save(root / "ground_truth" / "cutout" / f"{i:03d}_mask.png")
    import yaml

    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "output": "out", "image_size": SIZE, "datasets": {"gravel": str(root)}, "methods": ["draem"],
        "textures": "textures", "ratios": [1.0], "seeds": [0], "quality": False,
        "pipelines": {"draem": {"steps": 2, "train_batch_size": 2, "source_augment": "rotate"}},
    }))
    assert main(["bench", str(config), "--no-progress"]) == 0
    result = json.loads(next((tmp_path / "out" / "cells").glob("*/result.json")).read_text())
    assert result["settings"]["options"] == {"textures": str(texture_folder.resolve()), "steps": 2,
                                             "train_batch_size": 2, "source_augment": "rotate"}
    header = (tmp_path / "out" / "report.md").read_text().split("### Every cell")[0]
    assert f"textures {texture_folder.resolve()}" in header and "source_augment rotate" in header
    assert "Images resized to 64 × 64 px" in header and "steps 2" in header and "rec_width 16" in header


def test_bench_quality_anomalies_fill_from_the_textures_on_the_same_draws(texture_folder):
    from detect.evaluation.bench import Synthesis, quality_anomalies

    images = _crops(3, 9)
    draem = Synthesis("draem", {"draem": 1.0})
    plain, plain_sources = quality_anomalies(images, draem, 4, SIZE)
    dtd, dtd_sources = quality_anomalies(images, draem, 4, SIZE, textures=texture_files(texture_folder))
    assert all(np.array_equal(a, b) for a, b in zip(plain_sources, dtd_sources))  # the same images and seeds
    assert not any(np.array_equal(a, b) for a, b in zip(plain, dtd))  # other fills
