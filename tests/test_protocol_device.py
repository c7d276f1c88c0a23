"""The folder protocol on a torch device (``--device``, ``--batch-size``) and sharded over
processes (``accelerate launch``): same files, names, seeds, resume and determinism rules."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import skimage.data

from synth import DEFAULT_BINS, InvalidParameterError
from synth.image import load_image, save_png
from synth.protocol import read_metadata, run_protocol

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    for name in ("brick", "grass", "gravel"):
        save_png(folder / f"{name}.png", getattr(skimage.data, name)()[:128, :128])
    return folder


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


GENERATION = {"per_image": 1, "shapes": ["spattered", "rough"], "modes": ["gray_noise"], "progress": False}


def test_device_runs_write_the_same_files_for_any_batch_size(inputs, tmp_path):
    small = run_protocol(inputs, tmp_path / "b3", device="cpu", batch_size=3, **GENERATION)
    large = run_protocol(inputs, tmp_path / "b16", device="cpu", batch_size=16, prep_threads=1, **GENERATION)
    assert small == large and len(small) == 3 * 2 * len(DEFAULT_BINS)
    assert _hashes(tmp_path / "b3") == _hashes(tmp_path / "b16")
    for row in small:  # every output in its bin, and its mask is what the record measured
        assert row["size_bin"] == json.loads(row["params"])["requested_size_bin"]
        mask = load_image(tmp_path / "b3" / row["mask_file_name"]) > 0
        assert row["area_fraction"] == pytest.approx(mask.mean())
    assert json.loads((tmp_path / "b3" / "config.json").read_text())["config"]["renderer"] == "torch"


def test_device_runs_resume_and_keep_to_their_renderer(inputs, tmp_path):
    out = tmp_path / "out"
    first = run_protocol(inputs, out, device="cpu", **GENERATION)
    written = {p: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    assert run_protocol(inputs, out, device="cpu", batch_size=5, **GENERATION) == first  # nothing redone
    assert {p: p.stat().st_mtime_ns for p in (out / "images").iterdir()} == written
    with pytest.raises(InvalidParameterError, match="different configuration"):
        run_protocol(inputs, out, **GENERATION)  # the numpy renderer into a torch-rendered folder


def test_methods_without_a_batched_renderer_are_refused_on_a_device(inputs, tmp_path):
    with pytest.raises(InvalidParameterError, match="leave out --device"):
        run_protocol(inputs, tmp_path / "hybrid", method="hybrid", device="cpu", progress=False)
    with pytest.raises(InvalidParameterError, match="batch_size"):
        run_protocol(inputs, tmp_path / "b0", device="cpu", batch_size=0, progress=False)
    with pytest.raises(InvalidParameterError, match="prep_threads must be >= 1"):
        run_protocol(inputs, tmp_path / "p0", device="cpu", prep_threads=0, progress=False)



def test_a_device_torch_does_not_know_is_refused_before_anything_is_written(inputs, tmp_path):
    with pytest.raises(InvalidParameterError, match="unknown --device 'gpu0'; use cpu, cuda or cuda:N"):
        run_protocol(inputs, tmp_path / "gpu0", device="gpu0", progress=False)
    assert not list((tmp_path / "gpu0").glob("images/*.png"))

def _synth(args: list[str], out: Path, inputs: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [*args, "anomalyforge.py", "synth", str(inputs), str(out), "--per-image", "1", "--shapes",
               "spattered", "rough", "--modes", "transparent", "gray_noise", "--no-progress"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_accelerate_processes_write_exactly_the_one_process_files(inputs, tmp_path):
    single = _synth([sys.executable], tmp_path / "one", inputs)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    double = _synth(launch, tmp_path / "two", inputs)
    # one summary: the second process made its share and left metadata.jsonl to the first
    assert double.stdout.count("wrote ") == 1 and single.stdout.count("wrote ") == 1
    assert _hashes(tmp_path / "one") == _hashes(tmp_path / "two")
    assert len(read_metadata(tmp_path / "two")) == 3 * 2 * 2 * len(DEFAULT_BINS)


@pytest.mark.parametrize("method", ["fpi", "cutout", "cutpaste", "fractal", "foreground_perlin"])
def test_batched_methods_on_a_device_write_the_numpy_runs_files(inputs, tmp_path, method):
    """FPI and foreground Perlin (blending each task's partner image), CutOut, CutPaste and fractal
    render byte-identically on a device."""
    numpy_rows = run_protocol(inputs, tmp_path / "numpy", method=method, per_image=2, progress=False)
    torch_rows = run_protocol(inputs, tmp_path / "torch", method=method, per_image=2, progress=False,
                              device="cpu", batch_size=4)
    assert numpy_rows == torch_rows
    numpy_files, torch_files = _hashes(tmp_path / "numpy"), _hashes(tmp_path / "torch")
    del numpy_files["config.json"], torch_files["config.json"]  # records the renderer
    assert numpy_files == torch_files
