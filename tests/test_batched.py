"""The batched torch renderer keeps the numpy path's promises on every anomaly of a batch: measured
area in the bin, nothing outside the region, exact masks, every layout, same seed -> same bytes
whatever the batch, and renderings that agree with the numpy path's for the same spec."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from synth import DEFAULT_BINS, InvalidParameterError, SizeBinError, synthesize
from synth.batched import (
    BATCHED_METHODS, UnsupportedMethodError, prepare_batch, render_batch, sample_specs, synthesize_batch,
)
from synth.anomaly import size_bin_name
from synth.sizing import Steering, correct

SIZE = 160


def _rgb() -> np.ndarray:
    brick = skimage.data.brick()[:SIZE, :SIZE]
    grass = skimage.data.grass()[:SIZE, :SIZE]
    gravel = skimage.data.gravel()[:SIZE, :SIZE]
    return np.ascontiguousarray(np.stack([brick, grass, gravel], axis=2))


RGB = _rgb()


def _batch(image: np.ndarray, n: int) -> torch.Tensor:
    """``n`` copies of an ``(H, W[, C])`` array as a ``(n, C, H, W)`` tensor."""
    arr = image if image.ndim == 3 else image[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].repeat(n, 1, 1, 1).contiguous()


def _scale(dtype: torch.dtype) -> float:
    return {torch.uint8: 255.0, torch.uint16: 65535.0}.get(dtype, 1.0)


def _colour_delta(out: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """max over colour channels of |out - src| in [0, 1] units, ``(B, H, W)``."""
    cc = 1 if src.shape[1] in (1, 2) else 3
    scale = _scale(src.dtype)
    return ((out[:, :cc].double() - src[:, :cc].double()).abs() / scale).amax(dim=1)


# --------------------------------------------------------------------------- size bins
def test_every_output_lands_in_its_requested_bin():
    seeds = list(range(4))
    images = _batch(RGB, len(seeds) * len(DEFAULT_BINS))
    specs = []
    for b in range(len(DEFAULT_BINS)):
        specs += sample_specs(images[:4], seeds=seeds, size_bin=b)
    out = render_batch(images, specs)
    for k, (record, spec) in enumerate(zip(out.records, specs)):
        fraction = out.masks[k].double().mean().item()
        assert spec.size_bin.contains(fraction), (k, spec.size_bin.name, fraction)
        assert record["size_bin"] == spec.size_bin.name
        assert record["area_fraction"] == pytest.approx(fraction)


def test_a_bin_no_placement_can_reach_raises_a_clear_error():
    flat = np.zeros((64, 64, 3), np.uint8)  # black: no mode can darken it, transparent cannot brighten 0
    with pytest.raises(SizeBinError, match="anomalies \\[0\\]"):
        synthesize_batch(_batch(flat, 1), seeds=[0], mode="transparent", size_bin=4)


# --------------------------------------------------------------------------- region, masks, layouts
def test_nothing_changes_outside_the_region():
    region = np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(region, (100, 60), 40, 255, -1)
    n = 8
    images = _batch(RGB, n)
    out = synthesize_batch(images, seeds=list(range(n)), regions=torch.from_numpy(region)[None].repeat(n, 1, 1))
    outside = torch.from_numpy(region == 0)
    for k in range(n):
        assert out.masks[k].any()
        assert not (out.masks[k] & outside).any()
        assert torch.equal(out.images[k][:, outside], images[k][:, outside])


LAYOUTS = {
    "rgb_uint8": _batch(RGB, 3),
    "gray_uint8": _batch(RGB[:, :, 0], 3),
    "rgba_uint8": _batch(np.dstack([RGB, np.linspace(0, 255, SIZE * SIZE).reshape(SIZE, SIZE).astype(np.uint8)]), 3),
    "gray_alpha_uint16": _batch(np.dstack([RGB[:, :, 1].astype(np.uint16) * 257, np.full((SIZE, SIZE), 4000, np.uint16)]), 3),
    "rgb_uint16": _batch(RGB.astype(np.uint16) * 257 + 31, 3),
    "rgb_float32": _batch(RGB.astype(np.float32) / 255.0, 3),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_masks_hold_exactly_the_changed_pixels_in_every_layout(layout):
    images = LAYOUTS[layout]
    out = synthesize_batch(images, seeds=[5, 6, 7])
    assert out.images.shape == images.shape and out.images.dtype == images.dtype
    assert out.masks.dtype == torch.bool and out.masks.shape == (3, SIZE, SIZE)
    if images.shape[1] in (2, 4):
        assert torch.equal(out.images[:, -1], images[:, -1])  # alpha untouched
    delta = _colour_delta(out.images, images)
    for k in range(3):
        mask = out.masks[k]
        assert mask.any()
        # every pixel changed by more than 1/255 is in the mask, and every mask pixel changed
        assert delta[k][~mask].max() <= 1 / 255 + 1e-6
        assert delta[k][mask].min() > 1 / 255 + 1e-6
        # the difference map is the stored change
        np.testing.assert_allclose(out.diffs[k].double(), delta[k], atol=1e-6)
        assert DEFAULT_BINS[0].low <= mask.double().mean() < DEFAULT_BINS[-1].high


def test_every_mode_and_shape_renders_including_texture():
    texture = skimage.data.coffee()
    shapes = ("spattered", "elongated", "rough", "complex")
    modes = ("transparent", "transparent_noise", "transparent_color_noise", "mean_noise", "gray_noise", "texture")
    images = _batch(RGB, len(modes))
    for shape in shapes:
        specs = [
            sample_specs(images[:1], seeds=[11], shape=shape, mode=mode, size_bin=2, textures=[texture])[0]
            for mode in modes
        ]
        out = render_batch(images, specs, textures=[texture])
        assert [r["shape"] for r in out.records] == [shape] * len(modes)
        assert [r["mode"] for r in out.records] == list(modes)
        assert all(r["size_bin"] == DEFAULT_BINS[2].name for r in out.records)
        assert len({out.images[k].numpy().tobytes() for k in range(len(modes))}) == len(modes)


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_the_same_bytes_whatever_the_batch():
    seeds = [21, 22, 23, 24, 25, 26]
    images = _batch(RGB, len(seeds))
    whole = synthesize_batch(images, seeds=seeds)
    parts = [synthesize_batch(images[:1], seeds=[s]) for s in seeds[:2]]
    parts.append(synthesize_batch(images[2:], seeds=seeds[2:]))
    pieces = torch.cat([p.images for p in parts])
    assert torch.equal(whole.images, pieces)
    assert torch.equal(whole.masks, torch.cat([p.masks for p in parts]))
    assert whole.records == [r for p in parts for r in p.records]
    # a replayed spec renders the same bytes
    again = render_batch(images, [type(s).from_dict(json.loads(s.to_json())) for s in whole.specs])
    assert torch.equal(again.images, whole.images)


@pytest.mark.parametrize("name", ["synagen", "draem", "nsa"])
def test_same_bytes_whatever_the_number_of_prep_threads_and_the_batch_size(name):
    """Plans are made on CPU threads (``prep_threads``) and batches may be prepared ahead: the
    bytes, masks and records do not depend on either, nor on how the anomalies are batched. (NSA
    in its three smaller bins: a large bin's Poisson solves cost minutes and test nothing more.)"""
    seeds = list(range(60, 74))
    images = _batch(RGB, 7)
    bins = 3 if name == "nsa" else len(DEFAULT_BINS)
    specs = [sample_specs(images[:1], name, seeds=[s], size_bin=k % bins)[0] for k, s in enumerate(seeds)]

    def render(threads: int, size: int):
        chunks = [specs[start : start + size] for start in range(0, len(specs), size)]
        # every batch is prepared before the previous one renders, as the protocol's runner does
        prepared = [prepare_batch(images[: len(c)], c, prep_threads=threads) for c in chunks]
        outs = [p.render() for p in prepared]
        return torch.cat([o.images for o in outs]), torch.cat([o.masks for o in outs]), [r for o in outs for r in o.records]

    one_thread = render(1, 7)
    for threads, size in ((4, 7), (1, 3), (4, 3)):
        images_out, masks, records = render(threads, size)
        assert torch.equal(images_out, one_thread[0])
        assert torch.equal(masks, one_thread[1])
        assert records == one_thread[2]
    assert masks.any(dim=(1, 2)).all()
    # one image repeated by expand (as the protocol batches it): the bins of one draw share a plan
    images = images[:1].expand(7, -1, -1, -1)
    assert torch.equal(render(4, 7)[0], one_thread[0])


def test_prep_threads_must_be_a_positive_count():
    images = _batch(RGB, 1)
    specs = sample_specs(images, seeds=[0])
    with pytest.raises(InvalidParameterError, match="prep_threads"):
        render_batch(images, specs, prep_threads=0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.float32])
