"""The Space's Datasets tab against a published version on a local Hub-compatible server."""

from __future__ import annotations


import numpy as np
import pytest
import skimage.data
from PIL import Image

import app
from hub_server import hub_environment
from hub_tools.build import build_dataset
from hub_tools.publish import push_build
from synth import save_png

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

TOKEN = "hf_AppDatasetsTabTestToken"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The test Hub, with huggingface_hub/datasets pointed at it."""
    with hub_environment(tmp_path_factory.mktemp("hf_home"), TOKEN) as server:
        yield server


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
