"""LPIPS diversity scores (SYNAGEN table 1) on real textures with drawn anomalies.

The AlexNet trunk cannot be downloaded here, so a TORCH_HOME is prepared with a seeded, randomly
initialised torchvision AlexNet state dict under the standard file name: the whole loading path
(file lookup, key mapping, lpips linear layers) runs as with the real weights.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import torch_home_with_alexnet
import torch
import torchvision
from PIL import Image

from detect.quality.diversity import (
    SCORE_NAMES,
    DiversityInputError,
    LpipsScorer,
    absolute_difference,
    as_float_rgb,
    diversity,
    diversity_by_group,
    enclosing_square,
    main,
    random_pairs,
    square_crop,
)
from detect.quality.anomaly_rows import load_anomaly_rows
from detect.quality.lpips_backbones import MissingWeightsError, WeightsFileError, load_lpips

SIZE = 128


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    """TORCH_HOME whose hub cache holds a seeded AlexNet checkpoint named as torchvision names it."""
    home = tmp_path_factory.mktemp("torch_home")
    torch_home_with_alexnet(home, seed=1234)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def scorer(torch_home) -> LpipsScorer:
    return LpipsScorer("alex", device="cpu", batch_size=8)


def draw_anomaly(source: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An elliptical blob of gray noise at a seeded place: (image uint8, mask bool)."""
    rng = np.random.default_rng(seed)
    h, w = source.shape[:2]
    cy, cx = rng.integers(20, h - 20), rng.integers(20, w - 20)
    ay, ax = rng.integers(4, 16, size=2)
    yy, xx = np.mgrid[:h, :w]
    mask = ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1.0
    image = source.copy()
    image[mask] = rng.integers(0, 256, size=int(mask.sum())).astype(np.uint8)
    return image, mask


@pytest.fixture(scope="module")
def anomaly_set(textures):
    """Six anomalies, two on each of brick, grass and gravel (128x128 gray uint8)."""
    images, masks, originals, methods = [], [], [], []
    for k, name in enumerate(("brick", "grass", "gravel")):
        source = textures[name][:SIZE, :SIZE]
        for j in range(2):
            image, mask = draw_anomaly(source, seed=10 * k + j)
            images.append(image)
            masks.append(mask)
            originals.append(source)
            methods.append("noise_a" if j == 0 else "noise_b")
    return images, masks, originals, methods


# --------------------------------------------------------------------------- LPIPS itself
def test_identical_images_score_zero(scorer, textures):
    image = as_float_rgb(textures["brick"][:SIZE, :SIZE])
    assert scorer.distances([image], [image])[0] == pytest.approx(0.0, abs=1e-7)


def test_different_images_score_above_zero(scorer, textures):
    brick = as_float_rgb(textures["brick"][:SIZE, :SIZE])
    grass = as_float_rgb(textures["grass"][:SIZE, :SIZE])
    assert scorer.distances([brick], [grass])[0] > 0.01


def test_dataset_of_copies_has_zero_diversity(scorer, anomaly_set):
    images, masks, originals, _ = anomaly_set
    copies = [images[0]] * 4
    scores = diversity(copies, [masks[0]] * 4, originals=[originals[0]] * 4, scorer=scorer, seed=3)
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in scores.scores().values())


def test_varied_anomalies_have_positive_diversity_on_every_score(scorer, anomaly_set):
    images, masks, originals, _ = anomaly_set
    scores = diversity(images, masks, originals=originals, scorer=scorer, seed=0)
    assert set(scores.scores()) == set(SCORE_NAMES)
    assert all(v > 0.0 for v in scores.scores().values())
    assert scores.n_pairs == len(images)  # one random partner per image, as in SYNAGEN


def test_same_seed_gives_identical_scores_and_other_seed_other_pairs(scorer, anomaly_set):
    images, masks, originals, _ = anomaly_set
    a = diversity(images, masks, originals=originals, scorer=scorer, seed=5, n_pairs=4)
    b = diversity(images, masks, originals=originals, scorer=scorer, seed=5, n_pairs=4)
    assert a == b
    assert not np.array_equal(random_pairs(6, 4, seed=5), random_pairs(6, 4, seed=6))


def test_pairs_are_reproducible_and_never_pair_an_image_with_itself():
    first = random_pairs(50, 200, seed=42)
    assert np.array_equal(first, random_pairs(50, 200, seed=42))
    assert first.shape == (200, 2)
    assert (first[:, 0] != first[:, 1]).all()
    assert first.min() >= 0 and first.max() < 50
    one_each = random_pairs(7, seed=0)
    assert np.array_equal(one_each[:, 0], np.arange(7))


