"""Building, publishing and loading versioned datasets, end to end against a Hub-compatible server.

The server (tests/hub_server.py) runs on 127.0.0.1 in a thread; huggingface_hub and datasets talk
HTTP to it through their real client code. Images are 64x64 crops of scikit-image's CC0 textures.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image

from hub_server import HubServer, hub_environment
from hub_tools.build import build_dataset, validate_build
from hub_tools.errors import PublishError, StaleParentError, ValidationError, VersionError
from hub_tools.publish import list_versions, load_version, push_build
from synth import save_png

# huggingface_hub's LFS upload passes a file object as data=, which its HTTP client deprecates
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_TestTokenThatMustNeverBeLogged1234"
GENERATION = dict(per_image=1, shapes=["rough"], modes=["gray_noise", "mean_noise"], bins=["2.5-15%"], seed=1)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The test Hub, with huggingface_hub/datasets pointed at it."""
    with hub_environment(tmp_path_factory.mktemp("hf_home"), TOKEN) as server:
        yield server


def _crops(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        image = getattr(skimage.data, name)()
        save_png(folder / f"{name}.png", image[100:164, 100:164])
    return folder


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return _crops(tmp_path_factory.mktemp("sources"), ["brick", "grass", "gravel"])


@pytest.fixture(scope="module")
def more_sources(tmp_path_factory):
    return _crops(tmp_path_factory.mktemp("more_sources"), ["brick", "grass", "gravel", "camera"])


@pytest.fixture(scope="module")
def build_v1(sources, tmp_path_factory):
    return build_dataset(sources, tmp_path_factory.mktemp("b") / "v1", progress=False, **GENERATION)


@pytest.fixture(scope="module")
def build_v2(more_sources, tmp_path_factory):
    return build_dataset(more_sources, tmp_path_factory.mktemp("b") / "v2", progress=False, **GENERATION)


@pytest.fixture(scope="module")
def published(hub, build_v1, build_v2, tmp_path_factory):
    """org/textures with v1.0.0 (3 sources) and v1.1.0 (4 sources)."""
    scores = tmp_path_factory.mktemp("scores") / "diversity.json"
    # the shape `anomalyforge diversity --output` writes: score -> value, null for n/a
    scores.write_text(json.dumps({"lpips_whole": 0.31, "lpips_absdiff": None}))
    first = push_build(build_v1.build_dir, "org/textures", "1.0.0", license="cc0-1.0", message="First release.",
                       attribution="scikit-image example textures (CC0).")
    second = push_build(build_v2.build_dir, "org/textures", "1.1.0", license="cc0-1.0",
                        message="Adds the camera image.", attribution="scikit-image example textures (CC0).",
                        diversity=scores)
    return first, second


def _rows(build_dir: Path, split: str) -> list[dict]:
    table = pa.concat_tables(pq.read_table(p) for p in sorted((build_dir / "data").glob(f"{split}-*.parquet")))
    return table.to_pylist()


def _tags(hub: HubServer, repo_id: str) -> dict[str, str]:
    return dict(hub.repo(repo_id).tags)


# --------------------------------------------------------------------------- build
def test_build_writes_schema_columns_and_loads_locally(build_v1):
    import datasets

    ds = datasets.load_dataset(str(build_v1.build_dir))
    assert set(ds) == {"test", "good"}
    test, good = ds["test"], ds["good"]
    # 3 images x 1 anomaly x 1 shape x 2 modes x 1 bin
    assert test.num_rows == 6 and good.num_rows == 3
    feats = test.features
    assert isinstance(feats["image"], datasets.Image) and feats["mask"].mode == "L"
    for column in ("method", "shape", "mode", "size_bin"):
        assert isinstance(feats[column], datasets.ClassLabel)
    assert feats["size_bin"].names == ["<2.5%", "2.5-15%", ">=15%"]
    assert feats["area_fraction"] == datasets.Value("float32")
    row = test[0]
    mask = np.asarray(row["mask"])
    assert row["image"].size == row["mask"].size == (64, 64)
    assert set(np.unique(mask)) <= {0, 255}
    assert abs(mask.astype(bool).mean() - row["area_fraction"]) < 1e-6
    assert feats["method"].int2str(row["method"]) == "synagen"
    assert feats["shape"].int2str(row["shape"]) == "rough"
    assert sorted(good["source_id"]) == ["brick.png", "grass.png", "gravel.png"]
    assert all(not np.asarray(m).any() for m in good["mask"])
    assert set(good["method"]) == {None}


def test_build_rows_are_the_generated_files(build_v1):
    generated = build_v1.build_dir / "generated"
    for row in _rows(build_v1.build_dir, "test"):
        assert row["image"]["bytes"] == (generated / row["image"]["path"]).read_bytes()
        assert row["mask"]["bytes"] == (generated / row["mask"]["path"]).read_bytes()


def test_same_inputs_and_seed_give_byte_identical_shards(sources, build_v1, tmp_path):
    again = build_dataset(sources, tmp_path / "again", progress=False, **GENERATION)
    shards = sorted(p.name for p in (build_v1.build_dir / "data").glob("*.parquet"))
    assert shards == sorted(p.name for p in (again.build_dir / "data").glob("*.parquet"))
    for name in shards:
        assert (build_v1.build_dir / "data" / name).read_bytes() == (again.build_dir / "data" / name).read_bytes()
    other = build_dataset(sources, tmp_path / "other", progress=False, **{**GENERATION, "seed": 2})
    assert (other.build_dir / "data" / shards[-1]).read_bytes() != (build_v1.build_dir / "data" / shards[-1]).read_bytes()


def test_interrupted_shard_writing_resumes_with_identical_output(build_v1, sources, tmp_path):
    # an imagefolder whose last image cannot be decoded stops the build halfway (as a crash would)
    folder = tmp_path / "generated"
    shutil.copytree(build_v1.build_dir / "generated", folder)
    last = sorted((folder / "images").iterdir())[-1]
    saved = last.read_bytes()
    last.write_bytes(b"not a png")
    out = tmp_path / "build"
    with pytest.raises(ValidationError, match="cannot read the image header"):
        build_dataset(folder, out, sources_dir=sources, shard_bytes=1, progress=False)
    finished = sorted((out / "data" / ".partial").glob("test-*.parquet"))
    assert len(finished) == 5  # one row per shard: the five rows before the missing one
    stamps = {p.name: p.stat().st_mtime_ns for p in finished}
    last.write_bytes(saved)
    result = build_dataset(folder, out, sources_dir=sources, shard_bytes=1, progress=False)
    assert result.counts == {"test": 6, "good": 3}
    # the finished shards were kept, not rewritten
    for number, name in enumerate(sorted(stamps)):
        final = out / "data" / f"test-{number:05d}-of-00006.parquet"
        assert final.stat().st_mtime_ns == stamps[name]
    fresh = build_dataset(folder, tmp_path / "fresh", sources_dir=sources, shard_bytes=1, progress=False)
    for path in sorted((fresh.build_dir / "data").glob("*.parquet")):
        assert path.read_bytes() == (out / "data" / path.name).read_bytes()


def test_build_refuses_a_mask_whose_size_differs_from_its_image(build_v1, sources, tmp_path):
    folder = tmp_path / "generated"
    shutil.copytree(build_v1.build_dir / "generated", folder)
    mask = sorted((folder / "masks").iterdir())[0]
    save_png(mask, np.zeros((32, 64), np.uint8))
    with pytest.raises(ValidationError, match="mask is 64x32 but its image is 64x64"):
        build_dataset(folder, tmp_path / "build", sources_dir=sources, progress=False)


def test_diff_column_is_the_absolute_change_and_matches_the_mask(build_v1, sources, tmp_path):
    import datasets

    result = build_dataset(build_v1.build_dir / "generated", tmp_path / "b", sources_dir=sources,
                           include_diff=True, progress=False)
    ds = datasets.load_dataset(str(result.build_dir))
    assert ds["test"].features["diff"] == datasets.Image(mode="L")
    for row in ds["test"]:
        source = np.asarray(Image.open(sources / row["source_id"]), dtype=np.int16)
        expected = np.abs(np.asarray(row["image"], dtype=np.int16) - source)
        diff = np.asarray(row["diff"])
        assert np.array_equal(diff, expected)
        # the mask holds exactly the pixels that changed by more than 1/255
        assert np.array_equal(diff >= 2, np.asarray(row["mask"]) > 0)
    assert all(not np.asarray(d).any() for d in ds["good"]["diff"])


def test_region_masks_beside_images_restrict_anomalies_and_stay_out_of_good(tmp_path):
    import datasets

    folder = _crops(tmp_path / "in", ["brick", "gravel"])
    allowed = np.zeros((64, 64), np.uint8)
    allowed[:, :32] = 255  # left half only
    save_png(folder / "brick_mask.png", allowed)
    result = build_dataset(folder, tmp_path / "b", progress=False, **{**GENERATION, "bins": ["0.5-1.5%"]})
    ds = datasets.load_dataset(str(result.build_dir))
    assert sorted(ds["good"]["source_id"]) == ["brick.png", "gravel.png"]
    brick = [np.asarray(r["mask"]) for r in ds["test"] if r["source_id"] == "brick.png"]
    assert brick and all(m.any() and not m[:, 32:].any() for m in brick)


def _rewrite_shard(build_dir: Path, split: str, change) -> None:
    path = sorted((build_dir / "data").glob(f"{split}-*.parquet"))[0]
    table = pq.read_table(path)
    pq.write_table(change(table), path)


def test_validation_refuses_a_published_mask_of_the_wrong_size(build_v1, tmp_path):
    build = tmp_path / "b"
    shutil.copytree(build_v1.build_dir, build)

    def shrink_first_mask(table):
        masks = table.column("mask").to_pylist()
        buf = io.BytesIO()
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(buf, format="PNG")
        masks[0] = {"bytes": buf.getvalue(), "path": None}
        index = table.schema.get_field_index("mask")
        return table.set_column(index, table.schema.field("mask"), pa.array(masks, table.schema.field("mask").type))

    _rewrite_shard(build, "test", shrink_first_mask)
    with pytest.raises(ValidationError, match="mask is 10x10 but the image is 64x64"):
        validate_build(build)


def test_validation_refuses_an_empty_split(build_v1, tmp_path):
    build = tmp_path / "b"
    shutil.copytree(build_v1.build_dir, build)
    _rewrite_shard(build, "good", lambda table: table.slice(0, 0))
    with pytest.raises(ValidationError, match="split 'good' is empty"):
        validate_build(build)


# --------------------------------------------------------------------------- publish
def test_each_version_is_one_commit_and_a_tag_on_it(hub, published):
    first, second = published
    repo = hub.repo("org/textures")
    assert repo.tags == {"v1.0.0": first.commit, "v1.1.0": second.commit}
    assert repo.branches["main"] == second.commit
    assert repo.commits[second.commit].parent == first.commit
    # the new version replaced the data files of the old one
    files = repo.commits[second.commit].files
    assert sorted(p for p in files if p.startswith("data/")) == [
        "data/good-00000-of-00001.parquet", "data/test-00000-of-00001.parquet"]
    assert files["data/test-00000-of-00001.parquet"].lfs_oid is not None  # went through LFS


def test_load_dataset_at_each_tag_returns_that_versions_rows(hub, published, build_v1, build_v2):
    import datasets

    for tag, build in (("v1.0.0", build_v1), ("v1.1.0", build_v2)):
        ds = datasets.load_dataset("org/textures", revision=tag)
        local = datasets.load_dataset(str(build.build_dir))
        assert {s: ds[s].num_rows for s in ds} == build.counts
        assert ds["test"].features == local["test"].features
        expected = _rows(build.build_dir, "test")
        got = ds["test"].cast_column("image", datasets.Image(decode=False))
        assert [r["image"]["bytes"] for r in got] == [r["image"]["bytes"] for r in expected]
        assert ds["test"]["seed"] == [r["seed"] for r in expected]


def test_load_version_helper_online_and_offline(hub, published, build_v1):
    online = load_version("org/textures", "1.0.0")
    assert online["test"].num_rows == 6
    # offline reads the pinned tag from the cache, not the newest cached version
    offline = load_version("org/textures", "v1.0.0", offline=True)
    assert {s: offline[s].num_rows for s in offline} == {"test": 6, "good": 3}
    assert offline["test"].features == online["test"].features
    load_version("org/textures", "1.1.0")
    assert load_version("org/textures", "1.0.0", offline=True)["test"].num_rows == 6
    with pytest.raises(PublishError, match="not in the local cache"):
        load_version("org/textures", "9.9.9", offline=True)


def test_versions_lists_dates_and_rows(hub, published):
    found = list_versions("org/textures")
    assert [v.tag for v in found] == ["v1.0.0", "v1.1.0"]
    assert [v.rows for v in found] == [{"test": 6, "good": 3}, {"test": 8, "good": 4}]
    assert all(v.date and v.date.startswith("20") for v in found)


def test_existing_or_lower_version_is_refused(hub, published, build_v2):
    commits_before = len(hub.repo("org/textures").commits)
    with pytest.raises(VersionError, match="already has version v1.0.0"):
        push_build(build_v2.build_dir, "org/textures", "1.0.0")
    with pytest.raises(VersionError, match="not above the latest published version v1.1.0"):
        push_build(build_v2.build_dir, "org/textures", "1.0.9")
    with pytest.raises(VersionError, match="MAJOR.MINOR.PATCH"):
        push_build(build_v2.build_dir, "org/textures", "1.2")
    assert len(hub.repo("org/textures").commits) == commits_before
    assert set(_tags(hub, "org/textures")) == {"v1.0.0", "v1.1.0"}


def test_card_yaml_validates_and_changelog_has_both_versions(hub, published, build_v2):
    import datasets
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard, hf_hub_download

    card = DatasetCard.load(hf_hub_download("org/textures", "README.md", repo_type="dataset", revision="v1.1.0"))
    card.validate(repo_type="dataset")  # the Hub's YAML check (server endpoint)
    assert card.data.license == "cc0-1.0"
    assert card.data.size_categories == ["n<1K"]
    assert "image-segmentation" in card.data.task_categories
    assert card.data.configs[0]["data_files"] == [{"split": "test", "path": "data/test-*"},
                                                  {"split": "good", "path": "data/good-*"}]
    infos = DatasetInfosDict.from_dataset_card_data(card.data)
    loaded = datasets.load_dataset(str(build_v2.build_dir))
    assert infos["default"].features == loaded["test"].features
    text = card.text
    assert "### v1.1.0" in text and "### v1.0.0" in text
    assert text.index("### v1.1.0") < text.index("### v1.0.0")
    assert "Adds the camera image." in text and "First release." in text
    assert "scikit-image example textures (CC0)." in text
    assert "| group | lpips_whole | lpips_absdiff |" in text and "| all | 0.31 | n/a |" in text
    for example in build_v2.info["examples"]:
        assert f"]({example['image']})" in text
        assert hf_hub_download("org/textures", example["mask"], repo_type="dataset", revision="v1.1.0")
    old = DatasetCard.load(hf_hub_download("org/textures", "README.md", repo_type="dataset", revision="v1.0.0"))
    assert "### v1.1.0" not in old.text and "### v1.0.0" in old.text


def test_invalid_build_is_not_pushed(hub, build_v1, tmp_path):
    build = tmp_path / "b"
    shutil.copytree(build_v1.build_dir, build)
    _rewrite_shard(build, "test", lambda table: table.slice(0, 0))
    with pytest.raises(ValidationError, match="split 'test' is empty"):
        push_build(build, "org/invalid", "1.0.0")
    assert ("dataset", "org/invalid") not in hub.state.repos


# --------------------------------------------------------------------------- failures
def _assert_untagged(hub: HubServer, repo_id: str, head: str | None) -> None:
    repo = hub.repo(repo_id)
    assert repo.tags == {}
    if head is not None:
        assert repo.branches["main"] == head


def test_commit_lost_on_the_network_leaves_no_version_and_retry_finishes(hub, build_v1):
    hub.fail("POST", r"/api/datasets/org/dropped/commit/main$", drop=True)
    with pytest.raises(PublishError, match="no version was created: run the same push again"):
        push_build(build_v1.build_dir, "org/dropped", "1.0.0")
    repo = hub.repo("org/dropped")
    initial = repo.branches["main"]
    assert len(repo.commits) == 1  # only the repo's initial commit
    _assert_untagged(hub, "org/dropped", initial)
    result = push_build(build_v1.build_dir, "org/dropped", "1.0.0")
    assert hub.repo("org/dropped").tags == {"v1.0.0": result.commit}


def test_failed_lfs_upload_leaves_no_version_and_retry_finishes(hub, build_v1):
    hub.fail("PUT", r"^/_lfs/datasets/org/lfs-failure/", status=403)
    with pytest.raises(PublishError, match="no version was created"):
        push_build(build_v1.build_dir, "org/lfs-failure", "1.0.0")
    _assert_untagged(hub, "org/lfs-failure", None)
    assert len(hub.repo("org/lfs-failure").commits) == 1
    result = push_build(build_v1.build_dir, "org/lfs-failure", "1.0.0")
    assert hub.repo("org/lfs-failure").tags == {"v1.0.0": result.commit}


def test_failed_tag_creation_is_finished_by_a_retry_on_the_same_commit(hub, build_v1):
    hub.fail("POST", r"/api/datasets/org/tagless/tag/", status=500)
    with pytest.raises(PublishError, match="committed .* but the tag could not be created"):
        push_build(build_v1.build_dir, "org/tagless", "1.0.0")
    repo = hub.repo("org/tagless")
    committed = repo.branches["main"]
    assert repo.tags == {}
    result = push_build(build_v1.build_dir, "org/tagless", "1.0.0")
    assert not result.created_commit
    assert repo.tags == {"v1.0.0": committed}
    assert repo.branches["main"] == committed


def test_stale_parent_commit_is_detected(hub, build_v1):
    repo_id = "org/concurrent"
    # another client commits while this push is preparing its commit
    hub.fail("POST", rf"/api/datasets/{repo_id}/commit/main$",
             before=lambda: hub.commit_files(repo_id, {"NOTES.md": b"someone else\n"}))
    with pytest.raises(StaleParentError, match="changed while v1.0.0 was being pushed"):
        push_build(build_v1.build_dir, repo_id, "1.0.0")
    repo = hub.repo(repo_id)
    assert repo.tags == {}
    assert "data/test-00000-of-00001.parquet" not in repo.commits[repo.branches["main"]].files
    result = push_build(build_v1.build_dir, repo_id, "1.0.0")
    assert "NOTES.md" in repo.commits[result.commit].files  # built on top of the other commit


# --------------------------------------------------------------------------- command line
def _cli(hub: HubServer, *args: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(home), HF_HUB_DISABLE_XET="1",
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "anomalyforge.py"), "hub", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)