def test_windows_are_written_alike_by_slices_and_by_the_gpus_indexed_writes(dtype):
    """A GPU writes a batch's windows with a few indexed operations, a CPU by slices per anomaly:
    both store the same bytes, masks, diff maps and measured windows (checked here on the CPU,
    so the GPU's way is tested without a GPU)."""
    from synth.batched.render import _write_windows
    from synth.batched.layout import quantize_batch, split
    from synth.batched.steering import Rendered

    rgba = np.concatenate([RGB, np.full((SIZE, SIZE, 1), 200, np.uint8)], axis=2)
    images = _batch(rgba, 3).to(dtype) * (257 if dtype == torch.uint16 else 1)
    images = images / 255.0 if dtype == torch.float32 else images
    colour, _, layout = split(images)
    rng = np.random.default_rng(0)
    # two windows and an anomaly that missed its bin (None), as a renderer returns them
    rendered = [
        None if box is None else Rendered(
            box[0], box[1], quantize_batch(torch.from_numpy(rng.random((*box[2:], 3), dtype=np.float32)), layout.quantum),
            torch.from_numpy(rng.random(box[2:]) > 0.5), 1.0, 0, 1, {},
        )
        for box in [(5, 7, 30, 41), None, (100, 120, 60, 40)]
    ]
    results = []
    for indexed in (False, True):
        out = images.clone()
        masks = torch.zeros((3, SIZE, SIZE), dtype=torch.bool)
        diffs = torch.zeros((3, SIZE, SIZE))
        windows = _write_windows(out, masks, diffs, colour, layout, rendered, indexed=indexed)
        results.append((out, masks, diffs, windows))
    (out_a, masks_a, diffs_a, win_a), (out_b, masks_b, diffs_b, win_b) = results
    assert torch.equal(out_a, out_b) and torch.equal(masks_a, masks_b) and torch.equal(diffs_a, diffs_b)
    assert not torch.equal(out_a, images) and torch.equal(out_a[1], images[1]) and torch.equal(out_a[:, 3], images[:, 3])
    assert sorted(win_a) == sorted(win_b) == [0, 2]
    for i in win_a:
        for a, b in zip(win_a[i], win_b[i]):
            assert a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("quantum", [1 / 255, 1 / 65535, 0.0])
