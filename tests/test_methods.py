"""The hand-crafted methods (NSA, CutPaste, CutPaste-Scar, CutOut, FPI, DRAEM, foreground Perlin,
fractal, hybrid) keep SYNAGEN's promises: exact ground truth, untouched pixels outside the mask and
region, every image layout, replayable specs, measured sizes in the requested bin."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import skimage.data

from synth import DEFAULT_BINS, METHODS, InvalidParameterError, SizeBinError, get_method, replay, save_png, synthesize
from synth.vocabulary import METHOD_NAMES, MODE_NAMES, SHAPE_NAMES

METHODS_UNDER_TEST = ("nsa", "cutpaste", "cutpaste_scar", "cutout", "fpi", "draem", "foreground_perlin", "fractal")
SCHEMA = (
    "method", "shape", "mode", "size_bin", "area_fraction", "brightness_delta",
    "background_brightness", "bbox", "angle", "seed", "params",
)


def _crop(name: str, size: int = 160) -> np.ndarray:
    return np.ascontiguousarray(getattr(skimage.data, name)()[:size, :size])


def _variants() -> dict[str, np.ndarray]:
    brick, grass, gravel = _crop("brick"), _crop("grass"), _crop("gravel")
    rgb = np.stack([brick, (grass * 0.8).astype(np.uint8), gravel], axis=2)
    astronaut = cv2.resize(skimage.data.astronaut(), (144, 144), interpolation=cv2.INTER_AREA)
    alpha = np.linspace(0, 255, 144 * 144).reshape(144, 144).astype(np.uint8)
    return {
        "brick_rgb": rgb,
        "grass_gray": grass,
        "gravel_uint16": (np.stack([gravel] * 3, axis=2).astype(np.uint16) * 257 + 31),
        "astronaut_rgba": np.dstack([astronaut, alpha]),
        "gravel_float_nonsquare": np.ascontiguousarray(skimage.data.gravel()[:112, :208]).astype(np.float32) / 255.0,
    }


VARIANTS = _variants()
PARTNER = np.ascontiguousarray(skimage.data.astronaut()[100:400, 50:250])  # 300x200: resized to each image


def _object_scene(size: int = 160, texture: str = "gravel", centre=(0.5, 0.5), radius=0.32):
    """A disk of real texture on a flat dark background, and its foreground mask."""
    yy, xx = np.mgrid[:size, :size]
    disk = (yy - centre[0] * size) ** 2 + (xx - centre[1] * size) ** 2 < (radius * size) ** 2
    tex = _crop(texture, size)
    image = np.full((size, size, 3), 25, np.uint8)
    image[disk] = np.stack([tex, tex, (tex * 0.7).astype(np.uint8)], axis=2)[disk]
    return image, disk


def _scale(image: np.ndarray) -> float:
    return 65535.0 if image.dtype == np.uint16 else (1.0 if image.dtype.kind == "f" else 255.0)


def _colour(image: np.ndarray) -> np.ndarray:
    """Colour channels as float in [0, 1] units, (H, W, C)."""
    arr = image if image.ndim == 3 else image[:, :, None]
    if arr.shape[2] in (2, 4):
        arr = arr[:, :, :-1]
    return arr.astype(np.float64) / _scale(image)


def _synth(image, method, seed, **kwargs):
    partners = kwargs.pop("partners", [PARTNER])
    return synthesize(image, method, seed=seed, partners=partners, **kwargs)


# --------------------------------------------------------------------------- registry, names
def test_every_method_is_registered_with_vocabulary_names():
    for name in METHODS_UNDER_TEST:
        assert name in METHODS and name in METHOD_NAMES
        method = get_method(name)
        assert method.name == name
        assert set(method.shapes) <= set(SHAPE_NAMES)
        assert set(method.modes) <= set(MODE_NAMES)
    expected = {
        "nsa": (("patch",), ("normal_clone", "mixed_clone")),
        "cutpaste": (("rectangle",), ("paste",)),
        "cutpaste_scar": (("scar",), ("paste",)),
        "cutout": (("square",), ("constant",)),
        "fpi": (("patch",), ("interpolation",)),
        "draem": (("perlin",), ("texture_blend",)),
        "foreground_perlin": (("perlin",), ("cut_blend",)),
        "fractal": (("fractal",), ("texture_blend",)),
    }
    for name, (shapes, modes) in expected.items():
        method = get_method(name)
        assert (method.shapes, method.modes) == (shapes, modes)


def test_partner_blending_methods_ask_for_a_partner():
    for name in METHODS_UNDER_TEST:
        wants = name in ("nsa", "fpi", "foreground_perlin")
        assert getattr(get_method(name), "needs_partner", False) is wants


# --------------------------------------------------------------------------- ground truth
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("name", METHODS_UNDER_TEST)
def test_ground_truth_is_exact_in_every_layout(name, variant):
    image = VARIANTS[variant]
    for seed in (3, 11):
        a = _synth(image, name, seed)
        assert a.image.shape == image.shape and a.image.dtype == image.dtype
        if image.ndim == 3 and image.shape[2] == 4:
            np.testing.assert_array_equal(a.image[:, :, 3], image[:, :, 3])  # alpha untouched
        # the mask holds every pixel that changed by more than 1/255 ...
        delta = np.abs(_colour(a.image) - _colour(image)).max(axis=2)
        assert a.mask.any(), (name, variant, seed)
        assert delta[~a.mask].max() <= 1 / 255 + 1e-6  # finish's tolerance
        # ... and is not padded: each of its pixels really changed by more than 1/255
        assert delta[a.mask].min() > 1 / 255 + 1e-6
        record = a.record
        assert set(SCHEMA) <= set(record)
        assert record["method"] == name
        assert record["shape"] in get_method(name).shapes and record["mode"] in get_method(name).modes
        assert record["area_fraction"] == pytest.approx(a.mask.mean())
        x0, y0, x1, y1 = record["bbox"]
        ys, xs = np.nonzero(a.mask)
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert isinstance(json.loads(record["params"]), dict)
        json.dumps(record)  # the whole record is JSON


@pytest.mark.parametrize("name", ["cutpaste", "cutout", "fpi"])
def test_single_patch_changes_stay_inside_the_recorded_box(name):
    image = VARIANTS["brick_rgb"]
    for seed in range(5):
        a = _synth(image, name, seed)
        y0, y1, x0, x1 = json.loads(a.record["params"])["box"]
        inside = np.zeros(a.mask.shape, bool)
        inside[y0:y1, x0:x1] = True
        assert not (a.mask & ~inside).any()


def test_nsa_keeps_16_bit_pixels_outside_its_patches_bit_identical():
    image = VARIANTS["gravel_uint16"]
    for seed in range(3):
        a = _synth(image, "nsa", seed)
        footprint = np.zeros(a.mask.shape, bool)
        for y0, y1, x0, x1 in json.loads(a.record["params"])["boxes"]:
            footprint[y0:y1, x0:x1] = True
        np.testing.assert_array_equal(a.image[~footprint], image[~footprint])
        # inside, the change carries the blend, not a coarse 8-bit copy of the image
        unchanged_inside = footprint & (a.image == image).all(axis=2)
        assert unchanged_inside.sum() > 0 or a.mask.sum() == footprint.sum()


def test_nsa_changes_lie_in_the_pasted_patches_footprint():
    image = VARIANTS["brick_rgb"]
    for seed in range(6):
        a = _synth(image, "nsa", seed)
        params = json.loads(a.record["params"])
        footprint = np.zeros(a.mask.shape, bool)
        for y0, y1, x0, x1 in params["boxes"]:
            footprint[y0:y1, x0:x1] = True
        assert not (a.mask & ~footprint).any()
        # Poisson blending changes most of a patch, not a sliver of it
        assert a.mask.sum() >= 0.3 * footprint.sum()


def _recorded_footprint(name: str, params: dict, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Where the record says the anomaly was drawn, and how many pixels it drew there, computed
    from the published record only (the ``params`` column), never from the method's internals."""
    height, width = shape
    footprint = np.zeros(shape, bool)
    if name in ("cutpaste", "cutout", "fpi"):
        y0, y1, x0, x1 = params["box"]
        footprint[y0:y1, x0:x1] = True
        return footprint, int(footprint.sum())
    if name == "nsa":
        for y0, y1, x0, x1 in params["boxes"]:
            footprint[y0:y1, x0:x1] = True
        return footprint, int(footprint.sum())
    if name == "cutpaste_scar":
        factor = min(height, width) / params["reference_side"] * params["size_knob"]
        h, w = round(params["height"] * factor), round(params["width"] * factor)
        angle = np.deg2rad(params["angle"])
        # the rotated strip's bounding box, 1 pixel of interpolation to spare on each side
        box_h = int(np.ceil(h * abs(np.cos(angle)) + w * abs(np.sin(angle)))) + 2
        box_w = int(np.ceil(h * abs(np.sin(angle)) + w * abs(np.cos(angle)))) + 2
        footprint[:box_h, :box_w] = True  # a shape to compare bounding boxes against
        return footprint, h * w
    footprint[:] = True  # the noise-mask methods: anywhere, but at most mask_pixels of them
    return footprint, int(params["mask_pixels"])


