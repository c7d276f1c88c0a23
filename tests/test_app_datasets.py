"""The Space's Datasets tab against a published version on a local Hub-compatible server."""

from __future__ import annotations


import numpy as np
import pytest
import skimage.data
from PIL import Image

import app
from hub_server import HubServer
from hub_tools.build import build_dataset
from hub_tools.publish import push_build
from synth import save_png

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

TOKEN = "hf_AppDatasetsTabTestToken"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The test Hub, with huggingface_hub/datasets pointed at it (as datasets' own test fixtures do)."""
    import datasets.config
    import huggingface_hub.constants as hfc

    home = tmp_path_factory.mktemp("hf_home")
    server = HubServer(token=TOKEN)
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_TOKEN", TOKEN)
    mp.setenv("HF_HOME", str(home))
    mp.setenv("HF_ENDPOINT", server.url)
    mp.setenv("HF_HUB_DISABLE_XET", "1")
    mp.delenv("HF_HUB_OFFLINE", raising=False)
    mp.setattr(hfc, "ENDPOINT", server.url)
    mp.setattr(hfc, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    mp.setattr(hfc, "HF_HUB_DISABLE_XET", True)
    mp.setattr(hfc, "HF_HUB_OFFLINE", False)
    mp.setattr(hfc, "HF_HUB_CACHE", str(home / "hub"))
    mp.setattr(hfc, "HF_TOKEN_PATH", str(home / "token"))
    mp.setattr(datasets.config, "HF_ENDPOINT", server.url)
    mp.setattr(datasets.config, "HUB_DATASETS_URL", server.url + "/datasets/{repo_id}/resolve/{revision}/{path}")
    mp.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    mp.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    bars_were_off = are_progress_bars_disabled()
    disable_progress_bars()
    yield server
    if not bars_were_off:
        enable_progress_bars()
    mp.undo()
    server.close()


@pytest.fixture(scope="module")
def published(hub, tmp_path_factory):
    """org/app-textures v1.0.0: one rough/gray_noise anomaly in each of two 64x64 crops."""
    sources = tmp_path_factory.mktemp("sources")
    for name in ("brick", "gravel"):
        save_png(sources / f"{name}.png", getattr(skimage.data, name)()[100:164, 100:164])
    build = build_dataset(sources, tmp_path_factory.mktemp("build") / "v1", progress=False, per_image=1,
                          shapes=["rough"], modes=["gray_noise"], bins=["2.5-15%"], seed=3)
    push_build(build.build_dir, "org/app-textures", "1.0.0", license="cc0-1.0", message="First release.")
    return "org/app-textures"


def test_latest_version_rows_show_images_with_mask_outlines_and_named_labels(published):
    gallery, table, status = app.browse(published, "", 8)
    assert "version 1.0.0" in status and "2 of 2 rows" in status
    assert len(gallery) == 2
    overlay = np.asarray(Image.open(gallery[0][0]).convert("RGB"))
    assert ((overlay[:, :, 0] == 255) & (overlay[:, :, 1] == 0)).any()
    assert set(table["shape"]) == {"rough"} and set(table["mode"]) == {"gray_noise"}  # names, not label ids
    assert set(table["size_bin"]) == {"2.5-15%"}
    assert set(table["source_id"]) == {"brick.png", "gravel.png"}


def test_a_version_that_does_not_exist_gets_a_message(published):
    gallery, table, status = app.browse(published, "9.9.9", 4)
    assert gallery == [] and len(table) == 0
    assert status.startswith(f"### Could not load `{published}` 9.9.9")
    assert "Traceback" not in status
