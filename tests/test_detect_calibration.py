"""The detection calibration the Space uses (and the command line may): which anomaly-free images fit
a detector and which set its threshold, the threshold itself, and the verdict on each test image."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from detect.evaluation.calibration import CLEAN, Calibration, held_out_split, mirror_split, verdict


def test_one_image_fits_on_itself_and_its_mirrors_and_holds_out_its_half_turn():
    brick = skimage.data.brick()  # grayscale: the detectors see it in colour
    split = mirror_split(brick)
    colour = np.dstack([brick] * 3)
    assert [f.shape for f in split.fit] == [colour.shape] * 3
    assert np.array_equal(split.fit[0], colour) and np.array_equal(split.fit[1], colour[:, ::-1])
    assert np.array_equal(split.fit[2], colour[::-1, :])
    assert len(split.held_out) == 1 and np.array_equal(split.held_out[0], colour[::-1, ::-1])
    assert split.one_image


def test_the_last_of_several_images_is_held_out_and_three_are_needed_for_a_verdict():
    images = [skimage.data.brick(), skimage.data.grass(), skimage.data.gravel()]
    split = held_out_split(images)
    assert split.fit == images[:2] and split.held_out == images[2:] and not split.one_image
    two = held_out_split(images[:2])
    assert two.fit == images[:1] and two.held_out == images[1:2] and two.one_image
    one = held_out_split(images[:1])
    assert one.fit == one.held_out == images[:1] and one.one_image
    with pytest.raises(ValueError, match="at least one anomaly-free image"):
        held_out_split([])


def test_the_threshold_is_the_highest_held_out_score_and_sits_mid_scale():
    maps = [np.full((4, 4), 1.0), np.full((4, 4), 3.0)]
    calibration = Calibration.from_held_out([0.5, 2.0], maps)
    assert (calibration.threshold, calibration.typical) == (2.0, 2.0)
    calibration = Calibration(threshold=2.0, typical=1.0)
    assert calibration.heat_top == 3.0 and calibration.ratio(3.0) == 1.5
    assert calibration.verdict(2.0, CLEAN, one_image=False) == "clean"  # at the threshold is not above it
    assert calibration.verdict(2.5, CLEAN, one_image=False) == "false alarm"
    # the same pixels scored in another batch: a few float32 units in the last place above, not a false alarm
    threshold = np.float32(0.21076512)
    rounded = np.nextafter(threshold, np.float32(1), dtype=np.float32)
    for _ in range(4):
        rounded = np.nextafter(rounded, np.float32(1), dtype=np.float32)
    same = Calibration(threshold=float(threshold), typical=0.0)
    assert same.verdict(rounded, CLEAN, one_image=False) == "clean"
    assert same.verdict(threshold * np.float32(1.001), CLEAN, one_image=False) == "false alarm"


def test_the_verdict_says_what_is_known_of_the_image():
    mask = np.ones((2, 2), bool)
    assert (verdict(True, mask, False), verdict(False, mask, False)) == ("detected", "missed")
    assert (verdict(True, CLEAN, True), verdict(False, CLEAN, True)) == ("false alarm", "clean")
    assert (verdict(True, None, False), verdict(False, None, False)) == ("anomalous", "normal")
    assert (verdict(True, None, True), verdict(False, None, True)) == ("above reference", "within reference")