def test_diff_column_and_recomputed_differences_agree(scorer, anomaly_set):
    images, masks, originals, _ = anomaly_set
    diffs = [np.round(absolute_difference(i, o) * 255).astype(np.uint8) for i, o in zip(images, originals)]
    absdiff_only = ("LPIPS_AbsDiff", "LPIPS□_AbsDiff")
    from_column = diversity(images, masks, diffs=diffs, scorer=scorer, seed=1, n_pairs=3, scores=absdiff_only)
    recomputed = diversity(images, masks, originals=originals, scorer=scorer, seed=1, n_pairs=3, scores=absdiff_only)
    assert from_column.lpips is None and from_column.lpips_absdiff > 0
    assert from_column.lpips_absdiff == pytest.approx(recomputed.lpips_absdiff, abs=1e-4)
    assert from_column.lpips_square_absdiff == pytest.approx(recomputed.lpips_square_absdiff, abs=1e-4)


def test_without_differences_absdiff_scores_are_not_available(scorer, anomaly_set):
    images, masks, _, _ = anomaly_set
    scores = diversity(images, masks, scorer=scorer, seed=0)
    assert scores.lpips_absdiff is None and scores.lpips_square_absdiff is None
    assert scores.lpips > 0 and scores.lpips_square > 0


def test_groups_are_scored_separately(scorer, anomaly_set):
    images, masks, originals, _ = anomaly_set
    # group "same" holds copies of one anomaly: zero; group "mixed" holds different ones
    group_images = [images[0], images[0], images[0], images[2], images[4], images[5]]
    group_masks = [masks[0], masks[0], masks[0], masks[2], masks[4], masks[5]]
    groups = ["same", "same", "same", "mixed", "mixed", "mixed"]
    result = diversity_by_group(group_images, group_masks, groups, scorer=scorer, seed=0)
    assert sorted(result) == ["mixed", "same"]
    assert result["same"].lpips == pytest.approx(0.0, abs=1e-6)
    assert result["mixed"].lpips > 0.0
    assert result["mixed"].n_images == 3


# --------------------------------------------------------------------------- crops
def test_square_crop_encloses_the_anomaly(anomaly_set):
    _, masks, _, _ = anomaly_set
    for mask in masks:
        x0, y0, x1, y1 = enclosing_square(mask)
        assert x1 - x0 == y1 - y0  # a square
        inside = np.zeros_like(mask)
        inside[y0:y1, x0:x1] = True
        assert not (mask & ~inside).any()  # no anomalous pixel outside the crop
        ys, xs = np.nonzero(mask)
        assert x1 - x0 == max(ys.max() - ys.min(), xs.max() - xs.min()) + 1  # and no larger than needed


def test_square_at_the_border_is_shifted_inside_the_image():
    mask = np.zeros((40, 60), bool)
    mask[0:3, 50:60] = True  # wide anomaly in the top right corner
    x0, y0, x1, y1 = enclosing_square(mask)
    assert (x0, y0, x1, y1) == (50, 0, 60, 10)


def test_anomaly_longer_than_the_short_side_spans_it():
    mask = np.zeros((20, 80), bool)
    mask[5:8, 2:70] = True
    x0, y0, x1, y1 = enclosing_square(mask)
    assert (y0, y1) == (0, 20) and x0 <= 2 and x1 >= 70


def test_crop_is_resized_to_256(anomaly_set):
    images, masks, _, _ = anomaly_set
    crop = square_crop(as_float_rgb(images[0]), enclosing_square(masks[0]))
    assert crop.shape == (256, 256, 3) and crop.dtype == np.float32
    assert 0.0 <= crop.min() and crop.max() <= 1.0


def test_empty_mask_is_refused_with_the_image_index(scorer, anomaly_set):
    images, masks, _, _ = anomaly_set
    bad = list(masks)
    bad[3] = np.zeros_like(masks[3])
    with pytest.raises(DiversityInputError, match="image 3"):
        diversity(images, bad, scorer=scorer)


def test_mismatched_lengths_are_refused(scorer, anomaly_set):
    images, masks, _, _ = anomaly_set
    with pytest.raises(DiversityInputError, match="masks"):
        diversity(images, masks[:-1], scorer=scorer)


# --------------------------------------------------------------------------- weights files
def test_missing_backbone_names_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for net, name in (("alex", "alexnet-owt-7be5be79.pth"), ("vgg", "vgg16-397923af.pth"),
                      ("squeeze", "squeezenet1_1-b8a52dc0.pth")):
        with pytest.raises(MissingWeightsError) as info:
            load_lpips(net, device="cpu")
        message = str(info.value)
        assert name in message
        assert str(tmp_path / "hub" / "checkpoints") in message


def test_checkpoint_of_another_network_is_refused(tmp_path, monkeypatch):
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), checkpoints / "alexnet-owt-7be5be79.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsFileError, match="alexnet-owt-7be5be79.pth"):
        load_lpips("alex", device="cpu")


