"""Every file the Space writes lies in its bounded work area, and the area expires on a timer,
also for a client that never clicks again and never closes its page."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

import app  # noqa: E402
from space.storage import session_name  # noqa: E402
from synth import save_png  # noqa: E402

#: the work area's expiry, set through the app's environment settings
TTL_S = 3
#: a generous wait for the timer; the check polls and returns as soon as the files are gone
PATIENCE_S = 60


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, demo, gradio cache) of an app whose work files expire three seconds after the last click."""
    cache = tmp_path_factory.mktemp("gradio")
    patch = pytest.MonkeyPatch()
    patch.setenv("GRADIO_TEMP_DIR", str(cache))
    demo = app.build_demo(app.SpaceConfig.from_environment({"ANOMALYFORGE_WORK_TTL_S": str(TTL_S)}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", demo, cache
    finally:
        demo.close()
        patch.undo()


@pytest.fixture(scope="module")
def upload(tmp_path_factory):
    path = tmp_path_factory.mktemp("up") / "astronaut16.png"
    save_png(path, skimage.data.astronaut()[:256, :256].astype(np.uint16) * 257)
    return path


def _gone(path: Path) -> bool:
    deadline = time.monotonic() + PATIENCE_S
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not path.exists()


def test_a_silent_clients_files_expire_without_another_click(served, upload, tmp_path):
    url, demo, _ = served
    client = Client(url, verbose=False, download_files=str(tmp_path))
    result = client.predict(handle_file(str(upload)), "synagen", "random", "random", "random", 1, 0, None, None,
                            api_name="/generate")
    assert any(Path(p).suffix == ".zip" and Path(p).is_file() for p in result[4]), "the zip was served"
    session = demo.space.work.root / session_name(client.session_hash)
    # nobody clicks and the page is never closed: the timer alone removes the files
    assert _gone(session), f"{session} still holds files {PATIENCE_S} s after a {TTL_S} s expiry"
    assert (demo.space.work.root / "examples").is_dir(), "the example textures stay"


def test_the_region_editor_preview_is_written_inside_the_work_area(served, upload):
    _, demo, cache = served
    uploads = {p for p in Path(cache).rglob("*") if p.is_file()}
    request = type("Request", (), {"session_hash": "editorpreview"})()
    update = demo.space.show_in_editor(str(upload), request)
    background = Path(update.value["background"]["path"] if isinstance(update.value["background"], dict)
                      else update.value["background"])
    work = demo.space.work.root
    assert background.is_relative_to(work) and background.is_file()
    outside = {p for p in Path(cache).rglob("*") if p.is_file() and not p.is_relative_to(work)} - uploads
    assert not outside, f"files written outside the work area: {sorted(outside)}"
    assert _gone(work / session_name("editorpreview"))


def test_a_click_still_writing_keeps_its_folder_when_the_same_tab_is_clicked_again(served, upload):
    # one upload fires the editor preview twice at once; the second must not delete the first's folder
    _, demo, _ = served
    work = demo.space.work
    preview = skimage.data.brick()[:64, :64]
    with work.folder("writingtwice", "editor") as first:
        with work.folder("writingtwice", "editor") as second:
            save_png(first / "background.png", preview)
            save_png(second / "background.png", preview)
        assert (first / "background.png").is_file(), "the running click's file was removed under it"
    with work.folder("writingtwice", "editor") as third:  # the next click removes both finished ones
        assert not first.exists() and not second.exists() and third.is_dir()
    work.release("writingtwice")
