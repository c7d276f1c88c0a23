"""`anomalyforge diversity --revision` reads exactly the published version from a Hub-compatible server."""

from __future__ import annotations

import json

import pytest
from conftest import torch_home_with_alexnet
import skimage.data
import torch

from detect.quality.anomaly_rows import load_anomaly_rows
from detect.quality.diversity import SCORE_NAMES, LpipsScorer, diversity, main
from hub_server import hub_environment
from hub_tools.build import build_dataset
from hub_tools.publish import push_build
from synth import save_png

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

TOKEN = "hf_DiversityRevisionTestToken"
REPO = "org/diversity-textures"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Test Hub with huggingface_hub/datasets pointed at it; TORCH_HOME with a seeded AlexNet file."""
    home = tmp_path_factory.mktemp("hf_home")
    torch_home = tmp_path_factory.mktemp("torch_home")
    torch_home_with_alexnet(torch_home, seed=99)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: avoid OpenMP spin contention
    with pytest.MonkeyPatch.context() as mp, hub_environment(home, TOKEN) as server:
        mp.setenv("TORCH_HOME", str(torch_home))
        yield server
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def versions(env, tmp_path_factory):
    """v1.0.0 (seed 3, with diff images) and v1.1.0 (seed 4, without): local build folders by tag."""
    sources = tmp_path_factory.mktemp("sources")
    for name in ("brick", "grass", "gravel"):
        save_png(sources / f"{name}.png", getattr(skimage.data, name)()[100:196, 100:196])
    builds = {}
    for version, seed, diff in (("1.0.0", 3, True), ("1.1.0", 4, False)):
        build = build_dataset(sources, tmp_path_factory.mktemp("build") / version, progress=False, per_image=1,
                              shapes=["rough"], modes=["gray_noise"], bins=["2.5-15%"], seed=seed, include_diff=diff)
        push_build(build.build_dir, REPO, version, license="cc0-1.0", message=f"Release {version}.")
        builds[f"v{version}"] = build.build_dir
    return builds


def scores_of(dataset: str, tmp_path, *extra: str) -> dict:
    out = tmp_path / "scores.json"
    assert main(["--dataset", dataset, "--device", "cpu", "--output", str(out), *extra]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def local_scores(build_dir, scorer: LpipsScorer) -> dict:
    rows = load_anomaly_rows(build_dir)
    return diversity(rows.images, rows.masks, diffs=rows.diffs, originals=rows.originals, scorer=scorer).scores()


def test_each_revision_scores_like_its_own_build(versions, tmp_path):
    first = scores_of(REPO, tmp_path, "--revision", "v1.0.0")
    second = scores_of(REPO, tmp_path, "--revision", "v1.1.0")
    scorer = LpipsScorer("alex", device="cpu")
    assert first == pytest.approx(local_scores(versions["v1.0.0"], scorer), rel=1e-6)
    assert second == pytest.approx(local_scores(versions["v1.1.0"], scorer), rel=1e-6)
    assert first != second
    # v1.0.0 carries a diff column, v1.1.0 has its sources in the good split: both give all four scores
    assert set(first) == set(second) == set(SCORE_NAMES)
    assert all(v > 0 for v in (*first.values(), *second.values()))


def test_unknown_revision_is_reported(versions, tmp_path, capsys):
    assert main(["--dataset", REPO, "--revision", "v9.9.9"]) == 2
    assert "v9.9.9" in capsys.readouterr().err
