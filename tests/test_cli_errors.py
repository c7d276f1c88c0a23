"""Bad input to any command ends in one line naming the problem and exit status 2, never a
traceback, and before any long work starts. Each case runs the real command in a subprocess."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import skimage.data
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def _crop(i: int) -> np.ndarray:
    return np.ascontiguousarray(skimage.data.gravel()[64 * i:64 * i + 64, :64])


def _black_fit(root: Path) -> Path:
    for i in range(2):
        _png(root / "fit" / f"{i}.png", np.zeros((64, 64, 3), np.uint8))
    return root / "fit"


def _huge_header_png(path: Path, side: int = 60000) -> Path:
    """A valid PNG header announcing ``side`` x ``side`` pixels, with almost no data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def _mvtec(root: Path, *, break_what: str | None = None) -> Path:
    """A small MVTec-layout folder (gravel crops); ``break_what`` damages one of its files."""
    category = root / "gravel"
    for i in range(4):
        _png(category / "train" / "good" / f"{i:03d}.png", _crop(i))
    for i in range(2):
        _png(category / "test" / "good" / f"{i:03d}.png", _crop(4 + i))
    defect = _crop(6).copy()
    defect[20:40, 20:40] = 255
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 20:40] = 255
    _png(category / "test" / "hole" / "000.png", defect)
    _png(category / "ground_truth" / "hole" / "000_mask.png", mask)
    if break_what == "defect image":
        path = category / "test" / "hole" / "000.png"
        path.write_bytes(path.read_bytes()[:60])  # truncated inside the pixel data
    elif break_what == "train image":
        (category / "train" / "good" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    elif break_what == "mask":
        (category / "ground_truth" / "hole" / "000_mask.png").write_bytes(b"garbage")
    elif break_what == "huge header":
        _huge_header_png(category / "train" / "good" / "002.png")
    return category


def _bench(tmp: Path, **changes) -> list[str]:
    config = {"output": str(tmp / "bench-out"), "datasets": {"gravel": str(_mvtec(tmp))}, "methods": ["cutpaste"],
              "pipelines": {"segmenter": {"steps": 1}}, "ratios": [0.5], "seeds": [0], "quality": False, **changes}
    path = tmp / "bench.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return ["bench", str(path)]


def _deep_json(tmp: Path) -> list[str]:
    build = tmp / "build"
    build.mkdir()
    (build / "build.json").write_text("{}")
    deep = tmp / "deep.json"
    deep.write_text("[" * 5000 + "]" * 5000)
    return ["hub", "push", str(build), "--repo", "acme/set", "--version", "1.0.0", "--diversity", str(deep)]


def _a_file(tmp: Path) -> Path:
    path = tmp / "a-file"
    path.write_text("x")
    return path


EVALUATE = ["evaluate", "--detector", "padim", "--image-size", "64", "--no-progress", "--cpu"]

#: (case id, command line made in a temporary folder, words the one error line must contain)
CASES: list[tuple[str, Callable[[Path], list[str]], tuple[str, ...]]] = [
    # numbers checked while the command line is parsed
    ("synth --per-image 0", lambda t: ["synth", "skimage:gravel", str(t / "o"), "--per-image", "0"], ("--per-image", ">= 1")),
    ("synth --per-image abc", lambda t: ["synth", "skimage:gravel", str(t / "o"), "--per-image", "abc"], ("--per-image", "integer")),
    ("synth --workers 0", lambda t: ["synth", "skimage:gravel", str(t / "o"), "--workers", "0"], ("--workers",)),
    ("synth --batch-size 0", lambda t: ["synth", "skimage:gravel", str(t / "o"), "--batch-size", "0"], ("--batch-size",)),
    ("synth --png-compression 12", lambda t: ["synth", "skimage:gravel", str(t / "o"), "--png-compression", "12"], ("--png-compression",)),
    ("hub build --shard-mb 0", lambda t: ["hub", "build", "skimage:gravel", str(t / "b"), "--shard-mb", "0"], ("--shard-mb", ">= 1")),
    ("hub build --shard-mb -5", lambda t: ["hub", "build", "skimage:gravel", str(t / "b"), "--shard-mb", "-5"], ("--shard-mb",)),
    ("evaluate --batch-size 0", lambda t: [*EVALUATE, "--dataset", str(_mvtec(t)), "--output", str(t / "o"),
                                           "--batch-size", "0"], ("--batch-size",)),
    ("stress --anomalies 0", lambda t: ["stress", str(_png(t / "a.png", _crop(0))), "--anomalies", "0"], ("--anomalies",)),
    ("train --lr -1", lambda t: ["train", "--fit", str(t), "--output", str(t / "o"), "--lr", "-1"], ("--lr",)),
    ("diversity --pairs 0", lambda t: ["diversity", "--dataset", str(t), "--pairs", "0"], ("--pairs",)),
    # fit images no anomaly can be made in: all black, where a blended patch of black changes nothing
    ("train on black images", lambda t: ["train", "--fit", str(_black_fit(t)), "--output", str(t / "o"), "--methods", "nsa",
                                        "--steps", "1", "--batch-size", "2", "--image-size", "64", "--workers", "0",
                                        "--no-pretrained", "--cpu", "--no-progress"],
     ("could not make a synthetic anomaly with nsa", "not constant")),
    # files that are no images, and config files that are no config
    ("synth --config image.png", lambda t: ["synth", "skimage:gravel", str(t / "o"), "--config",
                                            str(_png(t / "image.png", _crop(0)))], ("image.png", "UTF-8")),
    ("synth --config FIFO", lambda t: (os.mkfifo(t / "gen.yaml"), ["synth", "skimage:gravel", str(t / "o"), "--config",
                                                                   str(t / "gen.yaml")])[1], ("named pipe",)),
    # evaluate: damaged inputs and an unwritable --output, found before the long run
    ("evaluate truncated defect image", lambda t: [*EVALUATE, "--dataset", str(_mvtec(t, break_what="defect image")),
                                                   "--output", str(t / "o")], ("000.png",)),
    ("evaluate corrupt train image", lambda t: [*EVALUATE, "--dataset", str(_mvtec(t, break_what="train image")),
                                                "--output", str(t / "o")], ("001.png", "not a readable image")),
    ("evaluate corrupt mask", lambda t: [*EVALUATE, "--dataset", str(_mvtec(t, break_what="mask")),
                                         "--output", str(t / "o")], ("000_mask.png",)),
    ("evaluate 60000x60000 header", lambda t: [*EVALUATE, "--dataset", str(_mvtec(t, break_what="huge header")),
                                               "--output", str(t / "o")], ("002.png", "pixels")),
    ("evaluate --output under a file", lambda t: [*EVALUATE, "--dataset", str(_mvtec(t)),
                                                  "--output", str(_a_file(t) / "out")], ("cannot write into output folder",)),
    ("evaluate --output is a file", lambda t: [*EVALUATE, "--dataset", str(_mvtec(t)), "--output", str(_a_file(t))],
     ("cannot write into output folder", "a-file")),
    # bench configs of the wrong types, and unusable output paths
    ("bench seeds as strings", lambda t: _bench(t, seeds=["0", "1"]), ("seeds",)),
    ("bench ratios: 0.5", lambda t: _bench(t, ratios=0.5), ("ratios", "list")),
    ("bench string image_size", lambda t: _bench(t, image_size="128"), ("image_size",)),
    ("bench datasets: 5", lambda t: _bench(t, datasets=5), ("datasets",)),
    ("bench pipelines: segmenter", lambda t: _bench(t, pipelines="segmenter"), ("pipelines",)),
    ("bench hybrids as a list", lambda t: _bench(t, hybrids=["cutpaste", "draem"]), ("hybrids",)),
    ("bench output is a file", lambda t: _bench(t, output=str(_a_file(t))), ("cannot write into output folder",)),
    ("bench output under a file", lambda t: _bench(t, output=str(_a_file(t) / "out")), ("cannot write into output folder",)),
    # the Hub commands: repo ids, --save-to, --diversity
    ("hub versions ../../x", lambda t: ["hub", "versions", "../../x"], ("../../x", "repo id")),
    ("hub versions bad name", lambda t: ["hub", "versions", "acme/has space"], ("acme/has space", "repo id")),
    ("hub load invalid id", lambda t: ["hub", "load", "acme/a--b", "--version", "1.0.0"], ("acme/a--b",)),
    ("hub load --save-to a file", lambda t: ["hub", "load", "acme/set", "--version", "1.0.0", "--save-to",
                                             str(_a_file(t))], ("--save-to", "exists")),
    ("hub push 5000-deep --diversity", _deep_json, ("diversity", "nested too deeply")),
    # stress: an unwritable --output is found before the run
    ("stress --output under a file", lambda t: ["stress", str(_png(t / "a.png", _crop(0))), "--output",
                                                str(_a_file(t) / "out")], ("cannot write into output folder",)),
]
if Path("/proc/self").is_dir():  # a kernel file system where nothing can be created, even by root
    CASES += [
        ("bench output under /proc", lambda t: _bench(t, output="/proc/anomalyforge-out"), ("/proc/anomalyforge-out",)),
        ("stress --output under /proc", lambda t: ["stress", str(_png(t / "a.png", _crop(0))), "--output",
                                                   "/proc/anomalyforge-out"], ("/proc/anomalyforge-out",)),
    ]


@pytest.mark.parametrize("make_args, words", [pytest.param(m, w, id=i) for i, m, w in CASES])
def test_bad_input_is_one_line_and_exit_2(tmp_path, make_args, words):
    args = make_args(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_unused_test_token",
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "anomalyforge.py"), *args], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr[-2000:]
    for word in words:
        assert word in errors[0], errors[0]


def test_config_help_names_every_option_a_config_file_takes(tmp_path):
    """The --config help is made from the list the file is checked against, so it names them all
    (it once left out min_change)."""
    from synth.cli import CONFIG_FILE_KEYS

    result = subprocess.run([sys.executable, str(ROOT / "anomalyforge.py"), "synth", "--help"], capture_output=True,
                            text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "1000"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    config_help = next(line for line in result.stdout.splitlines() if line.strip().startswith("--config FILE"))
    assert all(key in config_help for key in CONFIG_FILE_KEYS), config_help
