"""A run owns its output folder, and the project knows its own outputs only by their marker files.

Every test drives the command line in subprocesses, as users (and their scripts) do: two runs
started together into one folder, a run killed with SIGKILL, a failed write, a user's own
``images/`` folder beside the outputs, a Hugging Face imagefolder as input.
"""

from __future__ import annotations

import json
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from synth import load_image, save_png
from synth.protocol import read_metadata

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, str(ROOT / "anomalyforge.py")]
FAST = ["--per-image", "1", "--shapes", "rough", "--modes", "gray_noise", "--bins", "0.5-1.5%", "1.5-2.5%",
        "--no-progress"]
IN_USE = re.compile(r"output folder .+ is in use by pid \d+ on \S+ \(started [^)]+\)")


def run(*args: object, timeout: float = 600, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          **popen)


@pytest.fixture(scope="module")
def crops(textures) -> list[np.ndarray]:
    """Four different 48x64 gray crops of real textures."""
    return [textures[name][y:y + 48, x:x + 64] for name in ("brick", "grass") for y, x in ((0, 0), (60, 80))]


def images_in(folder: Path, crops: list[np.ndarray], names: list[str]) -> Path:
    for name, crop in zip(names, crops):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        save_png(folder / name, crop)
    return folder


def assert_rows_are_the_files(out: Path, sources: Path) -> list[dict]:
    """Every row names its own image and mask, the mask is exactly where the image differs from its
    source (up to 1/255) and the area is the mask's; no output file is left without its row."""
    rows = read_metadata(out)
    named = {r[c] for r in rows for c in ("file_name", "mask_file_name")}
    assert len(named) == 2 * len(rows)
    inputs = {(sources / r["source_id"]).resolve() for r in rows}  # the output folder may hold inputs
    files = {p.relative_to(out).as_posix() for part in ("images", "masks") for p in (out / part).iterdir()
             if p.resolve() not in inputs}
    assert named == files
    for row in rows:
        image = load_image(out / row["file_name"]).astype(int)
        mask = load_image(out / row["mask_file_name"]) > 0
        source = load_image(sources / row["source_id"]).astype(int)
        changed = np.abs(image - source) > 1
        assert np.array_equal(changed, mask), row["file_name"]
        assert row["area_fraction"] == pytest.approx(mask.mean(), abs=1e-6), row["file_name"]
    return rows