@pytest.mark.parametrize("name", METHODS_UNDER_TEST)
def test_changed_pixels_match_the_geometry_the_record_publishes(name):
    """A user reading the record (box, boxes, strip size and angle, mask pixel count) finds every
    changed pixel accounted for, and the anomaly whole: not cut short by the method's rendering."""
    image = VARIANTS["brick_rgb"]
    for seed in range(4):
        a = _synth(image, name, seed)
        params = json.loads(a.record["params"])
        footprint, drawn = _recorded_footprint(name, params, a.mask.shape)
        changed = int(a.mask.sum())
        assert changed > 0
        if name == "cutpaste_scar":
            ys, xs = np.nonzero(a.mask)
            assert ys.max() - ys.min() < footprint.any(axis=1).sum(), (seed, params)
            assert xs.max() - xs.min() < footprint.any(axis=0).sum(), (seed, params)
        else:
            assert not (a.mask & ~footprint).any(), (seed, params)
        # a drawn pixel may keep its value (Poisson blending keeps many), but a window that cut the
        # anomaly short would lose a visible share of it
        assert changed <= drawn + 2 * int(np.sqrt(drawn)) + 4, (seed, changed, drawn)
        assert changed >= (0.5 if name == "nsa" else 0.75) * drawn, (seed, changed, drawn)