def test_cli_push_and_versions_never_show_the_token(hub, build_v1, tmp_path):
    home = tmp_path / "home"
    hub.fail("POST", r"/api/datasets/org/cli/commit/main$", drop=True)
    failed = _cli(hub, "push", str(build_v1.build_dir), "--repo", "org/cli", "--version", "1.0.0", "--private",
                  "--license", "cc0-1.0", home=home)
    assert failed.returncode == 1, failed.stderr
    assert "run the same push again" in failed.stderr
    done = _cli(hub, "push", str(build_v1.build_dir), "--repo", "org/cli", "--version", "1.0.0",
                "--license", "cc0-1.0", "--message", "first", home=home)
    assert done.returncode == 0, done.stderr
    assert "v1.0.0" in done.stdout
    # the same build again: the version exists with exactly this content, nothing to do
    again = _cli(hub, "push", str(build_v1.build_dir), "--repo", "org/cli", "--version", "1.0.0", home=home)
    assert again.returncode == 0 and "already published with this build" in again.stdout, again.stderr
    versions = _cli(hub, "versions", "org/cli", home=home)
    assert versions.returncode == 0, versions.stderr
    assert "v1.0.0" in versions.stdout and "6" in versions.stdout
    repo = hub.repo("org/cli")
    assert repo.private
    commit = repo.commits[repo.tags["v1.0.0"]]
    published = [commit.files["README.md"].content, commit.files["build.json"].content]
    for text in [failed.stdout, failed.stderr, done.stdout, done.stderr, again.stdout, versions.stdout,
                 versions.stderr, *(p.decode() for p in published)]:
        assert TOKEN not in text


def test_cli_build_and_load_in_process(hub, published, sources, tmp_path, capsys):
    from anomalyforge import main

    out = tmp_path / "build"
    code = main(["hub", "build", str(sources), str(out), "--per-image", "1", "--shapes", "rough",
                 "--modes", "gray_noise", "--bins", "2.5-15%", "--seed", "1", "--no-progress"])
    assert code == 0
    info = json.loads((out / "build.json").read_text())
    assert info["counts"] == {"test": 3, "good": 3}
    assert info["generation"]["per_image"] == 1 and info["generation"]["bins"] == ["2.5-15%"]
    assert main(["hub", "load", "org/textures", "--version", "1.0.0"]) == 0
    printed = capsys.readouterr().out
    assert "num_rows: 6" in printed and "num_rows: 3" in printed
    bad = tmp_path / "empty"
    bad.mkdir()
    assert main(["hub", "build", str(bad), str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "no images" in capsys.readouterr().err