def test_mean_noise_means_on_a_gpu_are_exact_and_do_not_depend_on_the_window(quantum):
    """On a GPU, mean_noise's mean colour is the exact mean of the stored values (checked here on
    the CPU): within a float32 rounding of the numpy path's pixel-order mean, and the same bytes
    whatever padding the batch's window size adds."""
    from synth.methods.synagen.batched import _exact_means, _footprint_means

    rng = np.random.default_rng(3)
    levels = rng.integers(0, 256 if quantum == 1 / 255 else 65536, (4, 60, 70, 3))
    source = torch.from_numpy((levels * quantum if quantum else rng.random((4, 60, 70, 3))).astype(np.float32))
    footprint = torch.from_numpy(rng.random((4, 60, 70)) < 0.3)
    exact = _exact_means(source, footprint, quantum)
    host = _footprint_means(source, footprint, quantum)  # the numpy path's, on a CPU
    np.testing.assert_allclose(exact.numpy(), host.numpy(), rtol=2e-6)
    padded_source = torch.nn.functional.pad(source, (0, 0, 0, 33, 0, 17))
    padded_footprint = torch.nn.functional.pad(footprint, (0, 33, 0, 17))
    assert torch.equal(_exact_means(padded_source, padded_footprint, quantum), exact)
    assert torch.equal(_exact_means(source[1:3], footprint[1:3], quantum), exact[1:3])


def test_the_spec_is_the_numpy_paths_spec_for_the_same_seed():
    for seed in (3, 4):
        cpu = synthesize(RGB, "synagen", seed=seed)
        torch_spec = sample_specs(_batch(RGB, 1), seeds=[seed])[0]
        assert torch_spec == cpu.spec


def _rendered_at_the_same_size(record: dict, cpu_record: dict, knob: str) -> bool:
    return json.loads(record["params"])[knob] == json.loads(cpu_record["params"])[knob]


def test_torch_and_numpy_renderings_of_the_same_spec_agree():
    """Bounds by construction, for the same 20 specs: the per-pixel work is the numpy path's
    elementwise arithmetic (float rounding far below a quantum), so rendered at the same size
    the stored values differ by at most one quantum (a value on a rounding boundary may round
    either way); a changed value can move the measured area and so the size search's scale,
    and every output still lands in its requested bin (measured on one machine: 119 of 120
    byte-identical over seeds 100-139 in three bin settings, all masks identical)."""
    seeds = list(range(100, 120))
    out = synthesize_batch(_batch(RGB, len(seeds)), seeds=seeds)
    for k, seed in enumerate(seeds):
        cpu = synthesize(RGB, "synagen", seed=seed)
        assert out.records[k]["size_bin"] == cpu.record["size_bin"] == json.loads(cpu.record["params"])["requested_size_bin"]
        if _rendered_at_the_same_size(out.records[k], cpu.record, "scale"):
            mine = out.images[k].permute(1, 2, 0).numpy()
            assert np.abs(mine.astype(int) - cpu.image.astype(int)).max() <= 1, seed


