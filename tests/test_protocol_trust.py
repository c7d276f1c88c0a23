"""Ground truth that is never silently wrong: `anomalyforge synth` run as a user runs it.

Each test drives the CLI in a subprocess and checks what a user relies on: every metadata row names
its own image and mask, made from the source it names; outputs are never read back as inputs;
resume trusts only intact files; bad input gives a clear message and a non-zero exit, never a
traceback; one bad image never costs the others their outputs.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synth import load_image, save_png
from synth.protocol import read_metadata

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, str(ROOT / "anomalyforge.py")]
#: a fast, fully specified generation: one anomaly per image and bin, two bins
FAST = ["--per-image", "1", "--shapes", "rough", "--modes", "gray_noise", "--bins", "0.5-1.5%", "1.5-2.5%", "--no-progress"]


def synth(*args: object, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "synth", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env=None if env is None else {**os.environ, **env}, timeout=timeout)


def _write(path: Path, image: np.ndarray) -> None:
    """Save in the format the suffix names (PNG through the project's writer, others through Pillow)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        save_png(path, image)
    elif path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(image).save(path, quality=95)
    else:
        Image.fromarray(image).save(path)


def assert_rows_match_files(out: Path, sources: Path, expected_sources: set[str]) -> list[dict]:
    """metadata rows <-> files 1:1, and each output is its own source's image outside its own mask."""
    rows = read_metadata(out)
    assert {r["source_id"] for r in rows} == expected_sources
    images = {r["file_name"] for r in rows}
    masks = {r["mask_file_name"] for r in rows}
    assert len(images) == len(rows) and len(masks) == len(rows) and not images & masks
    assert images == {p.relative_to(out).as_posix() for p in (out / "images").iterdir()}
    assert masks == {p.relative_to(out).as_posix() for p in (out / "masks").iterdir()}
    for row in rows:
        image = load_image(out / row["file_name"])
        mask = load_image(out / row["mask_file_name"]) > 0
        source = load_image(sources / row["source_id"])
        assert image.shape == source.shape
        # outside its mask an output is its source (changes up to 1/255 are not anomalies)
        assert mask.any() and np.abs(image[~mask].astype(int) - source[~mask]).max() <= 1, row["file_name"]
        assert row["area_fraction"] == pytest.approx(mask.mean())
    return rows


@pytest.fixture(scope="module")
def crops(textures) -> list[np.ndarray]:
    """Twelve different 48x64 gray crops of real textures."""
    return [textures[name][y:y + 48, x:x + 64] for name in ("brick", "grass", "gravel") for y, x in ((0, 0), (60, 0), (0, 80), (120, 120))]


# ---------------------------------------------------------------------------------- 1. names
def test_inputs_whose_names_collide_when_flattened_get_their_own_outputs(tmp_path, crops):
    names = ["a.png", "a.jpg", "sub/b.png", "sub__b.png", "x y.png", "x_y.png"]
    for name, crop in zip(names, crops):
        _write(tmp_path / "in" / name, crop)
    result = synth(tmp_path / "in", tmp_path / "out", *FAST)
    assert result.returncode == 0, result.stderr
    rows = assert_rows_match_files(tmp_path / "out", tmp_path / "in", set(names))
    assert len(rows) == 2 * len(names)


# --------------------------------------------------------------------- 2. outputs are not inputs
def test_rerun_with_the_output_folder_equal_to_or_inside_the_input_folder_reads_only_the_inputs(tmp_path, crops):
    for number, crop in enumerate(crops[:2]):
        _write(tmp_path / "in" / f"img{number}.png", crop)
    for out in (tmp_path / "in", tmp_path / "in" / "generated"):
        for _ in range(2):  # the documented resume: the same command again
            result = synth(tmp_path / "in", out, *FAST)
            assert result.returncode == 0, result.stderr
            assert "wrote 4 anomalies" in result.stdout
        assert_rows_match_files(out, tmp_path / "in", {"img0.png", "img1.png"})


def test_an_interrupted_output_folder_inside_the_input_is_not_read_as_input(tmp_path, crops):
    _write(tmp_path / "in" / "img.png", crops[0])
    first = synth(tmp_path / "in", tmp_path / "in" / "old", *FAST)
    assert first.returncode == 0, first.stderr
    (tmp_path / "in" / "old" / "metadata.jsonl").unlink()  # what a kill before the end leaves
    result = synth(tmp_path / "in", tmp_path / "out", *FAST)
    assert result.returncode == 0, result.stderr
    assert {r["source_id"] for r in read_metadata(tmp_path / "out")} == {"img.png"}


def test_hub_build_refuses_an_unfinished_synth_folder_and_synth_skips_a_build_folder(tmp_path, crops):
    _write(tmp_path / "in" / "img.png", crops[0])
    assert synth(tmp_path / "in", tmp_path / "gen", *FAST).returncode == 0
    (tmp_path / "gen" / "metadata.jsonl").unlink()
    build = subprocess.run([*CLI, "hub", "build", str(tmp_path / "gen"), str(tmp_path / "b"), "--sources", str(tmp_path / "in")],
                           capture_output=True, text=True, cwd=ROOT)
    assert build.returncode == 2 and "unfinished" in build.stderr and "Traceback" not in build.stderr
    # a build folder (its generated/ images, card examples) that ends up inside an input folder
    build = subprocess.run([*CLI, "hub", "build", str(tmp_path / "in"), str(tmp_path / "b"), *FAST],
                           capture_output=True, text=True, cwd=ROOT)
    assert build.returncode == 0, build.stderr
    assert list((tmp_path / "b" / "card" / "examples").glob("*.png"))
    (tmp_path / "b").rename(tmp_path / "in" / "b")
    result = synth(tmp_path / "in", tmp_path / "out", *FAST)
    assert result.returncode == 0, result.stderr
    assert {r["source_id"] for r in read_metadata(tmp_path / "out")} == {"img.png"}


# ------------------------------------------------------------------------------- 3. resume
def test_resume_remakes_outputs_that_a_power_loss_left_empty_or_cut(tmp_path, crops):
    for number, crop in enumerate(crops[:3]):
        _write(tmp_path / "in" / f"img{number}.png", crop)
    assert synth(tmp_path / "in", tmp_path / "reference", *FAST).returncode == 0
    assert synth(tmp_path / "in", tmp_path / "out", *FAST).returncode == 0
    rows = read_metadata(tmp_path / "out")
    (tmp_path / "out" / rows[0]["file_name"]).write_bytes(b"")
    cut = tmp_path / "out" / rows[1]["mask_file_name"]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    (tmp_path / "out" / "metadata.jsonl").unlink()
    result = synth(tmp_path / "in", tmp_path / "out", *FAST)
    assert result.returncode == 0, result.stderr
    assert_rows_match_files(tmp_path / "out", tmp_path / "in", {"img0.png", "img1.png", "img2.png"})
    for row in rows[:2]:
        for key in ("file_name", "mask_file_name"):
            assert (tmp_path / "out" / row[key]).read_bytes() == (tmp_path / "reference" / row[key]).read_bytes()


# ------------------------------------------------------------------------------ 5. region masks
def test_a_missing_region_mask_folder_is_a_usage_error_and_unmasked_images_are_counted(tmp_path, crops):
    for number, crop in enumerate(crops[:3]):
        _write(tmp_path / "in" / f"img{number}.png", crop)
    result = synth(tmp_path / "in", tmp_path / "out", *FAST, "--region-masks", tmp_path / "regoins")
    assert result.returncode == 2 and "regoins" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()
    result = synth(tmp_path / "in", tmp_path / "out", *FAST, "--region-masks", tmp_path / "empty")
    assert result.returncode == 2 and "no mask for any of the 3" in result.stderr
    region = np.zeros((48, 64), np.uint8)
    region[10:40, 10:50] = 255
    save_png(tmp_path / "regions" / "img1.png", region)
    result = synth(tmp_path / "in", tmp_path / "out", *FAST, "--region-masks", tmp_path / "regions")
    assert result.returncode == 0, result.stderr
    assert "2 of 3 image(s) have no region mask" in result.stderr and "img0.png" in result.stderr
    for row in read_metadata(tmp_path / "out"):
        if row["source_id"] == "img1.png":
            assert not (load_image(tmp_path / "out" / row["mask_file_name"]) > 0)[region == 0].any()


# ------------------------------------------------------------------------------- 6. tiny images
@pytest.mark.parametrize("method", ["fractal", "draem"])
def test_tiny_images_fail_alone_with_a_reason_and_the_rest_is_written(tmp_path, crops, method):
    _write(tmp_path / "in" / "line.png", crops[0][:1, :40])
    _write(tmp_path / "in" / "dot.png", crops[1][:1, :1])
    _write(tmp_path / "in" / "column.png", crops[2][:30, :1])
    _write(tmp_path / "in" / "ok.png", crops[3])
    result = synth(tmp_path / "in", tmp_path / "out", "--method", method, "--per-image", "1", "--no-progress")
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 1), result.stderr
    rows = read_metadata(tmp_path / "out")
    assert "ok.png" in {r["source_id"] for r in rows}
    failures = (tmp_path / "out" / "failures.jsonl")
    failed = [json.loads(line) for line in failures.read_text().splitlines()] if failures.exists() else []
    assert (result.returncode == 1) == bool(failed)
    for failure in failed:
        assert failure["source_id"] != "ok.png" and failure["error"] and "unexpected" not in failure["error"]


