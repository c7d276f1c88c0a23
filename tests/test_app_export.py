"""What the Space hands out: in-memory anomalies exported as imagefolder zips / parquet, and previews."""

from __future__ import annotations

import json
import zipfile

import cv2
import numpy as np
import pytest
import skimage.data

from synth import InvalidParameterError, decode_image, synthesize
from synth.export import export_parquet, export_rows, export_zip
from synth.preview import contour_overlay, display_rgb, heatmap_overlay, mask_preview, region_from_layers


@pytest.fixture(scope="module")
def anomalies(textures):
    grass = textures["grass"][:128, :128]
    return [synthesize(grass, "synagen", seed=s, size_bin="0.5-1.5%") for s in range(3)]


def test_zip_unpacks_to_an_imagefolder_that_datasets_loads(anomalies, tmp_path):
    import datasets

    path = export_zip(anomalies, tmp_path / "out.zip", "grass.png", config={"seed": 0})
    with zipfile.ZipFile(path) as zf:
        zf.extractall(tmp_path / "folder")
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "folder"), split="train")
    assert len(ds) == 3
    assert sorted(ds["seed"]) == [0, 1, 2]
    assert set(ds["source_id"]) == {"grass.png"}
    for row in ds:
        anomaly = anomalies[row["seed"]]
        np.testing.assert_array_equal(np.asarray(row["image"]), anomaly.image)
    rows = [json.loads(line) for line in (tmp_path / "folder" / "metadata.jsonl").read_text().splitlines()]
    for row, anomaly in zip(rows, anomalies):
        mask = decode_image((tmp_path / "folder" / row["mask_file_name"]).read_bytes())
        np.testing.assert_array_equal(mask > 0, anomaly.mask)
        assert row["area_fraction"] == anomaly.record["area_fraction"]


def test_same_anomalies_give_the_same_zip_bytes(anomalies, tmp_path):
    a = export_zip(anomalies, tmp_path / "a.zip", "grass.png").read_bytes()
    b = export_zip(anomalies, tmp_path / "b.zip", "grass.png").read_bytes()
    assert a == b


def test_names_are_unique_even_for_repeated_shapes(anomalies):
    rows = export_rows(anomalies * 2, "dir/grass.png")
    names = [r["file_name"] for r in rows]
    assert len(set(names)) == 6
    assert all(n.startswith("images/dir__grass_") for n in names)


def test_parquet_loads_with_image_features_and_schema_columns(anomalies, tmp_path):
    import datasets

    path = export_parquet(anomalies, tmp_path / "out.parquet", ["a.png", "b.png", "c.png"])
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds.features["mask"].mode == "L"
    assert ds["source_id"] == ["a.png", "b.png", "c.png"]
    # each row names its image in the zip of the same anomalies
    assert ds["file_name"] == [r["file_name"] for r in export_rows(anomalies, ["a.png", "b.png", "c.png"])]
    for row, anomaly in zip(ds, anomalies):
        np.testing.assert_array_equal(np.asarray(row["image"]), anomaly.image)
        np.testing.assert_array_equal(np.asarray(row["mask"]) > 0, anomaly.mask)
        assert row["bbox"] == anomaly.record["bbox"]
        assert row["size_bin"] == "0.5-1.5%"


def test_export_refuses_nothing_and_mismatched_ids(anomalies, tmp_path):
    with pytest.raises(InvalidParameterError, match="empty"):
        export_zip([], tmp_path / "x.zip", "a.png")
    with pytest.raises(InvalidParameterError, match="2 source ids for 3 anomalies"):
        export_zip(anomalies, tmp_path / "x.zip", ["a.png", "b.png"])


def test_sixteen_bit_and_alpha_survive_the_zip(tmp_path):
    rgba = np.dstack([skimage.data.astronaut()[:96, :96].astype(np.uint16) * 257,
                      np.full((96, 96), 40000, np.uint16)])
    anomaly = synthesize(rgba, "synagen", seed=0, size_bin="1.5-2.5%")
    with zipfile.ZipFile(export_zip([anomaly], tmp_path / "x.zip", "rgba.png")) as zf:
        name = json.loads(zf.read("metadata.jsonl").decode().splitlines()[0])["file_name"]
        out = decode_image(zf.read(name))
    assert out.dtype == np.uint16 and out.shape == (96, 96, 4)
    np.testing.assert_array_equal(out, anomaly.image)


# ------------------------------------------------------------------------------------ previews
def test_contour_is_red_on_the_mask_border_only():
    image = np.full((64, 64), 100, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 10:30] = True
    out = contour_overlay(image, mask)
    red = (out[:, :, 0] == 255) & (out[:, :, 1] == 0)
    border = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert red[border].all()
    assert not red[~mask].any() and not red[20 + 2:40 - 2, 10 + 2:30 - 2].any()


def test_tiny_anomaly_stays_visible_in_a_shrunk_preview():
    mask = np.zeros((2000, 2000), bool)
    mask[1000:1002, 1000:1002] = True  # 4 pixels of 4 million
    assert contour_overlay(np.zeros((2000, 2000), np.uint8), mask, max_side=500)[:, :, 0].max() == 255
    assert mask_preview(mask, max_side=500).max() == 255


def test_display_of_16_bit_gray_and_rgba():
    gray16 = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    out = display_rgb(gray16)
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    assert out[-1, -1, 0] == round(gray16[-1, -1] / 65535 * 255)
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:8, :, 3] = 255
    out = display_rgb(rgba)
    assert (out[:8] == [255, 0, 0]).all()  # opaque: the colour itself
    assert (out[8:, :, 1] > 100).all()  # transparent: the grey checkerboard


def test_heatmap_leaves_low_scores_untouched_and_colours_high_ones():
    image = np.full((32, 32, 3), 90, np.uint8)
    amap = np.zeros((32, 32), np.float32)
    amap[8:16, 8:16] = 10.0
    out = heatmap_overlay(image, amap, low=1.0, high=10.0)
    np.testing.assert_array_equal(out[20:, 20:], image[20:, 20:])
    assert np.abs(out[8:16, 8:16].astype(int) - 90).max() > 40


def test_region_from_painted_layers_scales_to_the_image():
    layer = np.zeros((50, 50, 4), np.uint8)
    layer[:, :25, 3] = 255  # left half painted on a half-size canvas
    region = region_from_layers([layer], 100, 100)
    assert region[:, :50].all() and not region[:, 50:].any()
    assert region_from_layers([np.zeros((100, 100, 4), np.uint8)], 100, 100) is None