# --------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", METHODS_UNDER_TEST)
def test_same_seed_gives_same_bytes_and_other_seeds_differ(name):
    image = VARIANTS["astronaut_rgba"]
    first = _synth(image, name, 21)
    again = _synth(image, name, 21)
    assert first.image.tobytes() == again.image.tobytes()
    assert first.record == again.record
    other = _synth(image, name, 22)
    assert other.image.tobytes() != first.image.tobytes()


@pytest.mark.parametrize("name", ("synagen", *METHODS_UNDER_TEST))
def test_a_prepared_image_gives_the_anomalies_of_the_image_itself(name):
    """The protocol converts an image once for the five sizes of one drawn anomaly."""
    from synth import prepare

    image = VARIANTS["astronaut_rgba"]
    region = np.zeros(image.shape[:2], np.uint8)
    region[20:140, 30:150] = 255
    prepared = prepare(image, region, [PARTNER])
    for b in (0, 3):
        direct = synthesize(image, name, seed=5, size_bin=b, region=region, partners=[PARTNER])
        once = synthesize(prepared, name, seed=5, size_bin=b)
        assert once.image.tobytes() == direct.image.tobytes()
        assert np.array_equal(once.mask, direct.mask) and np.array_equal(once.diff, direct.diff)
        assert once.record == direct.record
    with pytest.raises(InvalidParameterError, match="given to prepare"):
        synthesize(prepared, name, seed=5, region=region)


NON_DEFAULT_OPTIONS = {
    "nsa": {"preset": "screw", "label": "logistic", "t_object": 0.1},
    "cutpaste": {"area_range": (0.01, 0.05), "jitter": 0.3},
    "cutpaste_scar": {"reference_side": 128, "angle_range": (10, 80)},
    "cutout": {"fill": "random", "side_range": (5, 30)},
    "fpi": {"alpha_range": (0.3, 0.4)},
    "draem": {"fallback": "noise", "threshold": 0.3, "opacity_range": (0.5, 0.6)},
    "foreground_perlin": {"beta_range": (0.4, 0.5), "max_scale": 3},
    "fractal": {"octave_range": (6, 6), "persistence": 0.7},
}


@pytest.mark.parametrize("name", METHODS_UNDER_TEST)
def test_spec_alone_replays_the_anomaly_whatever_the_options(name):
    """A stored spec renders the same bytes with a default-constructed method (dataset rows
    can be regenerated without knowing the generation options)."""
    image = VARIANTS["brick_rgb"]
    for size_bin in (None, 2):
        a = _synth(image, name, 8, size_bin=size_bin, **NON_DEFAULT_OPTIONS[name])
        b = replay(image, json.loads(a.spec.to_json()), partners=[PARTNER])
        assert b.image.tobytes() == a.image.tobytes()
        assert b.mask.tobytes() == a.mask.tobytes()