@pytest.mark.parametrize("size_bin", [None, 0, 3])
@pytest.mark.parametrize("name", ["cutout", "fpi", "cutpaste"])
def test_box_methods_batches_are_byte_identical_to_the_numpy_path(name, size_bin):
    """CutOut's, FPI's and CutPaste's geometry is computed by the numpy path's own functions and
    their values by the same float32 operations, so the bytes agree."""
    region = np.zeros((SIZE, SIZE), np.uint8)
    region[20:140, 30:150] = 255
    seeds = [0, 1, 2, 3, 4]
    cases = {
        "cutout": (({}, None, ()), ({"fill": "mean"}, torch.from_numpy(region)[None].repeat(5, 1, 1), ())),
        "fpi": (({}, None, ()), ({}, torch.from_numpy(region)[None].repeat(5, 1, 1), (skimage.data.astronaut(),))),
        "cutpaste": (({}, None, ()), ({"jitter": 0.3}, torch.from_numpy(region)[None].repeat(5, 1, 1), ())),
    }
    for options, regions, partners in cases[name]:
        out = synthesize_batch(_batch(RGB, 5), name, seeds=seeds, size_bin=size_bin, regions=regions,
                               partners=partners, **options)
        for k, seed in enumerate(seeds):
            cpu = synthesize(RGB, name, seed=seed, size_bin=size_bin, region=None if regions is None else region,
                             partners=partners, **options)
            assert out.images[k].permute(1, 2, 0).numpy().tobytes() == cpu.image.tobytes()
            assert np.array_equal(out.masks[k].numpy(), cpu.mask)
            assert out.records[k] == cpu.record


# --------------------------------------------------------------------------- the other array methods
#: batched methods besides SYNAGEN, each held to the same guarantees
OTHER_METHODS = ("cutout", "fpi", "cutpaste", "cutpaste_scar", "fractal", "foreground_perlin", "draem", "nsa")


@pytest.mark.parametrize("name", OTHER_METHODS)
def test_other_methods_land_in_every_bin_and_stay_inside_the_region(name):
    region = np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(region, (90, 70), 60, 255, -1)
    outside = torch.from_numpy(region == 0)
    n = 3
    images = _batch(RGB, n)
    regions = torch.from_numpy(region)[None].repeat(n, 1, 1)
    for b, size_bin in enumerate(DEFAULT_BINS):
        out = synthesize_batch(images, name, seeds=list(range(n)), size_bin=b, regions=regions)
        for k in range(n):
            fraction = out.masks[k].double().mean().item()
            assert size_bin.contains(fraction), (b, k, fraction)
            assert out.records[k]["size_bin"] == size_bin.name
            assert not (out.masks[k] & outside).any()
            assert torch.equal(out.images[k][:, outside], images[k][:, outside])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name", OTHER_METHODS)
def test_other_methods_masks_hold_exactly_the_changed_pixels_in_every_layout(name, layout):
    images = LAYOUTS[layout]
    out = synthesize_batch(images, name, seeds=[5, 6, 7], size_bin=2)
    assert out.images.shape == images.shape and out.images.dtype == images.dtype
    if images.shape[1] in (2, 4):
        assert torch.equal(out.images[:, -1], images[:, -1])  # alpha untouched
    delta = _colour_delta(out.images, images)
    for k in range(3):
        mask = out.masks[k]
        assert DEFAULT_BINS[2].contains(mask.double().mean().item())
        assert delta[k][~mask].max() <= 1 / 255 + 1e-6
        assert delta[k][mask].min() > 1 / 255 + 1e-6
        np.testing.assert_allclose(out.diffs[k].double(), delta[k], atol=1e-6)


@pytest.mark.parametrize("name", OTHER_METHODS)
def test_other_methods_give_the_same_bytes_whatever_the_batch(name):
    seeds = [40, 41, 42, 43, 44]
    images = _batch(RGB, len(seeds))
    whole = synthesize_batch(images, name, seeds=seeds, size_bin=1)
    parts = [synthesize_batch(images[:1], name, seeds=seeds[:1], size_bin=1),
             synthesize_batch(images[1:], name, seeds=seeds[1:], size_bin=1)]
    assert torch.equal(whole.images, torch.cat([p.images for p in parts]))
    assert torch.equal(whole.masks, torch.cat([p.masks for p in parts]))
    assert whole.records == [r for p in parts for r in p.records]


