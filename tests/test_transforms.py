"""The training-time transforms (``synth.transforms``): reproducible anomalies in a DataLoader,
and batches on a device rendered through the engine with the bytes of the batched primitives."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from torchvision import tv_tensors

from synth import DEFAULT_BINS, InvalidParameterError, SizeBinError
from synth.batched import BATCHED_METHODS, synthesize_batch
from synth.transforms import BatchSynthesize, Synthesize, collate_anomalies


def _rgb() -> np.ndarray:
    size = 160
    brick = skimage.data.brick()[:size, :size]
    grass = skimage.data.grass()[:size, :size]
    gravel = skimage.data.gravel()[:size, :size]
    return np.ascontiguousarray(np.stack([brick, grass, gravel], axis=2))


RGB = _rgb()


def _batch(image: np.ndarray, n: int) -> torch.Tensor:
    """``n`` copies of an ``(H, W[, C])`` array as a ``(n, C, H, W)`` tensor."""
    arr = image if image.ndim == 3 else image[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].repeat(n, 1, 1, 1).contiguous()


class _Crops(torch.utils.data.Dataset):
    """Normal images as a dataset returns them: (C, H, W) uint8 crops of real textures."""

    def __init__(self, transform):
        self.transform = transform

    def __len__(self):
        return 8

    def __getitem__(self, i):
        y, x = divmod(i, 4)
        crop = torch.from_numpy(RGB[y * 40 : y * 40 + 96, x * 16 : x * 16 + 96].copy()).permute(2, 0, 1)
        return self.transform(tv_tensors.Image(crop))



def _load(seed: int, workers: int):
    transform = Synthesize("synagen", size_bin="0.5-1.5%")
    loader = torch.utils.data.DataLoader(
        _Crops(transform), batch_size=4, num_workers=workers, collate_fn=collate_anomalies,
        generator=torch.Generator().manual_seed(seed),
    )
    return list(loader)


def test_the_transform_in_a_dataloader_with_workers_gives_exact_reproducible_anomalies():
    batches = _load(seed=7, workers=2)
    again = _load(seed=7, workers=2)
    for (images, masks, records), (images2, masks2, _) in zip(batches, again):
        assert images.shape == (4, 3, 96, 96) and images.dtype == torch.uint8
        assert isinstance(masks, tv_tensors.Mask) and masks.shape == (4, 96, 96)
        assert torch.equal(images, images2) and torch.equal(masks, masks2)
        for k, record in enumerate(records):
            assert record["size_bin"] == "0.5-1.5%"
            assert record["area_fraction"] == pytest.approx(masks[k].double().mean().item())
    other = _load(seed=8, workers=2)
    assert not torch.equal(batches[0][0], other[0][0])


def test_the_transform_keeps_type_and_can_leave_images_normal():
    image = tv_tensors.Image(torch.from_numpy(RGB).permute(2, 0, 1))
    out, mask, record = Synthesize("cutout", generator=torch.Generator().manual_seed(0))(image)
    assert isinstance(out, tv_tensors.Image) and out.dtype == torch.uint8 and mask.any()
    assert record["method"] == "cutout"
    out, mask, record = Synthesize(p=0.0)(image)
    assert torch.equal(out, image) and not mask.any() and record is None


def test_the_batched_transform_does_not_depend_on_how_images_are_batched():
    images = _batch(RGB, 6)
    whole = BatchSynthesize(seed=0, p=0.5, size_bin=1)(images)
    split = BatchSynthesize(seed=0, p=0.5, size_bin=1)
    first, second = split(images[:4]), split(images[4:])
    assert torch.equal(whole[0], torch.cat([first[0], second[0]]))
    assert torch.equal(whole[1], torch.cat([first[1], second[1]]))
    # equal batches: each call's specs and plans were made while the previous one rendered
    pairs = BatchSynthesize(seed=0, p=0.5, size_bin=1, prep_threads=1)
    thirds = [pairs(images[k : k + 2]) for k in (0, 2, 4)]
    assert torch.equal(whole[0], torch.cat([t[0] for t in thirds]))
    assert whole[2] == [r for t in thirds for r in t[2]]
    records = whole[2]
    assert 0 < sum(r is not None for r in records) < 6  # p = 0.5 leaves some images normal
    for k, record in enumerate(records):
        if record is None:
            assert torch.equal(whole[0][k], images[k]) and not whole[1][k].any()
        else:
            assert DEFAULT_BINS[1].contains(whole[1][k].double().mean().item())


def _crops(n: int, dtype: torch.dtype) -> torch.Tensor:
    """``n`` different 96x96 crops of the real textures, as uint8, uint16 or float images."""
    crops = torch.stack([torch.from_numpy(RGB[8 * k : 8 * k + 96, 10 * k : 10 * k + 96].copy()).permute(2, 0, 1) for k in range(n)])
    if dtype == torch.uint16:
        return (crops.to(torch.int32) * 257).to(torch.uint16)
    return crops.float() / 255 if dtype.is_floating_point else crops


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.float32])
@pytest.mark.parametrize("method", BATCHED_METHODS)
def test_the_batched_transform_gives_the_bytes_of_the_batched_primitive(method, dtype):
    """The transform renders through the engine (specs drawn per run of draws, rendered
    non-strictly, its plans staged a call ahead); ``synthesize_batch`` draws one spec per image in
    one call and renders strictly. Each anomaly depends only on its image and seed, so the two
    give the same bytes and records, whatever the batching and the share of images left normal."""
    images = _crops(6, dtype)
    transform = BatchSynthesize(method, p=0.6, seed=11, size_bin="0.5-1.5%", prep_threads=1)
    parts = [transform(images[:4]), transform(images[4:])]
    out = torch.cat([part[0] for part in parts])
    masks = torch.cat([part[1] for part in parts])
    records = [r for part in parts for r in part[2]]
    picked = [k for k, record in enumerate(records) if record is not None]
    assert 0 < len(picked) < 6
    reference = synthesize_batch(
        images[picked], method, seeds=[records[k]["seed"] for k in picked], size_bin="0.5-1.5%"
    )
    assert out.dtype == dtype
    assert torch.equal(out[picked], reference.images) and torch.equal(masks[picked], reference.masks)
    assert [records[k] for k in picked] == reference.records
    normal = [k for k in range(6) if k not in picked]
    assert torch.equal(out[normal], images[normal]) and not masks[normal].any()


def test_the_batched_transform_raises_what_the_numpy_path_raises():
    flat = torch.full((4, 1, 64, 64), 128, dtype=torch.uint8)
    # a 16x16 image holds no whole pixel count in the smallest bin
    with pytest.raises(SizeBinError, match="holds no whole pixel count"):
        BatchSynthesize(seed=0, size_bin=0)(flat[:, :, :16, :16])
    # a flat image gives gray noise nothing to change in the 1-4 pixels of the smallest bin
    with pytest.raises(SizeBinError, match="could not bring a .*/gray_noise anomaly into size bin 0.02-0.1%"):
        BatchSynthesize(seed=0, size_bin=0, mode="gray_noise")(flat)
    # a shape or mode the method does not have is refused when the transform is made
    with pytest.raises(InvalidParameterError, match="unknown mode 'colour_noise' for method 'synagen'"):
        BatchSynthesize(mode="colour_noise")
    with pytest.raises(InvalidParameterError, match="unknown shape 'blob' for method 'cutout'"):
        Synthesize("cutout", shape="blob")


def test_the_old_import_path_names_the_new_one():
    with pytest.raises(ImportError, match="from synth.transforms import BatchSynthesize"):
        from synth.batched import BatchSynthesize  # noqa: F401
