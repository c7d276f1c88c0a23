"""The building blocks of the noise and foreground methods: seeded Perlin/fractal noise and
foreground masks from a background brightness threshold."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from synth.errors import InvalidParameterError
from synth.foreground import estimate_background, foreground_mask
from synth.perlin import fractal_noise, perlin_noise, rotated_noise


def test_perlin_noise_is_seeded_bounded_and_any_size():
    a = perlin_noise((97, 203), (3, 7), seed=5)
    assert a.shape == (97, 203) and a.dtype == np.float32
    assert np.array_equal(a, perlin_noise((97, 203), (3, 7), seed=5))
    assert not np.array_equal(a, perlin_noise((97, 203), (3, 7), seed=6))
    assert -1.0 <= a.min() < -0.2 and 0.2 < a.max() <= 1.0
    assert abs(float(a.mean())) < 0.2


def test_more_periods_give_finer_noise():
    coarse = perlin_noise((256, 256), (2, 2), seed=1)
    fine = perlin_noise((256, 256), (32, 32), seed=1)
    roughness = lambda n: float(np.abs(np.diff(n, axis=1)).mean())  # noqa: E731
    assert roughness(fine) > 5 * roughness(coarse)


def test_fractal_noise_adds_detail_to_its_base_octave():
    base = fractal_noise((128, 128), (2, 2), seed=3, octaves=1)
    rich = fractal_noise((128, 128), (2, 2), seed=3, octaves=5)
    assert np.array_equal(base, perlin_noise((128, 128), (2, 2), seed=3))
    assert np.abs(np.diff(rich, axis=0)).mean() > np.abs(np.diff(base, axis=0)).mean()
    with pytest.raises(ValueError):
        fractal_noise((10, 10), (1, 1), seed=0, octaves=0)


def test_rotated_noise_covers_the_whole_image():
    n = rotated_noise((90, 150), (4, 4), seed=2, angle=37.0)
    assert n.shape == (90, 150)
    # no empty (constant) corners after rotation
    for corner in (n[:10, :10], n[:10, -10:], n[-10:, :10], n[-10:, -10:]):
        assert corner.std() > 0


def _object(size=160):
    yy, xx = np.mgrid[:size, :size]
    disk = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.3 * size) ** 2
    tex = skimage.data.gravel()[:size, :size].astype(np.float32) / 255
    image = np.full((size, size, 3), 0.1, np.float32)
    image[disk] = np.stack([tex] * 3, axis=2)[disk]
    return image, disk


def test_foreground_of_an_object_on_a_flat_background():
    image, disk = _object()
    assert estimate_background(image) == pytest.approx(0.1, abs=0.01)
    mask = foreground_mask(image)
    iou = (mask & disk).sum() / (mask | disk).sum()
    assert iou > 0.9


@pytest.mark.parametrize("name", ["brick", "grass", "gravel"])
def test_textures_are_foreground_everywhere(name):
    image = getattr(skimage.data, name)()[:160, :160].astype(np.float32)[:, :, None] / 255
    assert foreground_mask(image).all()


def test_explicit_background_threshold_and_bad_values():
    image, disk = _object()
    mask = foreground_mask(image, background=0.1, threshold=0.05, median_size=7)
    assert (mask & disk).sum() / disk.sum() > 0.9
    with pytest.raises(InvalidParameterError):
        foreground_mask(image, threshold=0.0)
    with pytest.raises(InvalidParameterError):
        foreground_mask(image, median_size=4)
    with pytest.raises(InvalidParameterError):
        foreground_mask(image, background=2.0)