@pytest.mark.parametrize("size_bin", [None, 0, 3])
@pytest.mark.parametrize("name", ["draem", "fractal", "foreground_perlin"])
def test_noise_mask_methods_batches_are_byte_identical_to_the_numpy_path(name, size_bin):
    """The noise fields and fills come from the numpy path's own functions, the ranking, blend and
    measurement are the same float32 operations: the bytes and records agree, also with a
    region, texture images (DRAEM, fractal) or a partner image (foreground Perlin)."""
    region = np.zeros((SIZE, SIZE), np.uint8)
    region[10:150, 40:140] = 255
    regions = torch.from_numpy(region)[None].repeat(4, 1, 1)
    extra = {"partners": (skimage.data.astronaut(),)} if name == "foreground_perlin" else {"textures": (skimage.data.coffee(),)}
    seeds = [0, 1, 2, 3]
    for image in (RGB, RGB[:, :, 1]):
        for regs, inputs in ((None, {}), (regions, extra)):
            out = synthesize_batch(_batch(image, 4), name, seeds=seeds, size_bin=size_bin, regions=regs, **inputs)
            for k, seed in enumerate(seeds):
                cpu = synthesize(image, name, seed=seed, size_bin=size_bin, region=None if regs is None else region,
                                 **inputs)
                assert out.images[k].permute(1, 2, 0).numpy().reshape(cpu.image.shape).tobytes() == cpu.image.tobytes()
                assert np.array_equal(out.masks[k].numpy(), cpu.mask)
                assert out.records[k] == cpu.record


def test_cutpaste_scar_agrees_with_the_numpy_path():
    """Bounds by construction: the scar's rotation is cv2.warpAffine's bilinear sampling written
    out (values within ~1e-5 of OpenCV's before quantisation), so of 40 outputs (20 seeds, gray
    and RGB, bins 2 and 4) each lands in the requested bin, and those rendered at the same size
    knob differ by at most one quantum where both change (measured on one machine: 39 of 40
    byte-identical, the other differing in one stored value by one quantum)."""
    for image in (RGB, RGB[:, :, 0]):
        for size_bin in (2, 4):
            seeds = list(range(10))
            out = synthesize_batch(_batch(image, len(seeds)), "cutpaste_scar", seeds=seeds, size_bin=size_bin)
            for k, seed in enumerate(seeds):
                cpu = synthesize(image, "cutpaste_scar", seed=seed, size_bin=size_bin)
                mine = out.images[k].permute(1, 2, 0).numpy().reshape(cpu.image.shape)
                assert out.records[k]["size_bin"] == cpu.record["size_bin"] == DEFAULT_BINS[size_bin].name
                if _rendered_at_the_same_size(out.records[k], cpu.record, "size_knob"):
                    both = out.masks[k].numpy() & cpu.mask
                    assert np.abs(mine.astype(int) - cpu.image.astype(int))[both].max(initial=0) <= 1


# --------------------------------------------------------------------------- methods, errors
def test_methods_without_a_batched_renderer_say_where_they_run():
    images = _batch(RGB, 2)
    assert "nsa" in BATCHED_METHODS and "hybrid" not in BATCHED_METHODS
    with pytest.raises(UnsupportedMethodError, match="mixes methods per image.*synth.synthesize"):
        synthesize_batch(images, "hybrid", seeds=[0, 1])


def test_bad_batches_raise_clear_errors():
    from synth import InvalidImageError, InvalidParameterError, RegionError

    with pytest.raises(InvalidImageError, match="permute"):
        synthesize_batch(torch.from_numpy(RGB)[None], seeds=[0])  # channels last
    with pytest.raises(InvalidImageError, match=r"\[0, 1\]"):
        synthesize_batch(_batch(RGB, 1).float(), seeds=[0])  # float in 0-255
    with pytest.raises(InvalidParameterError, match="one per image"):
        synthesize_batch(_batch(RGB, 2), seeds=[0])
    with pytest.raises(RegionError, match="shape"):
        synthesize_batch(_batch(RGB, 2), seeds=[0, 1], regions=torch.ones(SIZE, SIZE, dtype=torch.bool))


