"""Which files `anomalyforge synth` reads as inputs, and how it answers options that name the wrong
thing: region masks by name, symbolic links, a file given as a folder, a name given twice.

Each test runs the command line in a subprocess on 64x64 crops of scikit-image's CC0 textures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from synth import save_png

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--per-image", "1", "--shapes", "rough", "--modes", "gray_noise", "--bins", "2.5-15%", "--no-progress"]


def _crop(name: str) -> np.ndarray:
    return np.ascontiguousarray(getattr(skimage.data, name)()[100:164, 100:164])


def _synth(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "anomalyforge.py"), "synth", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


def _sources(out: Path) -> list[str]:
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines() if line.strip()]
    return sorted({r["source_id"] for r in rows})


def test_a_file_given_as_the_texture_folder_is_named_as_a_file(tmp_path):
    save_png(tmp_path / "in" / "grass.png", _crop("grass"))
    texture = tmp_path / "brick.png"
    save_png(texture, _crop("brick"))
    result = _synth(str(tmp_path / "in"), str(tmp_path / "out"), "--per-image", "1", "--shapes", "rough",
                    "--modes", "texture", "--bins", "2.5-15%", "--textures", str(texture), "--no-progress")
    assert result.returncode == 2
    assert f"texture folder (--textures) {texture} is a file, not a folder" in result.stderr
    assert "input folder" not in result.stderr


@pytest.mark.parametrize("option, values, named", [
    ("--shapes", ["rough", "rough"], "shapes: 'rough' given more than once"),
    ("--modes", ["gray_noise,mean_noise", "gray_noise"], "modes: 'gray_noise' given more than once"),
])
def test_a_name_given_twice_is_reported_as_a_repeated_option_value(tmp_path, option, values, named):
    save_png(tmp_path / "in" / "grass.png", _crop("grass"))
    args = {"--shapes": ["rough"], "--modes": ["gray_noise"]}
    args[option] = values
    result = _synth(str(tmp_path / "in"), str(tmp_path / "out"), "--per-image", "1", "--bins", "2.5-15%",
                    "--shapes", *args["--shapes"], "--modes", *args["--modes"], "--no-progress")
    assert result.returncode == 2
    assert named in result.stderr
    assert "would both be written" not in result.stderr and not (tmp_path / "out" / "images").exists()


def test_an_image_named_like_a_mask_without_its_image_is_an_input_and_the_run_says_so(tmp_path):
    save_png(tmp_path / "in" / "grass.png", _crop("grass"))
    save_png(tmp_path / "in" / "face_mask.png", _crop("gravel"))  # a photo of a face mask, say
    result = _synth(str(tmp_path / "in"), str(tmp_path / "out"), *FAST)
    assert result.returncode == 0, result.stderr
    assert _sources(tmp_path / "out") == ["face_mask.png", "grass.png"]
    assert "warning: 1 image(s) named like region masks are read as input images (face_mask.png)" in result.stderr


def test_a_mask_beside_its_image_is_its_region_mask_not_an_input(tmp_path):
    save_png(tmp_path / "in" / "face.png", _crop("grass"))
    region = np.zeros((64, 64), np.uint8)
    region[:, :32] = 255
    save_png(tmp_path / "in" / "face_mask.png", region)
    result = _synth(str(tmp_path / "in"), str(tmp_path / "out"), *FAST)
    assert result.returncode == 0, result.stderr
    assert _sources(tmp_path / "out") == ["face.png"] and "named like region masks" not in result.stderr
    from PIL import Image

    for mask in (tmp_path / "out" / "masks").iterdir():
        assert not np.asarray(Image.open(mask))[:, 32:].any()  # every anomaly inside the allowed half


def test_symbolic_links_to_files_and_folders_are_both_followed_and_loops_end(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    save_png(elsewhere / "linked_file_target.png", _crop("brick"))
    save_png(elsewhere / "folder" / "gravel.png", _crop("gravel"))
    inputs = tmp_path / "in"
    save_png(inputs / "grass.png", _crop("grass"))
    (inputs / "brick.png").symlink_to(elsewhere / "linked_file_target.png")
    (inputs / "more").symlink_to(elsewhere / "folder", target_is_directory=True)
    (inputs / "loop").symlink_to(inputs, target_is_directory=True)  # a folder that contains itself
    result = _synth(str(inputs), str(tmp_path / "out"), *FAST)
    assert result.returncode == 0, result.stderr
    assert _sources(tmp_path / "out") == ["brick.png", "grass.png", "more/gravel.png"]
