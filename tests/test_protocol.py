"""The folder protocol and the CLI: layout, determinism across workers, resume, failures."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from synth import InvalidImageError, InvalidParameterError, decode_image, load_image, save_png
from synth.protocol import MissingRegionMasks, ProtocolFailures, read_metadata, run_protocol

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def input_dir(tmp_path, textures):
    folder = tmp_path / "good"
    save_png(folder / "brick.png", textures["brick"][:160, :200])
    save_png(folder / "sub" / "grass.png", np.stack([textures["grass"][:128, :128]] * 3, axis=2))
    return folder


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in ("metadata.partial.jsonl",)
    }


def test_protocol_writes_an_imagefolder_that_datasets_loads(input_dir, tmp_path):
    out = tmp_path / "out"
    rows = run_protocol(input_dir, out, per_image=1, shapes=["spattered", "rough"], modes=["transparent", "gray_noise"], seed=3, progress=False)
    assert len(rows) == 2 * 1 * 2 * 2 * 5
    assert {r["source_id"] for r in rows} == {"brick.png", "sub/grass.png"}
    for row in rows:
        image = load_image(out / row["file_name"])
        mask = load_image(out / row["mask_file_name"])
        source = load_image(input_dir / row["source_id"])
        assert image.shape == source.shape and image.dtype == source.dtype
        assert set(np.unique(mask)) <= {0, 255}
        assert row["area_fraction"] == pytest.approx((mask > 0).mean())
        assert row["size_bin"] in {"0.02-0.1%", "0.1-0.5%", "0.5-1.5%", "1.5-2.5%", "2.5-15%"}
    import datasets

    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert ds.num_rows == len(rows)
    assert {"image", "mask", "shape", "mode", "size_bin", "area_fraction", "source_id", "seed"} <= set(ds.column_names)


def test_same_seed_same_files_for_any_worker_count(input_dir, tmp_path):
    kwargs = dict(per_image=1, shapes=["elongated", "complex"], modes=["mean_noise"], seed=11, progress=False)
    run_protocol(input_dir, tmp_path / "w1", workers=1, **kwargs)
    run_protocol(input_dir, tmp_path / "w2", workers=2, **kwargs)
    assert _digest(tmp_path / "w1") == _digest(tmp_path / "w2")
    run_protocol(input_dir, tmp_path / "other", workers=1, **{**kwargs, "seed": 12})
    assert _digest(tmp_path / "w1")["metadata.jsonl"] != _digest(tmp_path / "other")["metadata.jsonl"]


def test_interrupted_run_resumes_without_redoing_finished_outputs(input_dir, tmp_path):
    out = tmp_path / "out"
    kwargs = dict(per_image=1, shapes=["spattered"], modes=["transparent", "gray_noise"], seed=1, progress=False)
    full = run_protocol(input_dir, tmp_path / "reference", **kwargs)
    # an interrupted run: half of the tasks made (one shard of two), no metadata.jsonl yet ...
    run_protocol(input_dir, out, shard=(0, 2), **kwargs)
    assert not (out / "metadata.jsonl").exists()
    # ... and its last task cut by the kill: a cut log line, its files gone
    partial = out / "metadata.partial.0-of-2.jsonl"
    lines = partial.read_text().splitlines()
    last = json.loads(lines[-1])
    partial.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    for row in last["rows"]:
        (out / row["file_name"]).unlink()
    kept = out / json.loads(lines[0])["rows"][0]["file_name"]
    before = kept.stat().st_mtime_ns
    rows = run_protocol(input_dir, out, **kwargs)
    assert kept.stat().st_mtime_ns == before  # finished outputs were not redone
    assert rows == full
    assert _digest(out) == _digest(tmp_path / "reference")
    # a finished folder keeps no resume log; a rerun finds its outputs in metadata.jsonl
    assert not list(out.glob("metadata.partial*"))
    assert run_protocol(input_dir, out, **kwargs) == full
    assert kept.stat().st_mtime_ns == before


def test_resume_with_other_options_is_refused(input_dir, tmp_path):
    run_protocol(input_dir, tmp_path / "out", per_image=1, shapes=["rough"], modes=["transparent"], progress=False)
    with pytest.raises(InvalidParameterError, match="different configuration"):
        run_protocol(input_dir, tmp_path / "out", per_image=2, shapes=["rough"], modes=["transparent"], progress=False)


def test_region_masks_folder_and_beside_images(input_dir, tmp_path):
    region = np.zeros((160, 200), np.uint8)
    region[40:120, 50:150] = 255
    masks = tmp_path / "regions"
    save_png(masks / "brick.png", region)
    with pytest.warns(MissingRegionMasks, match="1 of 2 image"):  # sub/grass.png has none
        rows = run_protocol(input_dir, tmp_path / "out", per_image=1, shapes=["complex"], modes=["gray_noise"], bins=["0.1-0.5%", "1.5-2.5%"], region_masks=masks, progress=False)
    for row in rows:
        if row["source_id"] == "brick.png":
            mask = load_image(tmp_path / "out" / row["mask_file_name"]) > 0
            assert not mask[region == 0].any()
    # a mask folder inside the input folder is not read as input images
    inside = input_dir / "regions"
    save_png(inside / "brick.png", region)
    with pytest.warns(MissingRegionMasks):
        rows = run_protocol(input_dir, tmp_path / "out1", per_image=1, shapes=["complex"], modes=["gray_noise"], bins=["0.1-0.5%"], region_masks=inside, progress=False)
    assert {r["source_id"] for r in rows} == {"brick.png", "sub/grass.png"}
    (inside / "brick.png").unlink()
    inside.rmdir()
    # the same mask as "<name>_mask.png" beside the image, and not treated as an input
    save_png(input_dir / "brick_mask.png", region)
    rows = run_protocol(input_dir, tmp_path / "out2", per_image=1, shapes=["complex"], modes=["gray_noise"], bins=["0.1-0.5%"], progress=False)
    assert {r["source_id"] for r in rows} == {"brick.png", "sub/grass.png"}
    brick = [r for r in rows if r["source_id"] == "brick.png"][0]
    assert not (load_image(tmp_path / "out2" / brick["mask_file_name"]) > 0)[region == 0].any()


def test_failures_are_reported_and_the_rest_is_written(input_dir, tmp_path):
    region = np.zeros((160, 200), np.uint8)
    region[:10, :10] = 255  # 100 px: too small for 2.5-15 %
    save_png(input_dir / "brick_mask.png", region)
    with pytest.raises(ProtocolFailures) as info:
        run_protocol(input_dir, tmp_path / "out", per_image=1, shapes=["spattered"], modes=["transparent"], bins=["0.1-0.5%", "2.5-15%"], progress=False)
    assert all("allowed pixels" in f["error"] for f in info.value.failed)
    assert len(info.value.failed) == 1
    assert (tmp_path / "out" / "failures.jsonl").exists()
    assert len(read_metadata(tmp_path / "out")) == 3


def test_cli_runs_on_builtin_examples_and_fails_cleanly(tmp_path):
    cmd = [sys.executable, str(ROOT / "anomalyforge.py"), "synth"]
    out = subprocess.run(cmd + ["skimage:gravel", str(tmp_path / "o"), "--per-image", "1", "--shapes", "rough", "--modes", "transparent", "--no-progress"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "wrote 5 anomalies" in out.stdout
    bad = subprocess.run(cmd + [str(tmp_path / "missing"), str(tmp_path / "o2")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run(cmd + ["skimage:gravel", str(tmp_path / "o3"), "--shapes", "blob"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "unknown shape 'blob'" in bad.stderr
    helptext = subprocess.run(cmd + ["--help"], capture_output=True, text=True, cwd=ROOT).stdout
    for option in ("--per-image", "--shapes", "--modes", "--bins", "--seed", "--workers", "--region-masks", "--method", "--mix", "--config", "--preset", "--textures"):
        assert option in helptext


def test_config_file_sets_options(tmp_path, input_dir):
    config = tmp_path / "gen.yaml"
    config.write_text("per_image: 1\nshapes: [elongated]\nmodes: [transparent_noise]\nbins: ['0.5-1.5%']\nseed: 4\n")
    cmd = [sys.executable, str(ROOT / "anomalyforge.py"), "synth", str(input_dir), str(tmp_path / "o"), "--config", str(config), "--no-progress"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rows = read_metadata(tmp_path / "o")
    assert len(rows) == 2 and {r["shape"] for r in rows} == {"elongated"} and {r["size_bin"] for r in rows} == {"0.5-1.5%"}
    config.write_text("per_image: 1\ncolour: red\n")
    cmd[4] = str(tmp_path / "o4")
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "unknown option(s) colour" in out.stderr


# ---------------------------------------------------------------------- odd image files
def _png16_rgb(path: Path) -> np.ndarray:
    arr = (np.random.default_rng(0).random((40, 50, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(path), cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    return arr


def test_loader_keeps_16_bit_and_converts_palette_and_rgba(tmp_path):
    from PIL import Image

    arr16 = _png16_rgb(tmp_path / "deep.png")
    assert np.array_equal(load_image(tmp_path / "deep.png"), arr16)
    gray16 = (np.arange(60 * 30, dtype=np.uint16).reshape(30, 60) * 30)
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    assert np.array_equal(load_image(tmp_path / "gray16.png"), gray16)
    pal = Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)).convert("P")
    pal.save(tmp_path / "pal.png")
    assert load_image(tmp_path / "pal.png").shape == (20, 30, 3)
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 3] = 77
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png")[..., 3].max() == 77


def test_loader_rejects_corrupt_empty_and_huge_files(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(InvalidImageError, match="broken.png"):
        load_image(tmp_path / "broken.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InvalidImageError, match="empty"):
        load_image(tmp_path / "empty.png")
    data = cv2.imencode(".png", np.zeros((300, 400), np.uint8))[1].tobytes()
    with pytest.raises(InvalidImageError, match="decompression-bomb"):
        decode_image(data, "big.png", max_pixels=100_000)


def test_protocol_handles_16_bit_inputs_end_to_end(tmp_path):
    arr16 = _png16_rgb(tmp_path / "in" / "deep.png") if (tmp_path / "in").mkdir() is None else None
    rows = run_protocol(tmp_path / "in", tmp_path / "out", per_image=1, shapes=["spattered"], modes=["transparent"], bins=["0.5-1.5%", "2.5-15%"], progress=False)
    for row in rows:
        out = load_image(tmp_path / "out" / row["file_name"])
        assert out.dtype == np.uint16 and out.shape == arr16.shape
        mask = load_image(tmp_path / "out" / row["mask_file_name"]) > 0
        delta = np.abs(out.astype(np.int64) - arr16).max(axis=2)
        assert not (delta[~mask] > 65535 / 255).any()


def test_png_writer_round_trips_and_does_not_depend_on_the_cached_base(brick_rgb):
    from synth import png, synthesize

    for image in (brick_rgb, brick_rgb[:, :, 0], brick_rgb.astype(np.uint16) * 257, np.dstack([brick_rgb, brick_rgb[:, :, :1]]), brick_rgb[:37, :5]):
        assert np.array_equal(decode_image(png.encode(image)), image)
    base = png.Base.of(brick_rgb)
    for b in range(5):
        a = synthesize(brick_rgb, seed=3, size_bin=b)
        with_base = png.encode(a.image, base=base)
        assert with_base == png.encode(a.image)
        assert np.array_equal(decode_image(with_base), a.image)


def test_adler32_combine_matches_zlib():
    import zlib

    from synth.png import adler32_combine

    rng = np.random.default_rng(0)
    for _ in range(100):
        a, b = rng.bytes(int(rng.integers(0, 5000))), rng.bytes(int(rng.integers(0, 70000)))
        assert adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)


def test_list_options_take_spaces_or_commas_and_give_the_same_files(tmp_path, input_dir):
    cmd = [sys.executable, str(ROOT / "anomalyforge.py"), "synth", str(input_dir)]
    common = ["--per-image", "1", "--bins", "0.5-1.5%", "--no-progress"]
    spaced = subprocess.run(cmd + [str(tmp_path / "a"), "--shapes", "rough", "complex", "--modes", "gray_noise", "mean_noise", *common],
                            capture_output=True, text=True, cwd=ROOT)
    commas = subprocess.run(cmd + [str(tmp_path / "b"), "--shapes", "rough,complex", "--modes", "gray_noise, mean_noise", *common],
                            capture_output=True, text=True, cwd=ROOT)
    assert spaced.returncode == 0 and commas.returncode == 0, spaced.stderr + commas.stderr
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert len(read_metadata(tmp_path / "a")) == 2 * 2 * 2
    mixes = [subprocess.run(cmd + [str(tmp_path / name), "--mix", *spelling, *common], capture_output=True, text=True, cwd=ROOT)
             for name, spelling in (("m1", ["cutout=1,synagen=2"]), ("m2", ["cutout=1", "synagen=2"]))]
    assert all(m.returncode == 0 for m in mixes), [m.stderr for m in mixes]
    assert _digest(tmp_path / "m1") == _digest(tmp_path / "m2")


def test_the_generation_config_is_given_once(input_dir, tmp_path):
    from synth.config import ProtocolConfig, parse_generation

    config, run = parse_generation({"per_image": 1, "shapes": "rough", "modes": ["gray_noise"], "bins": ["0.5-1.5%"], "progress": False})
    assert config == ProtocolConfig(per_image=1, shapes=("rough",), modes=("gray_noise",), bins=("0.5-1.5%",))
    rows = run_protocol(input_dir, tmp_path / "o", config, run)
    assert rows == run_protocol(input_dir, tmp_path / "o2", per_image=1, shapes=["rough"], modes=["gray_noise"], bins=["0.5-1.5%"], progress=False)
    with pytest.raises(InvalidParameterError, match="not both"):
        run_protocol(input_dir, tmp_path / "o3", config, per_image=2)
    with pytest.raises(InvalidParameterError, match="per_image must be an integer"):
        run_protocol(input_dir, tmp_path / "o4", per_image="abc")


def test_train_methods_take_the_same_list_syntax():
    from detect.training.train import parse_methods

    assert parse_methods(["cutout", "draem"]) == parse_methods("cutout,draem") == ("cutout", "draem")
    assert parse_methods(["cutout=0.5", "draem=0.5"]) == parse_methods("cutout:0.5,draem:0.5") == {"cutout": 0.5, "draem": 0.5}


def test_a_higher_min_change_gives_masks_of_visible_change_only(input_dir, tmp_path):
    """``--min-change 4``: every mask pixel changed by more than 4 levels, the measured area is the
    mask's and lies in its bin; the default keeps changes of 2 levels in the mask."""
    cmd = [sys.executable, str(ROOT / "anomalyforge.py"), "synth", str(input_dir)]
    options = ["--per-image", "1", "--shapes", "rough", "--modes", "gray_noise", "transparent", "--bins", "2.5-15%",
               "--no-progress"]
    for min_change, out in ((None, tmp_path / "default"), (4, tmp_path / "visible")):
        extra = [] if min_change is None else ["--min-change", str(min_change)]
        done = subprocess.run(cmd + [str(out), *options, *extra], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
    smallest = {}
    for name in ("default", "visible"):
        changes = []
        for row in read_metadata(tmp_path / name):
            mask = load_image(tmp_path / name / row["mask_file_name"]) > 0
            output = load_image(tmp_path / name / row["file_name"]).astype(int)
            source = load_image(input_dir / row["source_id"]).astype(int)
            change = np.abs(output - source)
            change = change.max(axis=2) if change.ndim == 3 else change
            assert row["area_fraction"] == pytest.approx(mask.mean()) and row["size_bin"] == "2.5-15%"
            assert not change[~mask].any() or change[~mask].max() <= (4 if name == "visible" else 1)
            changes.append(change[mask])
        smallest[name] = int(np.concatenate(changes).min())
    assert smallest["default"] == 2 and smallest["visible"] == 5
    assert json.loads((tmp_path / "visible" / "config.json").read_text())["config"]["min_change"] == 4
    assert "min_change" not in json.loads((tmp_path / "default" / "config.json").read_text())["config"]