def test_the_size_search_step_is_the_same_one_at_a_time_and_on_a_batch():
    """The numpy path steers one anomaly with Python floats, the batch renderer all at once:
    both take the same step for the same measurements."""
    rng = np.random.default_rng(0)
    knob = rng.uniform(0.1, 3.0, 200)
    area = np.round(rng.uniform(0, 4000, 200))
    k_low, k_high = np.where(rng.random(200) < 0.5, 0.0, knob * 0.5), np.where(rng.random(200) < 0.5, np.inf, knob * 2)
    for steering in (Steering(), Steering(root="sqrt", tolerance_of="bin", bracket_by="bin", refine_steps=2)):
        with np.errstate(invalid="ignore", divide="ignore"):
            batch = correct(knob, area, 1500.0, 1000, 2000, k_low, k_high, lower=0.0, upper=4.0, steering=steering)
        for i in range(200):
            one = correct(float(knob[i]), float(area[i]), 1500.0, 1000, 2000, float(k_low[i]), float(k_high[i]),
                          lower=0.0, upper=4.0, steering=steering)
            assert one.knob == pytest.approx(batch.knob[i], rel=1e-12)
            assert (one.k_low, one.k_high, one.stuck) == (batch.k_low[i], batch.k_high[i], batch.stuck[i])
        t = correct(torch.from_numpy(knob), torch.from_numpy(area), 1500.0, 1000, 2000, torch.from_numpy(k_low),
                    torch.from_numpy(k_high), lower=torch.zeros(200, dtype=torch.float64),
                    upper=torch.full((200,), 4.0, dtype=torch.float64), steering=steering)
        np.testing.assert_allclose(t.knob.numpy(), batch.knob, rtol=1e-12)
        assert np.array_equal(t.stuck.numpy(), batch.stuck)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_and_cpu_renderings_of_the_same_spec_agree():
    """Bounds by construction: per-pixel work is elementwise, so the devices differ by float
    rounding, far below a quantum; the same specs on CUDA and on the CPU land in their requested
    bins, and renders at the same size (same record params) differ by at most one quantum (a value
    on a rounding boundary may round either way; that can also move the size search's scale)."""
    seeds = list(range(30, 42))
    images = _batch(RGB, len(seeds))
    cpu = synthesize_batch(images, seeds=seeds)
    gpu = synthesize_batch(images.cuda(), seeds=seeds)
    assert gpu.images.device.type == "cuda" and gpu.masks.device.type == "cuda"
    for k in range(len(seeds)):
        requested = json.loads(cpu.records[k]["params"])["requested_size_bin"]
        assert gpu.records[k]["size_bin"] == cpu.records[k]["size_bin"] == requested
        if gpu.records[k]["params"] == cpu.records[k]["params"]:
            assert (gpu.images[k].cpu().int() - cpu.images[k].int()).abs().max() <= 1
    again = synthesize_batch(images.cuda()[:5], seeds=seeds[:5])  # same seed, other batch: same bytes
    assert torch.equal(again.images, gpu.images[:5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", [m for m in OTHER_METHODS if m != "nsa"])  # NSA: its own test below
def test_cuda_and_cpu_renderings_of_the_other_methods_agree(name):
    """Bounds by construction, as for SYNAGEN: the same specs on CUDA and on the CPU land in the
    requested bin, renders at the same size (same record params) within one quantum; the same seed
    in another CUDA batch gives the same bytes."""
    seeds = list(range(50, 58))
    images = _batch(RGB, len(seeds))
    cpu = synthesize_batch(images, name, seeds=seeds, size_bin=2)
    gpu = synthesize_batch(images.cuda(), name, seeds=seeds, size_bin=2)
    for k in range(len(seeds)):
        assert gpu.records[k]["size_bin"] == cpu.records[k]["size_bin"] == DEFAULT_BINS[2].name
        if gpu.records[k]["params"] == cpu.records[k]["params"]:
            assert (gpu.images[k].cpu().int() - cpu.images[k].int()).abs().max() <= 1
    again = synthesize_batch(images.cuda()[:3], name, seeds=seeds[:3], size_bin=2)
    assert torch.equal(again.images, gpu.images[:3])


# --------------------------------------------------------------------------- NSA's Poisson blending
def _astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[::3, ::3][:SIZE, :SIZE])


#: How far a float32 Poisson solve (ours or OpenCV's) may land from the exact solution of the same
#: system, in levels: float32 rounding through two FFT passes and the eigenvalue division stays
#: below 1e-3 at these sizes (5 to 100 pixels a side), 30x under this bound, which is itself far
#: under one level. The tests assert this premise, then everything below follows from it.
_POISSON_ROUNDING = 1 / 32


def _truncation_range(exact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8-bit values a solve within ``_POISSON_ROUNDING`` of ``exact`` can truncate to."""
    low = torch.floor((exact - _POISSON_ROUNDING).clamp(0.0, 255.0))
    return low, torch.floor((exact + _POISSON_ROUNDING).clamp(0.0, 255.0))


@pytest.mark.parametrize("mode", ["normal_clone", "mixed_clone"])
def test_the_poisson_solve_matches_opencv_seamless_clone(mode):
    """Bound by construction: on the same inputs (a rectangular patch of the astronaut blended into
    the brick/grass/gravel image, 30 boxes from 5x5 to 100x100 pixels), OpenCV and
    ``seamless_clone`` solve the same linear system in float32 and truncate. Both land within
    ``_POISSON_ROUNDING`` of the exact (float64) solution, so each output pixel is the
    truncation of a value in that interval: the two agree wherever the exact solution is not
    within ``_POISSON_ROUNDING`` of an integer, and differ by at most one level there (which
    of the two neighbours a value on an integer truncates to depends on the FFT's summation
    order, so on the CPU and library build). Nothing changes outside the mask."""
    from synth.methods.nsa.poisson import poisson_solution, seamless_clone

    flag = cv2.MIXED_CLONE if mode == "mixed_clone" else cv2.NORMAL_CLONE
    source = _astronaut()
    rng = np.random.default_rng(1)
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(5, 101, 2))
        y0, x0 = (int(v) for v in rng.integers(1, SIZE - 102, 2))
        canvas = RGB.copy()
        canvas[y0 : y0 + h, x0 : x0 + w] = source[y0 : y0 + h, x0 : x0 + w]
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[y0 + 1 : y0 + h - 1, x0 + 1 : x0 + w - 1] = 255
        centre = (x0 + 1 + (w - 2) // 2, y0 + 1 + (h - 2) // 2)
        expected = cv2.seamlessClone(canvas, RGB, mask.copy(), centre, flag)  # OpenCV writes into the mask
        ys, xs = slice(y0 + 1, y0 + h - 1), slice(x0 + 1, x0 + w - 1)
        destination = torch.from_numpy(RGB[ys, xs]).permute(2, 0, 1)
        patch = torch.from_numpy(canvas[ys, xs]).permute(2, 0, 1)
        mixed = mode == "mixed_clone"
        exact = poisson_solution(destination.double(), patch.double(), mixed)
        ours = poisson_solution(destination.float(), patch.float(), mixed)
        assert (ours.double() - exact).abs().max() <= _POISSON_ROUNDING
        mine = RGB.copy()
        mine[ys, xs] = seamless_clone(destination.float(), patch.float(), mixed).permute(1, 2, 0).to(torch.uint8).numpy()
        assert np.array_equal(mine[mask == 0], RGB[mask == 0]) and np.array_equal(expected[mask == 0], RGB[mask == 0])
        low, high = _truncation_range(exact)
        interior = (slice(None), slice(y0 + 2, y0 + h - 2), slice(x0 + 2, x0 + w - 2))
        for output in (mine, expected):
            solved = torch.from_numpy(output.astype(np.float64)).permute(2, 0, 1)[interior]
            assert bool(((low <= solved) & (solved <= high)).all())


def _object() -> np.ndarray:
    """An object on a flat background (NSA's object kind: object masks, normal clone)."""
    image = np.full((SIZE, SIZE, 3), 24, np.uint8)
    image[40:120, 30:130] = skimage.data.astronaut()[100:180, 200:300]
    return image


def _nsa_cases():
    """(image, options, partners): textures (mixed clone) in RGB and gray, the astronaut blended
    with normal clone from a partner image, and an object on a flat background."""
    return (
        (RGB, {}, ()),
        (RGB[:, :, 1], {}, ()),
        (_astronaut(), {"mode": "normal_clone"}, (RGB,)),
        (_object(), {}, ()),
    )


def test_nsa_specs_are_the_numpy_paths_specs_for_the_same_seed():
    """NSA's sampler looks at the pixels (object or texture): the batch draws from them too."""
    kinds = set()
    for image, options, partners in _nsa_cases():
        specs = sample_specs(_batch(image, 2), "nsa", seeds=[3, 4], partners=partners, **options)
        for spec, seed in zip(specs, (3, 4)):
            assert spec == synthesize(image, "nsa", seed=seed, partners=partners, **options).spec
            kinds.add(spec.params["kind"])
    assert kinds == {"object", "texture"}


def _downstream_of_an_overlap(boxes: list[list[int]], shape: tuple[int, ...]) -> np.ndarray:
    """Pixels of every patch box that overlaps an earlier patch's box: the clone there reads the
    earlier clone's output as its destination."""
    area = np.zeros(shape[:2], bool)
    for j, (y0, y1, x0, x1) in enumerate(boxes):
        if any(y0 < b1 and b0 < y1 and x0 < c1 and c0 < x1 for b0, b1, c0, c1 in boxes[:j]):
            area[y0:y1, x0:x1] = True
    return area


def test_nsa_batches_agree_with_the_numpy_path():
    """Bounds by construction, for the same 96 specs (8 seeds; no bin, bins 1 and 3; RGB and gray
    textures, the astronaut with a partner, an object on a flat background). The paths share the
    geometry and resized patches exactly and differ only in the Poisson solve, where a value on
    an integer may truncate to either neighbour (test above). So:

    * rendered at the same scale, the outputs differ by at most one level, except inside a patch
      box that overlaps an earlier patch: there the clone's destination already differs by a
      level, and under mixed clone a one-level change flips which gradient is taken, so no bound
      smaller than the pixel range holds (measured up to 5 levels on some CPUs);
    * a one-level difference can move a measured area and so the size search's scale; each
      search still ends in the requested bin, and with no bin each record names its own mask's bin.

    Both paths miss the same anomalies."""
    for image, options, partners in _nsa_cases():
        for size_bin in (None, 1, 3):
            seeds = list(range(8))
            images = _batch(image, len(seeds))
            specs = sample_specs(images, "nsa", seeds=seeds, size_bin=size_bin, partners=partners, **options)
            out = render_batch(images, specs, partners=partners, strict=False)
            for k, seed in enumerate(seeds):
                try:
                    cpu = synthesize(image, "nsa", seed=seed, size_bin=size_bin, partners=partners, **options)
                except SizeBinError:
                    assert k in out.missed
                    continue
                assert k not in out.missed
                mine = out.images[k].permute(1, 2, 0).numpy().reshape(cpu.image.shape)
                mask = out.masks[k].numpy()
                if size_bin is None:
                    assert out.records[k]["size_bin"] == size_bin_name(mask.mean())
                else:
                    assert out.records[k]["size_bin"] == cpu.record["size_bin"] == DEFAULT_BINS[size_bin].name
                params, cpu_params = json.loads(out.records[k]["params"]), json.loads(cpu.record["params"])
                if params["scale"] == cpu_params["scale"]:
                    assert params["boxes"] == cpu_params["boxes"]
                    free = ~_downstream_of_an_overlap(params["boxes"], cpu.image.shape)
                    assert np.abs(mine.astype(int) - cpu.image.astype(int))[free].max(initial=0) <= 1


def test_nsa_gives_the_same_bytes_in_batches_of_3_and_7():
    seeds = list(range(60, 67))
    for image, options, partners in _nsa_cases()[::2]:
        images = _batch(image, len(seeds))
        whole = synthesize_batch(images, "nsa", seeds=seeds, size_bin=2, partners=partners, **options)
        parts = [synthesize_batch(images[:3], "nsa", seeds=seeds[:3], size_bin=2, partners=partners, **options),
                 synthesize_batch(images[3:], "nsa", seeds=seeds[3:], size_bin=2, partners=partners, **options)]
        assert torch.equal(whole.images, torch.cat([p.images for p in parts]))
        assert torch.equal(whole.masks, torch.cat([p.masks for p in parts]))
        assert whole.records == [r for p in parts for r in p.records]


def test_nsa_batches_land_in_every_bin():
    """Every NSA output a batch returns lies in its requested bin; an anomaly no placement fits
    is one the numpy path cannot place either."""
    seeds = list(range(5))
    images = _batch(_astronaut(), len(seeds))
    for b, size_bin in enumerate(DEFAULT_BINS):
        out = render_batch(images, sample_specs(images, "nsa", seeds=seeds, size_bin=b), strict=False)
        for k, seed in enumerate(seeds):
            if k in out.missed:
                with pytest.raises(SizeBinError):
                    synthesize(_astronaut(), "nsa", seed=seed, size_bin=b)
                continue
            assert size_bin.contains(out.masks[k].double().mean().item()), (b, seed)
            assert out.records[k]["size_bin"] == size_bin.name
        assert len(out.missed) <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_and_cpu_nsa_renderings_agree():
    """Bounds by construction, as against the numpy path: cuFFT and the CPU FFT round
    differently, so a Poisson value on an integer may truncate to either neighbour and the size
    search take another scale; the same specs on CUDA and on the CPU land in the requested bin,
    renders at the same scale differ by at most one level outside patch boxes that overlap an
    earlier patch; the same seed in another CUDA batch gives the same bytes (one solve per patch)."""
    seeds = list(range(50, 58))
    for image, options, partners in _nsa_cases():
        images = _batch(image, len(seeds))
        specs = sample_specs(images, "nsa", seeds=seeds, size_bin=2, partners=partners, **options)
        cpu = render_batch(images, specs, partners=partners, strict=False)
        gpu = render_batch(images.cuda(), specs, partners=partners, strict=False)
        for k in range(len(seeds)):
            if k in cpu.missed or k in gpu.missed:
                continue
            assert gpu.records[k]["size_bin"] == cpu.records[k]["size_bin"] == DEFAULT_BINS[2].name
            params = json.loads(gpu.records[k]["params"])
            if params["scale"] == json.loads(cpu.records[k]["params"])["scale"]:
                free = torch.from_numpy(~_downstream_of_an_overlap(params["boxes"], (SIZE, SIZE)))
                delta = (gpu.images[k].cpu().int() - cpu.images[k].int()).abs().amax(dim=0)
                assert delta[free].max() <= 1
        again = render_batch(images.cuda()[:3], specs[:3], partners=partners, strict=False)
        assert torch.equal(again.images, gpu.images[:3])