# --------------------------------------------------------------------------- region, size bins
@pytest.mark.parametrize("name", METHODS_UNDER_TEST)
def test_anomalies_land_inside_the_region_and_nothing_changes_outside(name):
    image = VARIANTS["brick_rgb"]
    region = np.zeros(image.shape[:2], np.uint8)
    cv2.circle(region, (110, 50), 35, 255, -1)
    for seed in range(4):
        a = _synth(image, name, seed, region=region)
        assert a.mask.any(), (name, seed)
        assert not (a.mask & (region == 0)).any()
        np.testing.assert_array_equal(a.image[region == 0], image[region == 0])


@pytest.mark.parametrize("name", METHODS_UNDER_TEST)
def test_measured_area_lands_in_the_requested_bin(name):
    method = get_method(name)
    assert method.targets_size
    image = VARIANTS["brick_rgb"]
    misses = []
    for seed in range(3):
        for b, size_bin in enumerate(DEFAULT_BINS):
            a = _synth(image, name, seed, size_bin=b)
            if not size_bin.contains(a.mask.mean()):
                misses.append((seed, size_bin.name, a.mask.mean()))
            else:
                assert a.record["size_bin"] == size_bin.name
            assert json.loads(a.record["params"])["requested_size_bin"] == size_bin.name
    assert misses == []


def test_size_bins_are_met_on_a_large_non_square_image():
    image = cv2.resize(skimage.data.astronaut(), (420, 300), interpolation=cv2.INTER_AREA)
    for name in METHODS_UNDER_TEST:
        for b in (0, 4):
            a = _synth(image, name, 4, size_bin=b)
            assert DEFAULT_BINS[b].contains(a.mask.mean()), (name, b, a.mask.mean())


# --------------------------------------------------------------------------- objects
@pytest.mark.parametrize("given_foreground", [True, False])
def test_foreground_perlin_stays_on_both_foregrounds(given_foreground):
    image, disk = _object_scene()
    partner, partner_disk = _object_scene(texture="grass", centre=(0.45, 0.55), radius=0.3)
    for seed in range(5):
        a = synthesize(
            image, "foreground_perlin", seed=seed, partners=[partner],
            foreground=disk if given_foreground else None,
        )
        allowed = disk & partner_disk
        assert a.mask.any()
        assert not (a.mask & ~allowed).any()


def test_nsa_on_an_object_blends_object_patches_with_normal_clone():
    image, disk = _object_scene()
    partner, _ = _object_scene(texture="grass", centre=(0.5, 0.45))
    inside = []
    for seed in range(6):
        a = synthesize(image, "nsa", seed=seed, partners=[partner], foreground=disk)
        assert a.record["mode"] == "normal_clone"
        inside.append((a.mask & disk).sum() / max(a.mask.sum(), 1))
    # the object constraints keep the patches on the object
    assert np.mean(inside) > 0.6


def test_nsa_picks_mixed_clone_for_textures_and_presets_set_it():
    texture = VARIANTS["brick_rgb"]
    for name in ("brick", "grass", "gravel"):
        assert synthesize(_crop(name), "nsa", seed=0).record["mode"] == "mixed_clone"
    wood = get_method("nsa", preset="wood")
    assert wood.kind == "texture" and wood.logistic == (1 / 6, 15.0)
    a = synthesize(texture, wood, seed=1)
    assert a.record["mode"] == "mixed_clone"
    assert json.loads(a.record["params"])["preset"] == "wood"
    screw = get_method("nsa", preset="screw")
    assert screw.width_bounds == ((0.03, 0.12), (0.03, 0.12)) and screw.n_patches == 4
    image, _ = _object_scene()
    assert synthesize(image, get_method("nsa", preset="hazelnut"), seed=2).record["mode"] == "normal_clone"
    with pytest.raises(InvalidParameterError, match="preset"):
        get_method("nsa", preset="bagel")


