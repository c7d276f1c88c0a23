"""The Space's disk use stays bounded: each click replaces its session's previous files, a closed
page frees its files, and all sessions together stay under the budget (oldest removed first)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import skimage.data

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

import app  # noqa: E402
from space.storage import session_name  # noqa: E402
from synth import save_png  # noqa: E402

BUDGET = 40 * 1024 * 1024


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, demo) of an app with a gradio cache of its own and a 40 MB budget."""
    patch = pytest.MonkeyPatch()
    patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    demo = app.build_demo(app.SpaceConfig(disk_budget=BUDGET))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", demo
    finally:
        demo.close()
        patch.undo()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    """Where the clients save what they receive (outside the app's folders)."""
    return str(tmp_path_factory.mktemp("downloads"))


@pytest.fixture(scope="module")
def noisy_upload(tmp_path_factory):
    """A 1024 x 1024 RGB photo-like upload that compresses badly (about 2.4 MB as PNG)."""
    rng = np.random.default_rng(0)
    gravel = np.dstack([skimage.data.gravel()] * 3)[:512, :512]
    image = np.tile(gravel, (2, 2, 1)).astype(np.int16) + rng.integers(-40, 40, (1024, 1024, 3))
    path = tmp_path_factory.mktemp("up") / "noisy.png"
    save_png(path, np.clip(image, 0, 255).astype(np.uint8))
    return path


def _generate(client, path, count=16, seed=0):
    return client.predict(handle_file(str(path)), "synagen", "random", "random", "random", count, seed, None, None,
                          api_name="/generate")


def test_repeated_clicks_keep_only_the_newest_files_and_no_second_copy(served, noisy_upload, downloads):
    url, demo = served
    work = demo.space.work
    client = Client(url, verbose=False, download_files=downloads)
    first = _generate(client, noisy_upload)
    one_click = _size(work.root) - _size(work.root / "examples")
    for seed in (1, 2):
        _generate(client, noisy_upload, seed=seed)
    sessions = [p for p in work.root.glob("s-*")]
    assert len(sessions) == 1
    assert len(list(sessions[0].glob("generate-*"))) == 1, "older clicks' folders are removed"
    assert _size(work.root) - _size(work.root / "examples") <= 1.2 * one_click
    # the downloads are served from the work folder itself: gradio keeps no second copy of the zip
    assert work.root.is_relative_to(demo.GRADIO_CACHE)
    zips = sorted(Path(demo.GRADIO_CACHE).rglob("noisy_synagen_seed*.zip"))
    assert [p.name for p in zips] == ["noisy_synagen_seed2.zip"], zips
    assert first[4][0].endswith("noisy_synagen_seed0.zip")


def test_one_click_is_bounded_by_the_zip_and_the_previews(served, noisy_upload, downloads):
    url, demo = served
    client = Client(url, verbose=False, download_files=downloads)
    _generate(client, noisy_upload)
    folder = next(demo.space.work.root.glob(f"{session_name(client.session_hash)}/generate-*"))
    upload_bytes = noisy_upload.stat().st_size
    # 16 anomalies: the zip (~16 images + masks), the parquet (the same), 3 small previews each
    assert _size(folder) <= 16 * 2 * 1.1 * upload_bytes + 16 * 3 * 1024**2
    print(f"one Generate click of 16 on a {upload_bytes / 1e6:.1f} MB upload: {_size(folder) / 1e6:.1f} MB")


def test_sessions_beyond_the_budget_are_removed_oldest_first(served, noisy_upload, downloads):
    url, demo = served
    work = demo.space.work
    clients = [Client(url, verbose=False, download_files=downloads) for _ in range(5)]
    for i, client in enumerate(clients):
        _generate(client, noisy_upload, count=6, seed=i)
        newest = work.root / session_name(client.session_hash)
        # the click that just ran may go over; everything else fits in the budget
        assert work.usage() - _size(newest) <= BUDGET
    kept = {p.name for p in work.root.glob("s-*")}
    assert session_name(clients[-1].session_hash) in kept
    assert session_name(clients[0].session_hash) not in kept, "the oldest session went first"


def test_closing_the_page_frees_the_sessions_files(served, noisy_upload, downloads):
    url, demo = served
    client = Client(url, verbose=False, download_files=downloads)
    _generate(client, noisy_upload, count=2)
    session = demo.space.work.root / session_name(client.session_hash)
    assert session.is_dir()
    demo.space.release(type("Request", (), {"session_hash": client.session_hash})())
    assert not session.exists()
