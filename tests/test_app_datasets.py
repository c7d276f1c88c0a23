"""The Space's Datasets tab: published versions on a local Hub-compatible server, read with the
visitor's credentials only; and the dataset made in the Generate tab, without any Hub."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
import gradio as gr  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from space.config import SpaceConfig  # noqa: E402
from space.handlers import Space  # noqa: E402
from space.storage import WorkArea  # noqa: E402
from hub_server import hub_environment  # noqa: E402
from hub_tools.build import build_dataset  # noqa: E402
from hub_tools.publish import push_build  # noqa: E402
from synth import save_png  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

#: the Space's own token: it can read the private repo, and must never be used for a visitor
TOKEN = "hf_AppDatasetsTabTestToken"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The test Hub, with huggingface_hub/datasets pointed at it and HF_TOKEN set in this process
    (the app's environment, as on a Space with a token secret)."""
    with hub_environment(tmp_path_factory.mktemp("hf_home"), TOKEN) as server:
        yield server


def _publish(repo: str, tmp_path_factory, private: bool = False) -> str:
    from huggingface_hub import HfApi

    if private:
        HfApi(token=TOKEN).create_repo(repo, repo_type="dataset", private=True)
    sources = tmp_path_factory.mktemp("sources")
    for name in ("brick", "gravel"):
        save_png(sources / f"{name}.png", getattr(skimage.data, name)()[100:164, 100:164])
    build = build_dataset(sources, tmp_path_factory.mktemp("build") / "v1", progress=False, per_image=1,
                          shapes=["rough"], modes=["gray_noise"], bins=["2.5-15%"], seed=3)
    push_build(build.build_dir, repo, "1.0.0", license="cc0-1.0", message="First release.")
    return repo


@pytest.fixture(scope="module")
def published(hub, tmp_path_factory):
    """org/app-textures v1.0.0 (public): one rough/gray_noise anomaly in each of two 64x64 crops."""
    return _publish("org/app-textures", tmp_path_factory)


@pytest.fixture(scope="module")
def private(hub, tmp_path_factory):
    """org/secret-textures v1.0.0, a private repository only the Space's token can read."""
    return _publish("org/secret-textures", tmp_path_factory, private=True)


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    root = tmp_path_factory.mktemp("work")
    return Space(SpaceConfig(), WorkArea(root, budget=2**30, ttl_s=900))


@pytest.fixture(scope="module")
def client(hub, app_url):
    return Client(app_url, verbose=False)


def test_latest_version_rows_show_images_with_mask_outlines_and_named_labels(space, published):
    gallery, table, status = space.browse(published, "", 8, None)
    assert "version 1.0.0" in status and "2 of 2 rows" in status
    assert len(gallery) == 2
    overlay = np.asarray(Image.open(gallery[0][0]).convert("RGB"))
    assert ((overlay[:, :, 0] == 255) & (overlay[:, :, 1] == 0)).any()
    assert set(table["shape"]) == {"rough"} and set(table["mode"]) == {"gray_noise"}  # names, not label ids
    assert set(table["size_bin"]) == {"2.5-15%"}
    assert set(table["source_id"]) == {"brick.png", "gravel.png"}


def test_a_version_that_does_not_exist_gets_a_message(space, published):
    gallery, table, status = space.browse(published, "9.9.9", 4, None)
    assert gallery == [] and len(table) == 0
    assert "has no version 9.9.9" in status
    assert "Traceback" not in status


def test_a_visitor_cannot_read_the_spaces_private_dataset(client, private, published):
    # HF_TOKEN (which can read it) is set in the app's process; the visitor has no token
    gallery, table, status = client.predict(private, "", 8, api_name="/browse")
    assert gallery == [] and table["data"] == []
    assert "not found or private" in status
    missing_gallery, _, missing = client.predict("org/no-such-dataset", "", 8, api_name="/browse")
    assert missing_gallery == [] and "not found or private" in missing
    # the same client still reads public data
    gallery, _, status = client.predict(published, "", 8, api_name="/browse")
    assert len(gallery) == 2 and "version 1.0.0" in status


def test_a_signed_in_visitor_reads_with_their_own_token(space, private):
    own = gr.OAuthToken(token=TOKEN, scope="read-repos", expires_at=0)
    gallery, _, status = space.browse(private, "", 8, None, own)
    assert len(gallery) == 2 and "version 1.0.0" in status
    stranger = gr.OAuthToken(token="hf_SomeoneElsesTokenXYZ", scope="read-repos", expires_at=0)
    gallery, _, status = space.browse(private, "", 8, None, stranger)
    assert gallery == [] and "not found or private" in status


def test_browsing_writes_no_dataset_or_hub_cache(space, published, hub):
    import os
    from pathlib import Path

    home = Path(os.environ["HF_HOME"])  # the Hub cache and the datasets cache both live under it

    def files() -> list[tuple[str, int]]:
        return sorted((str(p), p.stat().st_size) for p in home.rglob("*") if p.is_file())

    before = files()
    gallery, _, _ = space.browse(published, "1.0.0", 1, None)
    assert len(gallery) == 1
    assert files() == before


def test_empty_name_browses_the_dataset_made_in_the_generate_tab(client, tmp_path):
    upload = tmp_path / "gravel_crop.png"
    save_png(upload, np.ascontiguousarray(skimage.data.gravel()[:160, :160]))
    # the browser session keeps the Generate tab's result; gradio_client keeps the session too
    client.predict(handle_file(str(upload)), "synagen", "rough", "gray_noise", "2.5-15%", 3, 5, None, None,
                   api_name="/generate")
    gallery, table, status = client.predict("", "", 8, api_name="/browse")
    assert "made in the Generate tab" in status and "3 of 3 rows" in status
    assert len(gallery) == 3
    assert [row[0] for row in table["data"]] == ["gravel_crop.png"] * 3
    assert {row[2] for row in table["data"]} == {"rough"}


def test_empty_name_without_a_generate_click_browses_an_example_dataset(hub, app_url):
    gallery, table, status = Client(app_url, verbose=False).predict("", "", 4, api_name="/browse")
    assert "example dataset" in status and len(gallery) == 4
    assert {row[0] for row in table["data"]} <= {"brick.png", "grass.png", "gravel.png"}
    # a version without a dataset name is not dropped in silence
    *_, status = Client(app_url, verbose=False).predict("", "1.0.0", 4, api_name="/browse")
    assert status.startswith("Version 1.0.0 is not used: versions are of a dataset on the Hub (ORG/NAME).")
