"""Shared fixtures: real CC0 textures from scikit-image, in the layouts users bring."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

import cv2
import numpy as np
import pytest
import skimage.data

# The test run neither reads nor fills the user's Hugging Face caches: datasets keys its cache of
# a local folder by the folder's name, so results of an earlier run could leak in. Set before any
# test module imports datasets or huggingface_hub (they read it at import time); subprocesses
# inherit it.
_HF_HOME = tempfile.mkdtemp(prefix="anomalyforge-tests-hf-")
os.environ["HF_HOME"] = _HF_HOME
for _variable in ("HF_DATASETS_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
    os.environ.pop(_variable, None)


# Each test process (pytest-xdist runs several) serves the app from its own gradio cache: uploads
# of the same bytes share one cached path, and a server closing in one process would delete the
# files a server in another process is still reading.
_GRADIO_TEMP = tempfile.mkdtemp(prefix="anomalyforge-tests-gradio-")
os.environ["GRADIO_TEMP_DIR"] = _GRADIO_TEMP


def pytest_unconfigure(config):
    shutil.rmtree(_HF_HOME, ignore_errors=True)
    shutil.rmtree(_GRADIO_TEMP, ignore_errors=True)


def _rgb(name: str) -> np.ndarray:
    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


@pytest.fixture(scope="session")
def brick_rgb() -> np.ndarray:
    """512x512 RGB uint8 brick wall (brick is gray in scikit-image; tinted to make it colour)."""
    gray = skimage.data.brick().astype(np.float32)
    tint = np.stack([gray * 1.0, gray * 0.8, gray * 0.6], axis=2)
    return np.clip(tint, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def textures() -> dict[str, np.ndarray]:
    """256x256 uint8 gray crops of brick, grass and gravel."""
    return {name: np.ascontiguousarray(getattr(skimage.data, name)()[:256, :256]) for name in ("brick", "grass", "gravel")}


@pytest.fixture(scope="session")
def astronaut_256() -> np.ndarray:
    return cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def app_url():
    """The Space (app.py) served on a free loopback port for the tests of one module."""
    import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build_demo()
    app.launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Use with ``pytest.mark.usefixtures``: on 2 shared cores one intra-op torch thread avoids
    OpenMP spin contention between torch and the other work of the test run."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torch_home_with_alexnet(home, seed: int):
    """Make ``home`` a TORCH_HOME whose hub cache holds a seeded random AlexNet checkpoint under
    torchvision's file name (the real weights cannot be downloaded here); return the checkpoints folder."""
    import torch
    import torchvision

    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), checkpoints / "alexnet-owt-7be5be79.pth")
    return checkpoints