def test_nsa_labels_binary_continuous_logistic():
    image = VARIANTS["brick_rgb"]
    labels = {}
    for kind in ("binary", "continuous", "logistic"):
        a = synthesize(image, "nsa", seed=6, partners=[PARTNER], label=kind)
        assert a.label is not None and a.label.shape == a.mask.shape
        assert not a.label[~a.mask].any()
        assert 0.0 <= a.label.min() and a.label.max() <= 1.0
        labels[kind] = a
    assert set(np.unique(labels["binary"].label)) <= {0.0, 1.0}
    assert labels["binary"].label.sum() > 0.5 * labels["binary"].mask.sum()
    cont, diff = labels["continuous"], labels["continuous"].diff
    on = cont.label > 0
    # continuous is the (median-filtered) mean change: of the order of the max-channel diff
    assert np.median(cont.label[on]) <= np.median(diff[on]) * 1.5
    logi = labels["logistic"].label[labels["logistic"].label > 0]
    assert logi.max() < 1.0 and len(np.unique(logi)) > 10


def test_fpi_label_is_the_interpolation_factor():
    a = synthesize(VARIANTS["brick_rgb"], "fpi", seed=2, partners=[PARTNER])
    alpha = json.loads(a.record["params"])["alpha"]
    assert 0.05 <= alpha <= 0.95
    np.testing.assert_allclose(np.unique(a.label[a.mask]), [alpha], rtol=1e-6)
    assert not a.label[~a.mask].any()


def test_draem_fills_from_user_textures_or_falls_back_to_the_image():
    image = VARIANTS["brick_rgb"]
    texture = skimage.data.coffee()
    with_texture = synthesize(image, "draem", seed=3, textures=[texture])
    assert json.loads(with_texture.record["params"])["fill"]["source"] == "texture"
    fallback = synthesize(image, "draem", seed=3)
    assert json.loads(fallback.record["params"])["fill"]["source"] == "tiles"
    noise = synthesize(image, "draem", seed=3, fallback="noise")
    assert json.loads(noise.record["params"])["fill"]["source"] == "noise"
    assert len({with_texture.image.tobytes(), fallback.image.tobytes(), noise.image.tobytes()}) == 3


# --------------------------------------------------------------------------- hybrid
def test_hybrid_labels_each_output_with_the_method_that_made_it():
    mix = get_method("hybrid", weights={"nsa": 0.5, "synagen": 0.5}, nsa={"preset": "wood"})
    assert mix.needs_partner and mix.targets_size
    image = VARIANTS["brick_rgb"]
    seen = {}
    for seed in range(12):
        a = synthesize(image, mix, seed=seed, partners=[PARTNER], size_bin=2)
        seen.setdefault(a.record["method"], 0)
        seen[a.record["method"]] += 1
        assert a.spec.method == a.record["method"]
        assert DEFAULT_BINS[2].contains(a.mask.mean())
        if a.record["method"] == "nsa":
            assert a.record["mode"] in ("normal_clone", "mixed_clone")
        else:
            assert a.record["shape"] in ("spattered", "elongated", "rough", "complex")
    assert set(seen) == {"nsa", "synagen"}


def test_hybrid_respects_requested_shapes_and_rejects_bad_weights():
    mix = get_method("hybrid", weights={"cutout": 1, "draem": 1, "fpi": 0})
    image = VARIANTS["brick_rgb"]
    assert all(synthesize(image, mix, seed=s, shape="perlin").record["method"] == "draem" for s in range(4))
    with pytest.raises(InvalidParameterError):
        synthesize(image, mix, seed=0, shape="scar")
    for bad in ({}, {"nsa": -1}, {"nope": 1}, {"nsa": 0}, {"hybrid": 1}):
        with pytest.raises(InvalidParameterError):
            get_method("hybrid", weights=bad)
    with pytest.raises(InvalidParameterError):
        get_method("hybrid", weights={"nsa": 1}, draem={"threshold": 0.3})


def test_default_hybrid_mixes_every_method_evenly():
    mix = get_method("hybrid")
    assert set(mix.weights) == set(METHODS) - {"hybrid"}
    assert len(set(mix.weights.values())) == 1


# --------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "name, options",
    [
        ("nsa", {"label": "fuzzy"}),
        ("nsa", {"width_bounds": ((0.3, 0.1), (0.1, 0.2))}),
        ("cutpaste", {"area_range": (0.2, 0.1)}),
        ("cutpaste_scar", {"jitter": 1.5}),
        ("cutout", {"fill": "purple"}),
        ("fpi", {"alpha_range": (0.5, 1.5)}),
        ("draem", {"max_scale": 0}),
        ("draem", {"fallback": "nothing"}),
        ("fractal", {"octave_range": (0, 3)}),
        ("foreground_perlin", {"beta_range": (0.9, 0.1)}),
        ("cutout", {"colour": 1}),
    ],
)
def test_bad_options_raise_clear_errors(name, options):
    with pytest.raises(InvalidParameterError):
        get_method(name, **options)


