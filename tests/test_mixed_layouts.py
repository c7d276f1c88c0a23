"""A folder mixing gray, colour, 16-bit and RGBA images goes through the whole journey as a user
runs it (CLI in subprocesses): synth, hub build, evaluate, with no conversion by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from synth import save_png
from synth.protocol import read_metadata

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, str(ROOT / "anomalyforge.py")]
FAST = ["--per-image", "1", "--shapes", "rough", "--modes", "gray_noise", "--bins", "2.5-15%", "--no-progress"]
SIZE = 96


def _run(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


def _mixed_folder(folder: Path, offset: int) -> None:
    """Gray 8-bit, RGB, gray 16-bit and RGBA crops of brick and gravel."""
    folder.mkdir(parents=True)
    brick, gravel = skimage.data.brick(), skimage.data.gravel()
    y = offset * SIZE
    gray = brick[y : y + SIZE, :SIZE]
    colour = np.stack([gravel[y : y + SIZE, :SIZE], gravel[y : y + SIZE, SIZE : 2 * SIZE], gray], axis=2)
    save_png(folder / "gray.png", gray)
    save_png(folder / "colour.png", colour)
    save_png(folder / "gray16.png", brick[y : y + SIZE, SIZE : 2 * SIZE].astype(np.uint16) * 257)
    rgba = np.concatenate([colour[:, ::-1], np.full((SIZE, SIZE, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")


def test_a_folder_mixing_gray_and_colour_is_generated_published_and_evaluated(tmp_path):
    _mixed_folder(tmp_path / "in", 0)
    _mixed_folder(tmp_path / "fit", 2)
    _run("synth", tmp_path / "in", tmp_path / "gen", *FAST)
    assert len(read_metadata(tmp_path / "gen")) == 4
    _run("hub", "build", tmp_path / "in", tmp_path / "build", *FAST)
    # batches of 3 split the 4 test and 4 good images unevenly: the note still counts the whole set
    done = _run("evaluate", "--dataset", tmp_path / "build", "--fit", tmp_path / "fit", "--option", "coreset_ratio=0.5",
                "--batch-size", "3", "--output", tmp_path / "out", "--cpu", "--no-progress")
    notes = [line.split(": note: ", 1)[1].split(";")[0] for line in done.stderr.splitlines() if ": note: " in line]
    # said once each: the fit set (2 gray of 4) and the scored images (the gray and 16-bit gray of each split)
    assert notes == ["fit images: 2 of 4 gray and the detector works on RGB",
                     "images: 4 of 8 gray and the detector works on RGB"], done.stderr
    assert "repeated gray into three channels" in done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_test"] == 4 and summary["n_good"] == 4
