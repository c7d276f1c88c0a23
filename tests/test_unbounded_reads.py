"""Only regular files of bounded size are read: a named pipe or a link to /dev/zero named like an
image, or an oversized file, gives a message naming it -- it never blocks a command or fills memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
#: a command that reads a pipe blocks forever and one that reads /dev/zero runs out of memory:
#: either is far beyond this
TIMEOUT_S = 300

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(),
                                reason="needs named pipes and /dev/zero")


def _run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "anomalyforge.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=TIMEOUT_S)


@pytest.fixture
def hostile_folder(tmp_path):
    """A folder with one real image, a named pipe, a symlink to /dev/zero and a 1 GB + 1 byte sparse
    file, all named like images."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(skimage.data.gravel()[:128, :128]).save(folder / "gravel.png")
    os.mkfifo(folder / "pipe.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    with open(folder / "huge.png", "wb") as file:
        file.truncate((1 << 30) + 1)
    return folder


def test_synth_lists_what_it_cannot_read_and_makes_the_rest(hostile_folder, tmp_path):
    result = _run("synth", hostile_folder, tmp_path / "out", "--per-image", "1", "--shapes", "rough",
                  "--modes", "transparent", "--bins", "2.5-15%", "--no-progress")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    failed = {row["source_id"]: row["error"] for row in map(json.loads, (tmp_path / "out" / "failures.jsonl").open())}
    assert "named pipe" in failed["pipe.png"]
    assert "character device" in failed["zero.png"]
    assert "above the limit" in failed["huge.png"]
    rows = [json.loads(line) for line in (tmp_path / "out" / "metadata.jsonl").open()]
    assert [row["source_id"] for row in rows] == ["gravel.png"]


@pytest.mark.parametrize("name, words", [("pipe.png", "named pipe"), ("zero.png", "character device"),
                                         ("huge.png", "above the limit")])
def test_stress_refuses_a_file_it_cannot_read(hostile_folder, name, words):
    result = _run("stress", hostile_folder / name)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert name in result.stderr and words in result.stderr


def test_train_names_a_pipe_among_the_fit_images(hostile_folder, tmp_path):
    for extra in ("zero.png", "huge.png"):
        (hostile_folder / extra).unlink()
    result = _run("train", "--fit", hostile_folder, "--output", tmp_path / "o", "--steps", "1", "--cpu", "--no-progress")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "pipe.png" in result.stderr and "named pipe" in result.stderr
