"""What `anomalyforge hub` guarantees when inputs are wrong, processes die or the network breaks.

Each test runs the command line in a subprocess (the real code path, real SIGKILLs) against the
Hub-compatible server of tests/hub_server.py. Images are 64x64 crops of scikit-image's CC0 textures.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage.data

from hub_server import hub_environment
from hub_tools.build import build_dataset
from hub_tools.publish import push_build
from synth import save_png
from synth.protocol import run_protocol

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_ReliabilityTokenNeverShown0042"
GENERATION = dict(per_image=1, shapes=["rough"], modes=["gray_noise", "mean_noise"], bins=["2.5-15%"], seed=1)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with hub_environment(tmp_path_factory.mktemp("hf_home"), TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    for name in ("brick", "grass", "gravel"):
        save_png(folder / f"{name}.png", getattr(skimage.data, name)()[100:164, 100:164])
    return folder


@pytest.fixture(scope="module")
def generated(sources, tmp_path_factory) -> Path:
    """A finished `anomalyforge synth` folder of the three sources (6 anomalies)."""
    out = tmp_path_factory.mktemp("synth") / "out"
    run_protocol(sources, out, progress=False, **GENERATION)
    return out


@pytest.fixture(scope="module")
def reference(generated, sources, tmp_path_factory):
    """An uninterrupted build of ``generated``."""
    return build_dataset(generated, tmp_path_factory.mktemp("ref") / "build", sources_dir=sources, progress=False)


def _env(endpoint: str, token: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=endpoint, HF_TOKEN=token, HF_HOME=str(home), HF_HUB_DISABLE_XET="1",
               PYTHONPATH=str(ROOT))
    return env


def _hub_cli(*args: str, home: Path, endpoint: str = "http://127.0.0.1:9", token: str = TOKEN,
             extra_env: dict[str, str] | None = None, entry: list[str] | None = None) -> subprocess.CompletedProcess:
    env = _env(endpoint, token, home)
    env.update(extra_env or {})
    command = entry or [sys.executable, str(ROOT / "anomalyforge.py")]
    return subprocess.run([*command, "hub", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def _read_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines() if line.strip()]


def _write_rows(folder: Path, rows: list[dict]) -> None:
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _shard_hashes(build_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((build_dir / "data").glob("*.parquet"))}


# --------------------------------------------------------------------------- labels and files agree
def _share_image_and_mask(rows):  # what colliding output names wrote: two rows, one pair of files
    rows[1]["file_name"], rows[1]["mask_file_name"] = rows[0]["file_name"], rows[0]["mask_file_name"]


def _share_mask(rows):
    rows[1]["mask_file_name"] = rows[0]["mask_file_name"]


def _mask_is_an_image(rows):
    rows[1]["mask_file_name"] = rows[0]["file_name"]


def _repeat_a_row(rows):
    rows.append(dict(rows[0]))


@pytest.mark.parametrize("damage", [_share_image_and_mask, _share_mask, _mask_is_an_image, _repeat_a_row])
def test_build_refuses_rows_that_share_an_image_or_mask_file(generated, sources, tmp_path, damage):
    folder = _copy(generated, tmp_path / "generated")
    rows = _read_rows(folder)
    damage(rows)
    _write_rows(folder, rows)
    out = tmp_path / "build"
    result = _hub_cli("build", str(folder), str(out), "--sources", str(sources), "--no-progress", home=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "named by more than one row" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "build.json").exists()


def test_build_refuses_a_row_whose_mask_file_is_missing(generated, sources, tmp_path):
    folder = _copy(generated, tmp_path / "generated")
    (folder / _read_rows(folder)[2]["mask_file_name"]).unlink()
    result = _hub_cli("build", str(folder), str(tmp_path / "build"), "--sources", str(sources), "--no-progress",
                      home=tmp_path)
    assert result.returncode == 2 and "1 listed file(s) are missing" in result.stderr, result.stderr


def test_push_refuses_a_build_whose_rows_share_a_file(hub, reference, tmp_path):
    build = _copy(reference.build_dir, tmp_path / "build")
    shard = sorted((build / "data").glob("test-*.parquet"))[0]
    table = pq.read_table(shard)
    images = table.column("image").to_pylist()
    images[1] = images[0]
    table = table.set_column(table.schema.get_field_index("image"), table.schema.field("image"),
                             pa.array(images, type=table.schema.field("image").type))
    pq.write_table(table, shard)
    result = _hub_cli("push", str(build), "--repo", "org/shared-files", "--version", "1.0.0", home=tmp_path,
                      endpoint=hub.url)
    assert result.returncode == 2, result.stderr
    assert f"file {images[0]['path']} is also used by" in result.stderr
    assert ("dataset", "org/shared-files") not in hub.state.repos


# --------------------------------------------------------------------------- outputs never read as inputs
def test_build_refuses_an_unfinished_synth_folder(generated, tmp_path):
    # what a synth run killed before its final write leaves: images, masks, the partial log, no metadata.jsonl
    folder = _copy(generated, tmp_path / "interrupted")
    (folder / "metadata.jsonl").unlink()
    out = tmp_path / "build"
    result = _hub_cli("build", str(folder), str(out), "--per-image", "1", "--no-progress", home=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unfinished `anomalyforge synth` output" in result.stderr
    assert not (out / "generated").exists() and not (out / "data").exists()


def test_build_refuses_a_synth_folder_with_failed_outputs(generated, sources, tmp_path):
    folder = _copy(generated, tmp_path / "failed")
    (folder / "failures.jsonl").write_text(json.dumps({"source_id": "brick.png", "error": "region too small",
                                                       "failed": True}) + "\n")
    result = _hub_cli("build", str(folder), str(tmp_path / "build"), "--sources", str(sources), "--no-progress",
                      home=tmp_path)
    assert result.returncode == 2 and "1 output(s) failed" in result.stderr, result.stderr


def test_build_refuses_a_build_folder_as_input_and_a_build_folder_inside_the_input(reference, sources, tmp_path):
    again = _hub_cli("build", str(reference.build_dir), str(tmp_path / "b2"), "--no-progress", home=tmp_path)
    assert again.returncode == 2 and "is a build folder" in again.stderr, again.stderr
    images = _copy(sources, tmp_path / "images")
    inside = _hub_cli("build", str(images), str(images / "build"), "--per-image", "1", "--no-progress", home=tmp_path)
    assert inside.returncode == 2 and "lies inside the input folder" in inside.stderr, inside.stderr
    assert not (images / "build").exists()


# --------------------------------------------------------------------------- kill and resume
# Runs `anomalyforge hub` and SIGKILLs itself right after the build has written the file whose path
# ends with KILL_AFTER_WRITING (every file a build finishes goes through os.replace or shutil.copyfile).
KILLER = """
import os, shutil, signal, sys
point = os.environ["KILL_AFTER_WRITING"]
real_replace, real_copyfile = os.replace, shutil.copyfile
def _maybe_die(dst):
    if os.fspath(dst).replace(os.sep, "/").endswith(point):
        os.kill(os.getpid(), signal.SIGKILL)