def leftovers(folder: Path) -> list[str]:
    """Temporaries and resume logs that a finished folder must not hold."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.name.endswith(".tmp") or p.name.startswith("metadata.partial") or p.name == ".anomalyforge.lock")


# ------------------------------------------------------------------------------- 1. one run per folder
def test_two_synth_runs_started_together_into_one_folder_never_mix_their_outputs(tmp_path, crops):
    sources = images_in(tmp_path / "in", crops, ["a.png", "b.png", "c.png"])
    for round_ in range(10):
        out = tmp_path / f"out{round_}"
        runs = [subprocess.Popen([*CLI, "synth", str(sources), str(out), *FAST, "--seed", str(seed)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                for seed in (0, 1)]
        results = [(p.wait(timeout=600), *p.communicate()) for p in runs]
        winners = [seed for seed, (code, _, _) in enumerate(results) if code == 0]
        assert winners, results
        for code, _, stderr in results:
            # the loser is told, in one line, who holds the folder -- or, when the winner had
            # already finished, that the folder holds another configuration
            assert code == 0 or (code == 2 and "Traceback" not in stderr and (
                IN_USE.search(stderr) or "holds outputs of a different configuration" in stderr)), stderr
        assert len(winners) == 1  # different seeds: the folder belongs to one of them
        config = json.loads((out / "config.json").read_text())
        assert config["config"]["seed"] == winners[0]
        rows = assert_rows_are_the_files(out, sources)
        assert len(rows) == 6
        assert leftovers(out) == []


def test_a_run_killed_with_sigkill_leaves_a_folder_the_next_run_claims_and_finishes(tmp_path, crops):
    sources = images_in(tmp_path / "in", crops, ["a.png", "b.png", "c.png", "d.png"])
    out = tmp_path / "out"
    args = [*CLI, "synth", str(sources), str(out), "--per-image", "20", "--shapes", "rough", "--modes",
            "gray_noise", "--bins", "2.5-15%", "--no-progress"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    log = out / "metadata.partial.jsonl"
    while process.poll() is None and not (log.exists() and log.read_bytes().count(b"\n") >= 2):
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed; give it more work"
    assert (out / ".anomalyforge.lock").is_file()  # the killed run's record stays; its lock does not
    # what a write cut by the kill leaves: a temporary beside its final name
    (out / "images" / f".a.png_k19_rough_gray_noise.png.{process.pid}.tmp").write_bytes(b"\x89PNG cut")
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert len(assert_rows_are_the_files(out, sources)) == 80
    assert leftovers(out) == []


def test_every_command_refuses_an_output_folder_another_run_holds(tmp_path, crops):
    import yaml

    held = tmp_path / "held"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from synth.run_lock import claimed_folder\n"
         "with claimed_folder(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()", str(held)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        sources = images_in(tmp_path / "in", crops, ["a.png"])
        bench = tmp_path / "bench.yaml"
        bench.write_text(yaml.safe_dump({"datasets": {"in": str(sources)}, "methods": ["cutout"],
                                         "pipelines": {"segmenter": {"steps": 1}}, "ratios": [0.5], "seeds": [0]}))
        commands = {
            "synth": ["synth", sources, held, *FAST],
            "hub build": ["hub", "build", sources, held, *FAST],
            "evaluate": ["evaluate", "--dataset", sources, "--fit", sources, "--output", held, "--cpu"],
            "bench": ["bench", bench, "--output", held, "--cpu"],
            "stress": ["stress", sources / "a.png", "--output", held],
        }
        for name, command in commands.items():
            result = run(*command)
            assert result.returncode == 2, (name, result.stderr)
            assert f"is in use by pid {holder.pid} " in result.stderr, (name, result.stderr)
            assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)
        assert sorted(p.name for p in held.iterdir()) == [".anomalyforge.lock"]  # nothing was written
    finally:
        holder.communicate("")
    assert not held.joinpath(".anomalyforge.lock").exists()


def test_every_command_refuses_an_output_folder_it_cannot_create_in_one_line(tmp_path, crops):
    sources = images_in(tmp_path / "in", crops, ["a.png"])
    (tmp_path / "file").write_text("a file, not a folder")
    blocked = tmp_path / "file" / "out"
    commands = {
        "synth": ["synth", sources, blocked, *FAST],
        "hub build": ["hub", "build", sources, blocked, *FAST],
        "evaluate": ["evaluate", "--dataset", sources, "--fit", sources, "--output", blocked, "--cpu"],
        "stress": ["stress", sources / "a.png", "--output", blocked],
    }
    for name, command in commands.items():
        result = run(*command)
        assert result.returncode == 2, (name, result.stderr)
        assert result.stderr.strip().endswith(f"cannot write into output folder {blocked}: Not a directory"), (
            name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)


def test_a_command_refused_for_its_input_leaves_no_output_folder_behind(tmp_path, crops):
    sources = images_in(tmp_path / "in", crops, ["a.png"])
    out = tmp_path / "new" / "out"
    commands = {
        "synth": ["synth", tmp_path / "missing", out, *FAST],
        "evaluate": ["evaluate", "--dataset", tmp_path / "missing", "--fit", sources, "--output", out, "--cpu"],
        "stress": ["stress", sources / "a.png", "--detector", "no-such-detector", "--output", out],
    }
    for name, command in commands.items():
        result = run(*command)
        assert result.returncode == 2, (name, result.stderr)
        assert not (tmp_path / "new").exists(), (name, result.stderr)


# ------------------------------------------------------------------------------- 11. atomic files
def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("command,limit", [(["synth"], 1500), (["hub", "build"], 8000)])
def test_a_write_that_fails_for_lack_of_space_leaves_no_temporary_and_the_rerun_finishes(tmp_path, crops, command,
                                                                                         limit):
    sources = images_in(tmp_path / "in", crops, ["a.png", "b.png"])
    out = tmp_path / "out"
    failed = run(*command, sources, out, *FAST, preexec_fn=_limit_file_size(limit))
    assert failed.returncode == 2, failed.stderr
    assert re.search(r"cannot write \S+: File too large", failed.stderr) and "Traceback" not in failed.stderr, failed.stderr
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []
    result = run(*command, sources, out, *FAST)
    assert result.returncode == 0, result.stderr
    generated = out if command == ["synth"] else out / "generated"
    assert len(assert_rows_are_the_files(generated, sources)) == 4
    assert leftovers(out) == []


# --------------------------------------------------------------------- 2, 3. outputs known by markers
@pytest.mark.parametrize("inside", [".", "out"])
def test_a_users_images_folder_stays_an_input_on_every_rerun_into_the_input_folder(tmp_path, crops, inside):
    sources = images_in(tmp_path / "in", crops, ["a.png", "b.png", "images/c.png", "images/d.png"])
    out = sources / inside
    first = run("synth", sources, out, *FAST)
    assert first.returncode == 0, first.stderr
    rows = read_metadata(out)
    assert {r["source_id"] for r in rows} == {"a.png", "b.png", "images/c.png", "images/d.png"}
    for _ in range(2):
        again = run("synth", sources, out, *FAST)
        assert again.returncode == 0, again.stderr
        assert read_metadata(out) == rows
    assert len(assert_rows_are_the_files(out, sources)) == 8
    assert leftovers(out) == []


def hugging_face_imagefolder(folder: Path, crops: list[np.ndarray]) -> Path:
    """The layout ``datasets.load_dataset("imagefolder")`` reads: images anywhere, metadata.jsonl."""
    names = ["a.png", "images/b.png", "images/c.png"]
    images_in(folder, crops, names)
    (folder / "metadata.jsonl").write_text("".join(json.dumps({"file_name": n, "label": "good"}) + "\n" for n in names))
    return folder


def test_synth_reads_every_image_of_a_hugging_face_imagefolder(tmp_path, crops):
    sources = hugging_face_imagefolder(tmp_path / "hf", crops)
    result = run("synth", sources, tmp_path / "out", *FAST)
    assert result.returncode == 0, result.stderr
    rows = assert_rows_are_the_files(tmp_path / "out", sources)
    assert {r["source_id"] for r in rows} == {"a.png", "images/b.png", "images/c.png"}


def test_hub_build_takes_a_hugging_face_imagefolder_as_input_images(tmp_path, crops):
    sources = hugging_face_imagefolder(tmp_path / "hf", crops)
    result = run("hub", "build", sources, tmp_path / "build", *FAST)
    assert result.returncode == 0, result.stderr
    info = json.loads((tmp_path / "build" / "build.json").read_text())
    assert info["counts"] == {"test": 6, "good": 3}
    assert info["input"]["kind"] == "images"
    assert leftovers(tmp_path / "build") == []