# --------------------------------------------------------------------------- command line
def write_synth_folder(root, anomaly_set):
    """A folder in the `anomalyforge synth` layout, plus the sources folder it was made from."""
    images, masks, originals, methods = anomaly_set
    out, sources = root / "out", root / "sources"
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    sources.mkdir()
    lines = []
    for i, (image, mask, original, method) in enumerate(zip(images, masks, originals, methods)):
        source_id = f"src{i // 2}.png"
        Image.fromarray(original).save(sources / source_id)
        Image.fromarray(image).save(out / "images" / f"{i:03d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / f"{i:03d}.png")
        lines.append(json.dumps({"file_name": f"images/{i:03d}.png", "mask_file_name": f"masks/{i:03d}.png",
                                 "source_id": source_id, "method": method, "bbox": [0, 0, 1, 1]}))
    (out / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return out, sources


def test_cli_on_a_synth_folder_writes_the_four_scores(torch_home, tmp_path, anomaly_set, capsys):
    out, sources = write_synth_folder(tmp_path, anomaly_set)
    result = tmp_path / "scores.json"
    assert main(["--dataset", str(out), "--sources", str(sources), "--device", "cpu", "--output", str(result)]) == 0
    scores = json.loads(result.read_text(encoding="utf-8"))
    assert set(scores) == set(SCORE_NAMES)
    assert all(v > 0 for v in scores.values())
    assert "LPIPS□_AbsDiff" in capsys.readouterr().out


def test_cli_by_method_scores_each_method(torch_home, tmp_path, anomaly_set):
    out, _ = write_synth_folder(tmp_path, anomaly_set)
    result = tmp_path / "by_method.json"
    assert main(["--dataset", str(out), "--by", "method", "--pairs", "4", "--output", str(result)]) == 0
    scores = json.loads(result.read_text(encoding="utf-8"))
    assert sorted(scores) == ["noise_a", "noise_b"]
    assert scores["noise_a"]["LPIPS_AbsDiff"] is None  # no diff images, no sources given
    assert scores["noise_a"]["LPIPS"] > 0


def test_cli_reads_a_datasets_folder_with_good_split(torch_home, tmp_path, anomaly_set, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    images, masks, originals, methods = anomaly_set
    features = datasets.Features({
        "image": datasets.Image(), "mask": datasets.Image(), "source_id": datasets.Value("string"),
        "method": datasets.ClassLabel(names=["noise_a", "noise_b"]),
    })
    test = datasets.Dataset.from_dict({
        "image": [Image.fromarray(i) for i in images],
        "mask": [Image.fromarray(m.astype(np.uint8) * 255) for m in masks],
        "source_id": [f"src{i // 2}" for i in range(len(images))], "method": methods,
    }, features=features)
    good = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(o) for o in originals[::2]], "source_id": [f"src{k}" for k in range(3)]},
        features=datasets.Features({"image": datasets.Image(), "source_id": datasets.Value("string")}),
    )
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    test.to_parquet(str(repo / "data" / "test-00000-of-00001.parquet"))
    good.to_parquet(str(repo / "data" / "good-00000-of-00001.parquet"))
    result = tmp_path / "scores.json"
    assert main(["--dataset", str(repo), "--by", "method", "--output", str(result)]) == 0
    scores = json.loads(result.read_text(encoding="utf-8"))
    assert sorted(scores) == ["noise_a", "noise_b"]
    assert all(v is not None and v > 0 for group in scores.values() for v in group.values())



def test_save_to_disk_folder_reads_the_same_rows(tmp_path, anomaly_set):
    datasets = pytest.importorskip("datasets")
    images, masks, originals, methods = anomaly_set
    test = datasets.Dataset.from_dict({
        "image": [Image.fromarray(i) for i in images], "mask": [Image.fromarray(m.astype(np.uint8) * 255) for m in masks],
        "source_id": [f"src{i // 2}" for i in range(len(images))], "method": methods,
    }, features=datasets.Features({"image": datasets.Image(), "mask": datasets.Image(),
                                   "source_id": datasets.Value("string"), "method": datasets.Value("string")}))
    good = datasets.Dataset.from_dict({"image": [Image.fromarray(o) for o in originals[::2]],
                                       "source_id": [f"src{k}" for k in range(3)]},
                                      features=datasets.Features({"image": datasets.Image(), "source_id": datasets.Value("string")}))
    datasets.DatasetDict({"test": test, "good": good}).save_to_disk(str(tmp_path / "saved"))
    rows = load_anomaly_rows(tmp_path / "saved")
    assert len(rows) == len(images) and rows.column("method") == methods
    assert all(np.array_equal(rows.images[i], images[i]) for i in range(len(images)))
    assert all(np.array_equal(rows.originals[i], originals[i]) for i in range(len(images)))
    assert rows.diffs is None


def test_cli_without_weights_stops_with_the_missing_file(tmp_path, anomaly_set, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    out, _ = write_synth_folder(tmp_path, anomaly_set)
    assert main(["--dataset", str(out)]) == 2
    error = capsys.readouterr().err
    assert "alexnet-owt-7be5be79.pth" in error and str(tmp_path / "empty" / "hub" / "checkpoints") in error
    assert not os.path.exists(tmp_path / "empty" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
