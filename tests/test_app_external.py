"""The Space takes an uploaded ONNX model as the detector, and refuses pickles and Python files."""

from __future__ import annotations

from pathlib import Path

import pytest
import skimage.data
import torch
import torch.nn.functional as F

gradio_client = pytest.importorskip("gradio_client")
pytest.importorskip("onnxruntime")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from synth import save_png  # noqa: E402


class Blind(torch.nn.Module):
    """Scores every image 0: anomalib's output names, any batch."""

    def forward(self, x):
        amap = x[:, :1] * 0
        return amap.flatten(1).amax(dim=1), amap


class Contrast(torch.nn.Module):
    """|image - its 7x7 local mean|: anomalib's output names, a fixed batch of 2 at 64x64."""

    def forward(self, x):
        blur = F.avg_pool2d(F.pad(x, (3, 3, 3, 3), mode="replicate"), 7, stride=1)
        amap = (x - blur).abs().mean(dim=1, keepdim=True)
        return amap.flatten(1).amax(dim=1), amap


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    torch.onnx.export(Contrast().eval(), (torch.rand(2, 3, 64, 64),), str(root / "contrast.onnx"),
                      input_names=["input"], output_names=["pred_score", "anomaly_map"])
    torch.onnx.export(Blind().eval(), (torch.rand(1, 3, 64, 64),), str(root / "blind.onnx"), input_names=["input"],
                      output_names=["pred_score", "anomaly_map"],
                      dynamic_axes={name: {0: "batch"} for name in ("input", "pred_score", "anomaly_map")})
    torch.save({"model": Contrast()}, root / "model.pt")
    (root / "detector.py").write_text("class D:\n    def score(self, images):\n        return [0.0] * len(images), None\n")
    save_png(root / "gravel.png", skimage.data.gravel()[:256, :256])
    return {"onnx": root / "contrast.onnx", "blind": root / "blind.onnx", "pickle": root / "model.pt",
            "python": root / "detector.py", "image": root / "gravel.png"}


def _detect(client, model, image):
    return client.predict("patchcore", [], "the Generate tab's image", [], handle_file(str(image)),
                          handle_file(str(model)), api_name="/detect")


@pytest.mark.parametrize("kind", ["pickle", "python"])
def test_the_space_refuses_pickles_and_python_files_as_detectors(client, models, kind):
    # gradio refuses the upload by its type; the handler refuses it too, saying why
    refused = r"Invalid file type. Please upload a file that is one of these formats: \['.onnx'\]"
    with pytest.raises(AppError, match=refused):
        _detect(client, models[kind], models["image"])
    with pytest.raises(AppError, match=refused):
        client.predict([], handle_file(str(models["image"])), "synagen", "patchcore", 10, 1, 0,
                       handle_file(str(models[kind])), api_name="/stress_test")
    import gradio as gr

    from space.inputs import uploaded_model

    with pytest.raises(gr.Error, match=f"{models[kind].name}: upload an ONNX model .* run code when loaded"):
        uploaded_model(str(models[kind]))


def test_an_uploaded_onnx_model_detects_and_stress_tests_and_is_named(client, models):
    heatmaps, scores, _, status = _detect(client, models["onnx"], models["image"])
    assert "your model **contrast.onnx**, used as given" in status
    # its threshold comes from the clean source turned by 180 degrees, and the row says so
    assert scores["data"][0][0] == "clean source (turned 180°, it sets the threshold)"
    # local contrast is the same turned by 180 degrees: equal to the threshold, so clean, not a false alarm
    assert scores["data"][0][1] == "clean"
    # a model used as given is fitted on nothing: the status names the image its threshold comes from
    *_, status = client.predict("patchcore", [], "grass", [handle_file(str(models["image"]))], None,
                                handle_file(str(models["onnx"])), api_name="/detect")
    assert "the highest score of grass.png turned by 180 degrees" in status
    assert len(heatmaps) == len(scores["data"]) > 1
    shape_plot, mode_plot, table, status = client.predict(
        [], handle_file(str(models["image"])), "synagen", "patchcore", 20, 1, 0, handle_file(str(models["onnx"])),
        api_name="/stress_test")
    assert "onnx:contrast.onnx used as given" in status
    assert shape_plot is not None and mode_plot is not None
    assert {row[0] for row in table["data"]} == {"shape", "mode"}


def test_a_model_file_onnxruntime_cannot_read_is_named_without_the_servers_path(client, models, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00 not a protobuf " * 64)
    with pytest.raises(AppError, match="broken.onnx is not an ONNX model onnxruntime can run") as refused:
        _detect(client, broken, models["image"])
    assert "/" not in str(refused.value).split("broken.onnx")[0], str(refused.value)


def test_a_model_that_scores_everything_zero_is_said_to_give_no_threshold(client, models):
    heatmaps, scores, _, status = _detect(client, models["blind"], models["image"])
    assert status.startswith("> ⚠️ **No threshold:** blind.onnx scores gravel.png turned by 180 degrees 0")
    assert all("inf" not in h["caption"] and "score 0 · " in h["caption"] for h in heatmaps), heatmaps
    assert all(row[2] is None for row in scores["data"])  # the "x threshold" column stays empty