def test_every_method_handles_or_reports_images_down_to_one_pixel(tmp_path, crops):
    from synth import method_names
    from synth.protocol import ProtocolFailures, run_protocol

    for shape in ((1, 1), (1, 40), (30, 1), (2, 3)):
        _write(tmp_path / "in" / f"{shape[0]}x{shape[1]}.png", crops[0][: shape[0], : shape[1]])
    for method in method_names():
        if method == "hybrid":
            continue
        try:
            rows = run_protocol(tmp_path / "in", tmp_path / method, method=method, per_image=1, progress=False)
            failed = []
        except ProtocolFailures as exc:
            rows, failed = exc.rows, exc.failed
        for row in rows:
            mask = load_image(tmp_path / method / row["mask_file_name"]) > 0
            assert row["area_fraction"] == pytest.approx(mask.mean())
        for failure in failed:  # a reason a user can act on, not a defect report
            assert "unexpected" not in failure["error"], (method, failure)


# ------------------------------------------------------------------------------- 11. memory
def test_an_image_above_the_memory_budget_is_refused_from_its_header(tmp_path, crops):
    _write(tmp_path / "in" / "ok.png", crops[0])
    # valid, ~100 KB on disk, 10000 x 10000 pixels: gigabytes once decoded and worked on
    save_png(tmp_path / "in" / "huge.png", np.zeros((10000, 10000), np.uint8))
    result = synth(tmp_path / "in", tmp_path / "out", *FAST, env={"ANOMALYFORGE_MEMORY_BUDGET": "2GB"}, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "huge.png" in result.stderr and "2.0 GB" in result.stderr and "ANOMALYFORGE_MEMORY_BUDGET" in result.stderr
    assert {r["source_id"] for r in read_metadata(tmp_path / "out")} == {"ok.png"}
    failed = [json.loads(line) for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    assert {f["source_id"] for f in failed} == {"huge.png"} and "--memory-budget" in failed[0]["error"]
    # the option names the budget too, and raising it lets a smaller image through
    result = synth(tmp_path / "in", tmp_path / "out2", *FAST, "--memory-budget", "100MB", timeout=120)
    assert result.returncode == 1 and "100 MB" in result.stderr


# ------------------------------------------------------------------------- 12. clear errors
def test_a_config_value_of_the_wrong_type_is_a_usage_error(tmp_path, crops):
    _write(tmp_path / "in" / "img.png", crops[0])
    config = tmp_path / "gen.yaml"
    config.write_text("per_image: abc\n")
    result = synth(tmp_path / "in", tmp_path / "out", "--config", config)
    assert result.returncode == 2 and "per_image must be an integer, got 'abc'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_with_one_line_and_exit_130(tmp_path, crops, workers):
    for number, crop in enumerate(crops):
        _write(tmp_path / "in" / f"img{number}.png", crop)
    process = subprocess.Popen([*CLI, "synth", str(tmp_path / "in"), str(tmp_path / "out"), "--per-image", "3",
                                "--workers", str(workers), "--no-progress"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    log = tmp_path / "out" / "metadata.partial.jsonl"
    while process.poll() is None and not (log.exists() and log.stat().st_size):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in stderr and stderr.strip().splitlines() == ["anomalyforge synth: interrupted"]


# ------------------------------------------------------------------------------------ 14. EXIF
def test_exif_orientation_is_applied_before_anomalies_are_made(tmp_path, crops):
    from detect.images import read_image_folder

    stored = np.ascontiguousarray(np.stack([crops[0]] * 3, axis=2))  # 48 high, 64 wide as stored
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    (tmp_path / "in").mkdir()
    image.save(tmp_path / "in" / "phone.jpg", exif=exif, quality=95)
    shown = load_image(tmp_path / "in" / "phone.jpg")
    assert shown.shape == (64, 48, 3)
    data = io.BytesIO()
    image.save(data, "PNG")
    assert np.abs(shown.astype(int) - np.rot90(np.asarray(Image.open(data)), -1)).mean() < 3  # JPEG loss only
    folder_images, _ = read_image_folder(tmp_path / "in")
    assert np.array_equal(folder_images[0], shown)
    result = synth(tmp_path / "in", tmp_path / "out", *FAST)
    assert result.returncode == 0, result.stderr
    for row in read_metadata(tmp_path / "out"):
        output = load_image(tmp_path / "out" / row["file_name"])
        mask = load_image(tmp_path / "out" / row["mask_file_name"]) > 0
        assert output.shape == shown.shape and np.abs(output[~mask].astype(int) - shown[~mask]).max() <= 1


# ------------------------------------------------------------------ property: rows <-> files 1:1
_CHARS = list("abcXYZ019 _-.") + ["é", "Ü", "日", "~", "+", "#", "%", "'"]
_SUFFIXES = [".png", ".PNG", ".jpg", ".JPEG", ".bmp", ".tif", ".webp"]


def random_tree(rng: np.random.Generator, crops: list[np.ndarray], root: Path, n: int) -> set[str]:
    """``n`` images under ``root`` with hostile names: nesting, spaces, unicode, case twins,
    names that differ only by extension, by ``/`` versus ``__`` or by space versus ``_``."""
    names: set[str] = set()
    while len(names) < n:
        parts = ["".join(rng.choice(_CHARS, size=int(rng.integers(1, 6)))) for _ in range(int(rng.integers(1, 4)))]
        parts = [p.strip(" .") or "d" for p in parts]  # no hidden or dot-only names
        stem = "/".join(parts)
        if stem.endswith("_mask"):
            continue
        name = stem + str(rng.choice(_SUFFIXES))
        twins = {name, name.swapcase(), stem + ".png", stem.replace("/", "__") + ".jpg", stem.replace(" ", "_") + ".png"}
        for twin in sorted(twins)[: n - len(names)]:
            if twin.rsplit(".", 1)[0].endswith("_mask") or any(p.startswith(".") for p in twin.split("/")):
                continue
            if any(twin.startswith(other + "/") or other.startswith(twin + "/") for other in names):
                continue  # a file and a folder cannot share a path
            names.add(twin)
    for number, name in enumerate(sorted(names)):
        crop = crops[number % len(crops)][number % 7:, number % 5:][:20, :24]
        _write(root / name, crop)
    return names


SMALL = ["--per-image", "2", "--shapes", "rough", "--modes", "gray_noise", "--bins", "2.5-15%", "--no-progress"]


def test_random_trees_of_hostile_names_give_rows_and_files_one_to_one(tmp_path, crops):
    rng = np.random.default_rng(0)
    for number in range(3):
        root = tmp_path / f"in{number}"
        names = random_tree(rng, crops, root, 16)
        result = synth(root, tmp_path / f"out{number}", *SMALL)
        assert result.returncode == 0, result.stderr
        rows = assert_rows_match_files(tmp_path / f"out{number}", root, names)
        assert len(rows) == 2 * len(names)


def test_a_run_killed_mid_way_resumes_to_the_same_files(tmp_path, crops):
    names = random_tree(np.random.default_rng(7), crops, tmp_path / "in", 16)
    args = [*CLI, "synth", str(tmp_path / "in"), str(tmp_path / "out"), "--per-image", "4", "--shapes", "rough",
            "--modes", "gray_noise", "--bins", "2.5-15%", "--workers", "2", "--no-progress"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    log = tmp_path / "out" / "metadata.partial.jsonl"
    while process.poll() is None and not (log.exists() and log.read_bytes().count(b"\n") >= 3):
        time.sleep(0.01)
    process.kill()  # SIGKILL: no cleanup of any kind
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed; give it more work"
    assert not (tmp_path / "out" / "metadata.jsonl").exists()
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    rows = assert_rows_match_files(tmp_path / "out", tmp_path / "in", names)
    assert len(rows) == 4 * len(names)
    reference = [tmp_path / "reference" if a == str(tmp_path / "out") else a for a in args]
    assert subprocess.run(reference, capture_output=True, cwd=ROOT).returncode == 0
    assert (tmp_path / "out" / "metadata.jsonl").read_bytes() == (tmp_path / "reference" / "metadata.jsonl").read_bytes()
    for row in rows:
        for key in ("file_name", "mask_file_name"):
            assert (tmp_path / "out" / row[key]).read_bytes() == (tmp_path / "reference" / row[key]).read_bytes()
