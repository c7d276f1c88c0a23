"""SYNAGEN behaviour users rely on: sizes in bin, region respected, exact ground truth, replay."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from synth import (
    DEFAULT_BINS,
    InvalidImageError,
    InvalidParameterError,
    RegionError,
    SizeBin,
    SizeBinError,
    replay,
    synthesize,
)
from synth.methods.synagen import MODES, SHAPES

DEFAULT_MODES = MODES[:5]


def changed_outside(source: np.ndarray, output: np.ndarray, mask: np.ndarray, scale: float) -> int:
    diff = np.abs(output.astype(np.float64) - source.astype(np.float64)) / scale
    if diff.ndim == 3:
        diff = diff.max(axis=2)
    return int(((diff > 1 / 255 + 1e-9) & ~mask).sum())


@pytest.mark.parametrize("shape", SHAPES)
def test_changed_area_lies_in_requested_bin_at_256(textures, shape):
    image = np.stack([textures["grass"]] * 3, axis=2)
    misses = []
    for seed in range(6):
        for mode in DEFAULT_MODES:
            for b, size_bin in enumerate(DEFAULT_BINS):
                a = synthesize(image, seed=seed, shape=shape, mode=mode, size_bin=b)
                measured = a.mask.sum() / a.mask.size
                assert a.record["area_fraction"] == pytest.approx(measured)
                if not size_bin.contains(measured):
                    misses.append((seed, mode, size_bin.name, measured))
                assert a.record["size_bin"] == size_bin.name or not size_bin.contains(measured)
    assert misses == []


@pytest.mark.parametrize("size", [(1024, 1024), (180, 420), (600, 250)])
def test_changed_area_in_bin_at_large_and_non_square_sizes(astronaut_256, size):
    height, width = size
    image = cv2.resize(astronaut_256, (width, height), interpolation=cv2.INTER_LINEAR)
    for shape in SHAPES:
        for b, size_bin in enumerate(DEFAULT_BINS):
            a = synthesize(image, seed=b + 10, shape=shape, mode="mean_noise", size_bin=b)
            assert a.image.shape == image.shape
            assert size_bin.contains(a.mask.mean()), (shape, size_bin.name, a.mask.mean())


def test_user_defined_bins_are_met_and_named(brick_rgb):
    custom = SizeBin.parse("3-4%")
    assert custom.name == "3-4%"
    for shape in SHAPES:
        a = synthesize(brick_rgb, seed=1, shape=shape, mode="gray_noise", size_bin="3-4%")
        assert 0.03 <= a.record["area_fraction"] < 0.04
        assert a.record["size_bin"] == "3-4%"


def test_mask_covers_every_changed_pixel_and_diff_matches(brick_rgb):
    for seed in range(10):
        a = synthesize(brick_rgb, seed=seed, size_bin=seed % 5)
        assert changed_outside(brick_rgb, a.image, a.mask, 255) == 0
        expected = np.abs(a.image.astype(np.float32) - brick_rgb).max(axis=2) / 255
        np.testing.assert_allclose(a.diff, expected, atol=1e-6)
        assert a.diff[a.mask].min() > 1 / 255


def test_no_changed_pixel_outside_the_region(brick_rgb):
    h, w = brick_rgb.shape[:2]
    region = np.zeros((h, w), np.uint8)
    cv2.circle(region, (w // 3, h // 2), 90, 255, -1)
    region3 = np.repeat(region[:, :, None], 3, axis=2)  # 3-channel masks are accepted too
    for seed in range(8):
        for shape in SHAPES:
            for reg in (region, region3, region > 0):
                a = synthesize(brick_rgb, seed=seed, shape=shape, size_bin=seed % 4, region=reg)
                outside = region == 0
                assert not a.mask[outside].any()
                assert np.array_equal(a.image[outside], brick_rgb[outside])
                assert DEFAULT_BINS[seed % 4].contains(a.mask.mean())


def test_region_too_small_for_bin_is_a_clear_error(brick_rgb):
    region = np.zeros(brick_rgb.shape[:2], bool)
    region[:20, :20] = True  # 400 px = 0.15 % of the image
    with pytest.raises(RegionError, match="allowed pixels"):
        synthesize(brick_rgb, seed=0, size_bin="2.5-15%", region=region)
    with pytest.raises(RegionError, match="0 allowed pixels"):
        synthesize(brick_rgb, seed=0, region=np.zeros(brick_rgb.shape[:2], bool))
    with pytest.raises(RegionError, match="same size"):
        synthesize(brick_rgb, seed=0, region=np.ones((10, 10), bool))


def test_a_bin_out_of_reach_says_why():
    """A shape grown over the whole image that still changes too few pixels is named as such."""
    black = np.zeros((64, 64, 3), np.uint8)  # darkening black changes nothing
    with pytest.raises(SizeBinError, match="already spans the whole image.*black pixels cannot be darkened"):
        synthesize(black, seed=0, shape="spattered", mode="transparent", size_bin="2.5-15%")


def test_same_seed_same_bytes_and_replay_from_record(brick_rgb):
    a = synthesize(brick_rgb, seed=1234, shape="rough", mode="transparent_color_noise", size_bin=2)
    b = synthesize(brick_rgb, seed=1234, shape="rough", mode="transparent_color_noise", size_bin=2)
    c = synthesize(brick_rgb, seed=1235, shape="rough", mode="transparent_color_noise", size_bin=2)
    assert a.image.tobytes() == b.image.tobytes() and a.record == b.record
    assert a.image.tobytes() != c.image.tobytes()
    spec = json.loads(json.dumps(a.spec.to_dict()))  # through JSON, as stored
    again = replay(brick_rgb, spec)
    assert again.image.tobytes() == a.image.tobytes()


def test_one_seed_in_several_bins_is_the_same_anomaly_resized(brick_rgb):
    results = [synthesize(brick_rgb, seed=5, shape="spattered", mode="transparent", size_bin=b) for b in range(5)]
    params = [json.loads(r.record["params"]) for r in results]
    assert len({p["angle"] for p in params}) == 1
    assert len({json.dumps(p["shape_params"]) for p in params}) == 1
    areas = [r.record["area_fraction"] for r in results]
    assert areas == sorted(areas)


def _inside_correlation(source: np.ndarray, output: np.ndarray, mask: np.ndarray) -> float:
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    s = source[inner].astype(np.float64).ravel()
    o = output[inner].astype(np.float64).ravel()
    return float(np.corrcoef(s, o)[0, 1])


def test_transparent_keeps_texture_and_gray_noise_removes_it(textures):
    image = textures["brick"]
    for seed in range(4):
        kept = synthesize(image, seed=seed, shape="spattered", mode="transparent", size_bin=4)
        gone = synthesize(image, seed=seed, shape="spattered", mode="gray_noise", size_bin=4)
        assert _inside_correlation(image, kept.image, kept.mask) > 0.9
        assert abs(_inside_correlation(image, gone.image, gone.mask)) < 0.3


def test_mean_noise_flattens_and_transparent_noise_changes_brightness(textures):
    image = textures["gravel"]
    a = synthesize(image, seed=3, shape="complex", mode="mean_noise", size_bin=4)
    inner = cv2.erode(a.mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert a.image[inner].std() < image[inner].std()
    b = synthesize(image, seed=3, shape="complex", mode="transparent_noise", size_bin=4)
    assert abs(b.record["brightness_delta"]) > 0.05


def test_texture_mode_uses_the_given_texture(brick_rgb, textures):
    flat = np.full_like(brick_rgb, 128)
    a = synthesize(flat, seed=2, mode="texture", size_bin=4, textures=[textures["gravel"]])
    assert a.record["mode"] == "texture"
    assert a.image[a.mask].std() > 10  # the texture's structure now lives inside the mask
    with pytest.raises(InvalidParameterError, match="texture"):
        synthesize(flat, seed=2, mode="texture", size_bin=4)


def test_edges_are_smoothed_only_on_a_thin_band(textures):
    image = np.full((256, 256), 100, np.uint8)
    a = synthesize(image, seed=9, shape="spattered", mode="transparent", size_bin=4)
    values = np.unique(a.image[a.mask])
    # interior takes exactly one value (100 x factor), the band takes intermediate ones
    interior = cv2.erode(a.mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert len(np.unique(a.image[interior])) == 1
    assert len(values) > 2


@pytest.mark.parametrize(
    "make",
    [
        lambda img: img[:, :, 0],  # gray 2-D
        lambda img: img[:, :, :1],  # gray (H, W, 1)
        lambda img: (img.astype(np.uint16) * 257),  # 16-bit RGB
        lambda img: img.astype(np.float32) / 255,  # float RGB
        lambda img: np.concatenate([img, np.linspace(0, 255, img.shape[1], dtype=np.uint8)[None, :, None].repeat(img.shape[0], 0)], axis=2),  # RGBA
        lambda img: np.dstack([img[:, :, 0], np.full(img.shape[:2], 200, np.uint8)]),  # gray + alpha
    ],
    ids=["gray2d", "gray3d", "uint16", "float32", "rgba", "gray_alpha"],
)
def test_any_layout_keeps_dtype_channels_size_and_alpha(astronaut_256, make):
    image = make(astronaut_256[:200])  # non-square too
    scale = 65535 if image.dtype == np.uint16 else (1 if image.dtype.kind == "f" else 255)
    for seed in range(3):
        a = synthesize(image, seed=seed, size_bin=seed + 1)
        assert a.image.dtype == image.dtype and a.image.shape == image.shape
        colour = 1 if (image.ndim == 2 or image.shape[2] in (1, 2)) else 3
        if image.ndim == 3 and image.shape[2] in (2, 4):
            assert np.array_equal(a.image[:, :, colour:], image[:, :, colour:])  # alpha untouched
        col_in = image if image.ndim == 2 else image[:, :, :colour]
        col_out = a.image if image.ndim == 2 else a.image[:, :, :colour]
        assert changed_outside(col_in, col_out, a.mask, scale) == 0
        assert DEFAULT_BINS[seed + 1].contains(a.mask.mean())


def test_bad_inputs_get_specific_errors(brick_rgb):
    with pytest.raises(InvalidImageError, match="empty"):
        synthesize(np.zeros((0, 10, 3), np.uint8), seed=0)
    with pytest.raises(InvalidImageError, match=r"\[0, 1\]"):
        synthesize(np.full((32, 32), 3.0, np.float32), seed=0)
    with pytest.raises(InvalidImageError, match="dtype"):
        synthesize(np.zeros((32, 32), np.int64), seed=0)
    with pytest.raises(InvalidParameterError, match="unknown shape 'blob'"):
        synthesize(brick_rgb, seed=0, shape="blob")
    with pytest.raises(InvalidParameterError, match="unknown mode"):
        synthesize(brick_rgb, seed=0, mode="sepia")
    with pytest.raises(InvalidParameterError, match="size bin"):
        synthesize(brick_rgb, seed=0, size_bin="5-2%")
    with pytest.raises(InvalidParameterError, match="seed"):
        synthesize(brick_rgb, seed=-1)
    with pytest.raises(InvalidParameterError, match="unknown method"):
        synthesize(brick_rgb, "nonexistent", seed=0)
    # 0.02 % of an 8x8 image is less than one pixel
    from synth import SizeBinError

    with pytest.raises(SizeBinError, match="no whole pixel count"):
        synthesize(np.full((8, 8), 90, np.uint8), seed=0, size_bin=0)


def test_scaled_shapes_match_opencvs_area_resize_bit_for_bit():
    """The size search reads shrunken shapes from a summed-area table instead of calling
    cv2.resize; the thresholded masks must be OpenCV's exactly, or seeds would change bytes."""
    from synth.method import Scene
    from synth.registry import get_method
    from synth.methods.synagen.scaling import ScaledShape
    from synth.methods.synagen.shapes import rotated_shape

    method = get_method("synagen")
    scene = Scene(image=np.zeros((256, 256, 3), np.float32), region=None, partners=(), textures=(), quantum=1 / 255)
    rng = np.random.default_rng(7)
    checked = 0
    for seed in range(24):
        spec = method.sample(np.random.default_rng(seed), scene, shape=SHAPES[seed % 4], mode=None, size_bin=None, seed=seed)
        crop = rotated_shape(spec.shape, spec.params["shape_params"], spec.params["angle"])
        scaled = ScaledShape(crop)
        h, w = crop.shape
        for k in range(25):
            scale = float(np.exp(rng.uniform(np.log(0.004), np.log(0.3))))
            threshold = (0.5, 0.4, 0.6)[k % 3]
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            reference = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            assert np.array_equal(scaled.mask(scale, threshold), reference > threshold), (seed, scale)
            # the table's averages themselves are OpenCV's within float32 rounding
            np.testing.assert_allclose(scaled.values(*size), reference, atol=2e-5)
            checked += 1
    assert checked == 600
    # cells that do not tile the source (OpenCV drops slivers under 1e-3 of a pixel, which only
    # happens above 1000 output pixels a side) are read right too
    big = cv2.resize(crop, (1500, 1100), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(
        ScaledShape(big).values(1499, 1099), cv2.resize(big, (1499, 1099), interpolation=cv2.INTER_AREA), atol=2e-5
    )
    # a value exactly on the threshold is answered by cv2.resize itself
    half = np.zeros((40, 40), np.float32)
    half[:, :21] = 1.0  # output column 10 averages one 1 and one 0
    scaled = ScaledShape(half)
    assert np.array_equal(scaled.mask(0.5, 0.5), cv2.resize(half, (20, 20), interpolation=cv2.INTER_AREA) > 0.5)
    assert scaled.fallbacks == 1


def test_synthesize_names_its_bins_label_bins_and_the_old_name_warns():
    """``synthesize(bins=...)`` only named the measured bin, unlike ``Synagen(bins=...)``: the
    keyword is ``label_bins`` now; the old one still works, with a warning that says the difference."""
    from skimage.data import brick

    image, wide = brick(), (SizeBin.parse("0.5-15%"),)
    named = synthesize(image, seed=3, shape="rough", mode="gray_noise", size_bin=0, label_bins=wide)
    assert named.record["size_bin"] == "0.5-15%"
    with pytest.warns(DeprecationWarning, match="label_bins"):
        old = synthesize(image, seed=3, shape="rough", mode="gray_noise", size_bin=0, bins=wide)
    assert old.record == named.record and np.array_equal(old.image, named.image)
    with pytest.raises(InvalidParameterError, match="label_bins= only"):
        synthesize(image, seed=3, bins=wide, label_bins=wide)


def test_every_way_to_ask_for_no_size_bin_gets_the_same_error():
    from hub_tools.schema import size_bin_names
    from synth.config import ProtocolConfig, parse_generation
    from synth.methods.synagen import Synagen

    for ask in (lambda: ProtocolConfig(bins=()), lambda: parse_generation({"bins": []}), lambda: Synagen(bins=()),
                lambda: size_bin_names(())):
        with pytest.raises(InvalidParameterError, match="^at least one size bin is needed$"):
            ask()
