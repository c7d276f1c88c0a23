"""Every failed request to the Space is answered with a message, never ``{"error": null}``: a Hub
dataset that anomalyforge did not make, file arguments that are malformed or name a path on the
server, through gradio_client and through raw HTTP calls as any client could make them."""

from __future__ import annotations

import io
import json

import pytest

gradio_client = pytest.importorskip("gradio_client")
import httpx  # noqa: E402
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from hub_server import hub_environment  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

TOKEN = "hf_AppErrorsTestToken0001"
#: the arguments of /generate after the image
GENERATE_REST = ["synagen", "random", "random", "random", 2, 0, None, None]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with hub_environment(tmp_path_factory.mktemp("hf_home"), TOKEN) as server:
        yield server


def _text_dataset(repo: str, split: str) -> str:
    """``repo`` v1.0.0: a text dataset with one ``split``, made without anomalyforge."""
    import pandas as pd
    from huggingface_hub import HfApi

    api = HfApi(token=TOKEN)
    api.create_repo(repo, repo_type="dataset")
    buffer = io.BytesIO()
    pd.DataFrame({"text": ["a review", "another"]}).to_parquet(buffer)
    api.upload_file(path_or_fileobj=buffer.getvalue(), path_in_repo=f"data/{split}-00000-of-00001.parquet",
                    repo_id=repo, repo_type="dataset")
    api.create_tag(repo, tag="v1.0.0", repo_type="dataset")
    return repo


@pytest.fixture(scope="module")
def client(hub, app_url):
    return Client(app_url, verbose=False)


def _raw_call(app_url: str, api: str, data: list) -> tuple[str, object]:
    """``(event, data)`` of the last event of one call over gradio's plain HTTP API."""
    started = httpx.post(f"{app_url}gradio_api/call/{api}", json={"data": data}, timeout=60)
    started.raise_for_status()
    stream = httpx.get(f"{app_url}gradio_api/call/{api}/{started.json()['event_id']}", timeout=300).text
    events = [line[len("event: "):] for line in stream.splitlines() if line.startswith("event: ")]
    payloads = [line[len("data: "):] for line in stream.splitlines() if line.startswith("data: ")]
    return events[-1], json.loads(payloads[-1])


@pytest.mark.parametrize("split, problem", [
    ("test", r"its test split has no column\(s\) image, mask, .*\(columns: text\)"),
    ("train", r"it has no test split"),
])
def test_a_dataset_not_made_by_anomalyforge_is_named_as_such(client, split, problem):
    repo = _text_dataset(f"org/plain-{split}", split)
    with pytest.raises(AppError, match=rf"{repo} 1\.0\.0 is not an anomalyforge dataset: {problem}"):
        client.predict(repo, "", 4, api_name="/browse")


def test_a_path_instead_of_an_uploaded_image_is_refused_with_a_message(client):
    with pytest.raises(AppError, match="image: expected an uploaded image file, got '/etc/passwd'"):
        client.predict("/etc/passwd", *GENERATE_REST, api_name="/generate")


def test_a_malformed_file_list_is_refused_with_a_message_naming_the_input(client):
    expected = r"anomaly-free images: expected a list of uploaded image files, got \[\{'x': 1\}\]"
    with pytest.raises(AppError, match=expected):
        client.predict("patchcore", [{"x": 1}], "examples", None, None, api_name="/detect")


@pytest.mark.parametrize("api, data", [
    ("generate", [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, *GENERATE_REST]),
    ("detect", ["patchcore", [{"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}], "examples", None,
                None, None]),
])
def test_a_file_argument_naming_a_server_path_is_refused_with_a_message(app_url, api, data):
    event, payload = _raw_call(app_url, api, data)
    assert event == "error"
    assert payload is not None and "file argument refused" in payload["error"]
    assert "was not uploaded by a user" in payload["error"]