def test_methods_read_options_from_plain_config_values():
    config = json.loads('{"nsa": {"preset": "tile", "label": "logistic", "n_patches": 2},'
                        ' "cutout": {"fill": 0.5, "side_range": [10, 20]},'
                        ' "draem": {"opacity_range": [0.5, 1.0], "min_scale": 1}}')
    image = VARIANTS["brick_rgb"]
    for name, options in config.items():
        a = synthesize(image, name, seed=1, partners=[PARTNER], **options)
        assert a.mask.any()
    a = synthesize(image, "cutout", seed=1, fill=0.5)
    np.testing.assert_allclose(_colour(a.image)[a.mask], 128 / 255, atol=1e-9)


def test_in_bin_rate_on_an_object_image_is_at_least_95_percent():
    image, disk = _object_scene()
    partner, _ = _object_scene(texture="grass", centre=(0.48, 0.52))
    hits, total = 0, 0
    for name in METHODS_UNDER_TEST:
        for seed in range(3):
            for b, size_bin in enumerate(DEFAULT_BINS):
                total += 1
                try:
                    a = synthesize(image, name, seed=seed, size_bin=b, partners=[partner], foreground=disk)
                except SizeBinError:
                    continue  # counted as a miss; never a silently wrong label
                assert a.record["size_bin"] == size_bin.name or not size_bin.contains(a.mask.mean())
                hits += size_bin.contains(a.mask.mean())
    assert hits / total >= 0.95


def test_the_readme_example_method_registers_and_runs_like_a_built_in_one(tmp_path, brick_rgb):
    """The README's example is real: its one block defines, registers and runs a method."""
    import re
    from pathlib import Path

    from synth.protocol import read_metadata, run_protocol
    from synth.registry import METHODS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- example-method[^>]*-->\s*```python\n(.*?)```", readme, re.S).group(1)
    assert len(block.splitlines()) <= 25
    namespace: dict = {}
    try:
        exec(compile(block, "README.md", "exec"), namespace)
        a = namespace["a"]
        assert a.record["method"] == "stripe" and a.record["shape"] == "band" and a.record["mode"] == "darken"
        rows = np.flatnonzero(a.mask.any(axis=1))
        assert rows.size and a.mask[rows].all() and not a.mask[~np.isin(np.arange(a.mask.shape[0]), rows)].any()
        assert a.record["area_fraction"] == pytest.approx(a.mask.mean())
        assert np.array_equal(synthesize(skimage.data.brick(), "stripe", seed=3).image, a.image)
        region = np.zeros(brick_rgb.shape[:2], bool)
        region[:, :100] = True
        inside = synthesize(brick_rgb, "stripe", seed=3, region=region)
        assert not inside.mask[:, 100:].any()
        save_png(tmp_path / "in" / "brick.png", brick_rgb)
        rows = run_protocol(tmp_path / "in", tmp_path / "out", method="stripe", per_image=2, progress=False)
        assert [r["method"] for r in read_metadata(tmp_path / "out")] == ["stripe", "stripe"] and len(rows) == 2
    finally:
        METHODS.pop("stripe", None)


def test_published_label_vocabularies_only_grow_at_the_end():
    """Published datasets store labels as indices: the names read off the methods keep the order of v1."""
    published = {
        "method": ("synagen", "nsa", "cutpaste", "cutpaste_scar", "cutout", "fpi", "draem", "foreground_perlin", "fractal"),
        "shape": ("spattered", "elongated", "rough", "complex", "patch", "rectangle", "scar", "square", "perlin", "fractal"),
        "mode": ("transparent", "transparent_noise", "transparent_color_noise", "mean_noise", "gray_noise", "texture",
                 "normal_clone", "mixed_clone", "paste", "constant", "interpolation", "texture_blend", "cut_blend"),
    }
    for column, names in zip(("method", "shape", "mode"), (METHOD_NAMES, SHAPE_NAMES, MODE_NAMES)):
        assert names[: len(published[column])] == published[column], column