def replace(src, dst, **kwargs):
    real_replace(src, dst, **kwargs)
    _maybe_die(dst)
def copyfile(src, dst, **kwargs):
    result = real_copyfile(src, dst, **kwargs)
    _maybe_die(dst)
    return result
os.replace, shutil.copyfile = replace, copyfile
from anomalyforge import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("point", [
    "data/.partial/test-00000.parquet",  # a shard finished, the split not
    "data/test-00000-of-00001.parquet",  # the first split renamed to its final names
    "card/examples/01-mask.png",  # examples half copied
    "README.md",  # the card written, build.json not
    "build.json",  # everything written
])
def test_a_build_killed_at_any_point_is_finished_by_rerunning_it(hub, generated, sources, reference, tmp_path, point):
    out = tmp_path / "build"
    args = ("build", str(generated), str(out), "--sources", str(sources), "--no-progress")
    killed = _hub_cli(*args, home=tmp_path, extra_env={"KILL_AFTER_WRITING": point},
                      entry=[sys.executable, "-c", KILLER])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    rerun = _hub_cli(*args, home=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert _shard_hashes(out) == _shard_hashes(reference.build_dir)
    assert (out / "README.md").read_text() == (reference.build_dir / "README.md").read_text()
    for example in json.loads((out / "build.json").read_text())["examples"]:
        assert (out / example["image"]).read_bytes() == (reference.build_dir / example["image"]).read_bytes()
    repo_id = "org/killed-" + hashlib.sha1(point.encode()).hexdigest()[:8]
    result = push_build(out, repo_id, "1.0.0")
    assert hub.repo(repo_id).tags == {"v1.0.0": result.commit}


# --------------------------------------------------------------------------- publishing
def test_private_push_into_an_existing_public_repo_is_refused(hub, reference, tmp_path):
    repo_id = "org/public"
    push_build(reference.build_dir, repo_id, "1.0.0")
    result = _hub_cli("push", str(reference.build_dir), "--repo", repo_id, "--version", "1.1.0", "--private",
                      home=tmp_path, endpoint=hub.url)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "exists and is public" in result.stderr and "nothing was pushed" in result.stderr
    repo = hub.repo(repo_id)
    assert not repo.private and set(repo.tags) == {"v1.0.0"}


def test_a_tag_whose_answer_was_lost_is_reported_as_published_on_rerun(hub, reference, tmp_path):
    repo_id = "org/lost-answer"
    hub.fail("POST", rf"/api/datasets/{repo_id}/tag/", lose_answer=True, times=1)
    args = ("push", str(reference.build_dir), "--repo", repo_id, "--version", "1.0.0")
    first = _hub_cli(*args, home=tmp_path, endpoint=hub.url)
    assert first.returncode == 1, first.stderr
    repo = hub.repo(repo_id)
    assert set(repo.tags) == {"v1.0.0"}  # the tag was created; only its answer was lost
    commits = len(repo.commits)
    rerun = _hub_cli(*args, home=tmp_path, endpoint=hub.url)
    assert rerun.returncode == 0, rerun.stderr
    assert "already published with this build" in rerun.stdout
    assert len(repo.commits) == commits and set(repo.tags) == {"v1.0.0"}


SECRET = "corp-proxy-Secret-7f3a9c"  # not of the hf_... form


@pytest.mark.parametrize("command, request_path", [
    (["push", "{build}", "--repo", "org/echo", "--version", "1.0.0"], r"/api/datasets/org/echo/refs"),
    (["versions", "org/echo"], r"/api/datasets/org/echo/refs"),
    (["load", "org/echo", "--version", "1.0.0"], r"/api/datasets/org/echo"),
])
def test_no_hub_command_prints_the_token_even_when_the_server_echoes_it(hub, reference, tmp_path, command,
                                                                          request_path):
    hub.fail("GET", request_path, status=401, echo_auth=True, times=10)
    try:
        args = [a.format(build=reference.build_dir) for a in command]
        result = _hub_cli(*args, home=tmp_path, endpoint=hub.url, token=SECRET)
    finally:
        hub.state.failures.clear()
    assert result.returncode != 0
    assert "rejected credentials" in result.stderr  # the echo reached the message...
    assert SECRET not in result.stdout + result.stderr  # ...without the token


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("command", [
    ["versions", "org/none"],
    ["load", "org/none", "--version", "1.0.0"],
    ["push", "{build}", "--repo", "org/none", "--version", "1.0.0"],
])
def test_an_unreachable_hub_gives_one_clear_line_for_every_command(reference, tmp_path, command):
    args = [a.format(build=reference.build_dir) for a in command]
    result = _hub_cli(*args, home=tmp_path, endpoint=_closed_port())
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("anomalyforge hub: error: ") and "org/none" in result.stderr



# --------------------------------------------------------------------------- property: rows <-> files 1:1
# name parts that collide under naive flattening: case, spaces vs underscores, sub-folders vs "__",
# extensions, non-ASCII letters
_PARTS = ["a", "A", "x y", "x_y", "sub__b", "é", "ü", "日本", "b.c"]
_FOLDERS = ["", "", "sub/", "Sub/", "sub/deeper/", "dir with space/"]
_SUFFIXES = [".png", ".PNG", ".jpg", ".jpeg", ".bmp"]


def _random_tree(rng, folder: Path, textures: list) -> list[str]:
    names: set[str] = set()
    while len(names) < rng.randint(3, 5):
        names.add(rng.choice(_FOLDERS) + rng.choice(_PARTS) + rng.choice(_SUFFIXES))
    for number, name in enumerate(sorted(names)):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        crop = textures[number % len(textures)][number * 7:number * 7 + 48, :48]
        from PIL import Image

        Image.fromarray(crop).save(path, format={".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG",
                                                 ".bmp": "BMP"}[path.suffix.lower()])
    return sorted(names)


@pytest.mark.parametrize("tree_seed", [0, 1, 2, 3, 4])
def test_build_rows_and_files_are_one_to_one_for_randomly_named_trees(tmp_path, tree_seed):
    import random

    rng = random.Random(tree_seed)
    textures = [getattr(skimage.data, n)() for n in ("brick", "grass", "gravel")]
    inputs = tmp_path / "in"
    names = _random_tree(rng, inputs, textures)
    result = build_dataset(inputs, tmp_path / "build", progress=False, per_image=1, shapes=["rough"],
                           modes=["gray_noise"], bins=["2.5-15%"], seed=tree_seed)
    generated = result.build_dir / "generated"
    meta = {r["file_name"]: r for r in _read_rows(generated)}
    assert len(meta) == len(_read_rows(generated)) == len(names)
    files = {p.relative_to(generated).as_posix() for p in (generated / "images").rglob("*") if p.is_file()}
    masks = {p.relative_to(generated).as_posix() for p in (generated / "masks").rglob("*") if p.is_file()}
    assert files == set(meta) and masks == {r["mask_file_name"] for r in meta.values()}

    test_rows = pq.read_table(result.build_dir / "data" / "test-00000-of-00001.parquet").to_pylist()
    assert sorted(r["image"]["path"] for r in test_rows) == sorted(meta)
    for row in test_rows:
        expected = meta[row["image"]["path"]]
        assert row["source_id"] == expected["source_id"]
        assert row["mask"]["path"] == expected["mask_file_name"]
        assert row["image"]["bytes"] == (generated / expected["file_name"]).read_bytes()
        assert row["mask"]["bytes"] == (generated / expected["mask_file_name"]).read_bytes()
    good_rows = pq.read_table(result.build_dir / "data" / "good-00000-of-00001.parquet").to_pylist()
    assert [r["source_id"] for r in good_rows] == names
    for row in good_rows:
        assert row["image"]["bytes"] == (inputs / row["source_id"]).read_bytes()
