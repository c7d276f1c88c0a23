"""Bring your own detector: ONNX, TorchScript, pickled torch, a Python file and a scores file.

One small convolutional detector (local contrast) is written by the test as a Python file; the
same network is exported with ``torch.onnx.export`` (anomalib's output names, a fixed batch of 2)
and ``torch.jit.trace``; its in-process scores are written to a scores file. Each, evaluated by
``anomalyforge evaluate`` in a subprocess on a real-defect folder of CC0 textures, must give the
summary of the in-process detector.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skimage.data
import torch
from PIL import Image

from synth import synthesize

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
#: the contrast detector, as a user would write it (python:tiny.py:Tiny)
TINY = textwrap.dedent('''
    import numpy as np
    import torch
    import torch.nn.functional as F


    class TinyNet(torch.nn.Module):
        """|image - its 7x7 local mean|, averaged over channels; score = the map's maximum."""

        def forward(self, x):
            blur = F.avg_pool2d(F.pad(x, (3, 3, 3, 3), mode="replicate"), 7, stride=1)
            amap = (x - blur).abs().mean(dim=1, keepdim=True)
            score = amap.flatten(1).amax(dim=1)
            return score, score > 0.1, amap, amap > 0.1  # anomalib's pred_score, pred_label, anomaly_map, pred_mask


    class Tiny:
        def __init__(self):
            self.net = TinyNet().eval()

        def score(self, images):
            x = torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 255.0 for i in images])
            with torch.no_grad():
                score, _, amap, _ = self.net(x)
            return score.numpy(), amap[:, 0].numpy()
''')
COMPARED = ("n_test", "n_good", "recall_at_k", "false_positives_at_k")
CLOSE = ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "aupro")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _crops(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    textures = [skimage.data.brick(), skimage.data.grass(), skimage.data.gravel()]
    out = []
    for i in range(n):
        y, x = rng.integers(0, 512 - SIZE, size=2)
        out.append(np.ascontiguousarray(textures[i % 3][y:y + SIZE, x:x + SIZE]))
    return out


def _save(folder: Path, name: str, array: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(folder / name)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, Path]:
    """An MVTec-layout folder (odd counts, so a fixed batch of 2 needs padding), the detector as a
    Python file, ONNX (NCHW and NHWC), TorchScript, a pickled torch model and a 1000-class classifier."""
    root = tmp_path_factory.mktemp("byod")
    data = root / "textures"
    for i, crop in enumerate(_crops(4, 0)):
        _save(data / "train" / "good", f"{i:03d}.png", crop)
    for i, crop in enumerate(_crops(5, 1)):
        _save(data / "test" / "good", f"{i:03d}.png", crop)
    for m, (method, n) in enumerate((("cutout", 3), ("synagen", 4))):
        for i, source in enumerate(_crops(n, 2 + m)):
            anomaly = synthesize(source, method, seed=i, size_bin="0.5-1.5%")
            _save(data / "test" / method, f"{i:03d}.png", anomaly.image)
            _save(data / "ground_truth" / method, f"{i:03d}_mask.png", anomaly.mask_u8)
    (root / "tiny.py").write_text(TINY)
    sys.path.insert(0, str(root))
    try:
        import tiny
    finally:
        sys.path.remove(str(root))
    net = tiny.TinyNet().eval()
    example = torch.rand(2, 3, SIZE, SIZE)
    names = ["pred_score", "pred_label", "anomaly_map", "pred_mask"]
    torch.onnx.export(net, (example,), str(root / "model.onnx"), input_names=["input"], output_names=names)

    class Nhwc(torch.nn.Module):
        def forward(self, x):
            return net(x.permute(0, 3, 1, 2))

    torch.onnx.export(Nhwc().eval(), (example.permute(0, 2, 3, 1),), str(root / "nhwc.onnx"), input_names=["input"],
                      output_names=names)
    torch.jit.trace(net, example).save(str(root / "model.torchscript"))
    conv = torch.nn.Conv2d(3, 1, 3, padding=1)
    torch.save({"model": torch.nn.Sequential(conv)}, root / "model.pt")
    classifier = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                     torch.nn.Linear(4, 1000))
    torch.onnx.export(classifier.eval(), (torch.rand(1, 3, SIZE, SIZE),), str(root / "classifier.onnx"),
                      input_names=["image"], output_names=["logits"])
    (root / "not_a_model.onnx").write_bytes(b"this is a text file, not a model\n")
    return {"root": root, "data": data}


def _cli(args: list[str], out: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    tail = ["--output", str(out), "--no-progress"] if out is not None else []
    return subprocess.run([sys.executable, str(ROOT / "anomalyforge.py"), "evaluate", *args, *tail], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def in_process(work):
    """The Python-file detector evaluated through the Python API, in this process."""
    from detect.evaluation.defect_sets import read_defect_set
    from detect.evaluation.evaluate import evaluate_defect_set
    from detect.registry import build_detector

    detector = build_detector(f"python:{work['root'] / 'tiny.py'}:Tiny")
    return evaluate_defect_set(read_defect_set(work["data"]), detector)


def _assert_same_summary(summary: dict, reference: dict) -> None:
    for key in COMPARED:
        assert summary[key] == reference[key], key
    # the same float32 network in onnxruntime and torch: sums in another order, a few ulps apart
    for key in CLOSE:
        assert summary[key] == pytest.approx(reference[key], rel=1e-4), key
    for k, threshold in reference["threshold_at_k"].items():
        assert summary["threshold_at_k"][k] == pytest.approx(threshold, rel=1e-4)


@pytest.mark.parametrize("detector", ["onnx:model.onnx", "anomalib:model.onnx", "onnx:nhwc.onnx",
                                      "torchscript:model.torchscript", "python:tiny.py:Tiny"])
def test_an_external_detector_gives_the_summary_of_the_same_detector_in_process(work, in_process, detector,
                                                                                 tmp_path):
    kind, name = detector.split(":", 1)
    proc = _cli(["--dataset", str(work["data"]), "--detector", f"{kind}:{work['root'] / name}"], tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    _assert_same_summary(summary, in_process.summary)
    block = summary["detector"]
    assert block["file"] == Path(name.split(":")[0]).name
    assert block["sha256"] == __import__("hashlib").sha256((work["root"] / name.split(":")[0]).read_bytes()).hexdigest()
    if kind in ("onnx", "anomalib"):
        layout = "NHWC" if "nhwc" in name else "NCHW"
        assert block["input"].startswith("input [2, ") and layout in block["input"]  # the fixed batch of 2
        assert block["score_output"].startswith("pred_score") and block["map_output"].startswith("anomaly_map")
    assert not (tmp_path / "out" / "detector.pt").exists()  # used as given: nothing fitted, nothing saved


def test_a_scores_file_gives_the_same_summary_and_image_level_only_without_maps(work, in_process, tmp_path):
    rows = []
    samples, good = in_process.samples, in_process.good
    for name, score in list(zip(samples["image_path"], samples["score"])) + list(zip(good["source_id"], good["score"])):
        rows.append({"file_name": name, "score": float(score)})
    pd.DataFrame(rows).to_csv(tmp_path / "scores.csv", index=False)
    proc = _cli(["--dataset", str(work["data"]), "--scores", str(tmp_path / "scores.csv")], tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for key in COMPARED + ("image_auroc", "image_ap", "threshold_at_k"):
        assert summary[key] == in_process.summary[key], key
    assert summary["pixel_auroc"] is None and summary["aupro"] is None
    assert summary["detector"]["map_output"] == "none: image-level only"
    assert "map_output: none: image-level only" in proc.stdout

    # with maps (.npy, relative to the file) the pixel metrics come back too, from parquet
    from detect.evaluation.defect_sets import read_defect_set
    from detect.registry import build_detector

    detector = build_detector(f"python:{work['root'] / 'tiny.py'}:Tiny")
    ds = read_defect_set(work["data"])
    for row in rows:
        image = np.asarray(Image.open(work["data"] / row["file_name"]).convert("RGB"))
        amap = detector.score([image]).maps[0]
        row["map"] = row["file_name"].replace("/", "_") + ".npy"
        np.save(tmp_path / row["map"], amap)
    pd.DataFrame(rows).to_parquet(tmp_path / "scores.parquet")
    proc = _cli(["--dataset", str(ds.root), "--scores", str(tmp_path / "scores.parquet")], tmp_path / "out2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_summary(json.loads((tmp_path / "out2" / "summary.json").read_text()), in_process.summary)


@pytest.mark.parametrize("args, message", [
    (["--detector", "onnx:{root}/not_a_model.onnx"], "not_a_model.onnx is not an ONNX model onnxruntime can run"),
    (["--detector", "onnx:{root}/classifier.onnx"],
     "classifier.onnx cannot be used as an anomaly detector: no output is an anomaly score or map. "
     "Inputs: image [1, 3, 64, 64] float. Outputs: logits [1, 1000] float."),
    (["--detector", "onnx:{root}/nhwc.onnx", "--option", "layout=nchw"],
     "layout=nchw was given but the model's input input [2, 64, 64, 3] float is NHWC"),
    (["--detector", "anomalib:{root}/model.pt"],
     "model.pt is a pickle: loading it runs whatever code it holds; pass --trust-pickle"),
    (["--detector", "onnx:{root}/missing.onnx"], "onnx detector file {root}/missing.onnx does not exist"),
])
def test_a_file_that_is_no_usable_detector_gives_one_clear_error_and_exit_2(work, args, message, tmp_path):
    root = work["root"]
    proc = _cli(["--dataset", str(work["data"]), *[a.format(root=root) for a in args]], tmp_path / "out")
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anomalyforge evaluate: error: "), proc.stderr[-3000:]
    assert message.format(root=root) in lines[0]


def test_a_scores_file_missing_rows_names_them_and_exits_2(work, in_process, tmp_path):
    names = list(in_process.samples["image_path"]) + list(in_process.good["source_id"])
    kept = [n for n in names if n not in ("test/cutout/001.png", "test/good/004.png")]
    pd.DataFrame({"file_name": kept, "score": np.arange(len(kept), dtype=float)}).to_csv(tmp_path / "s.csv",
                                                                                        index=False)
    proc = _cli(["--dataset", str(work["data"]), "--scores", str(tmp_path / "s.csv")], tmp_path / "out")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"anomalyforge evaluate: error: s.csv has no score for 2 of the {len(names)} "
                                   "images: test/cutout/001.png, test/good/004.png")


def test_a_pickled_model_runs_only_with_trust_pickle(work, tmp_path):
    proc = _cli(["--dataset", str(work["data"]), "--detector", f"anomalib:{work['root'] / 'model.pt'}",
                 "--trust-pickle"], tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    block = json.loads((tmp_path / "out" / "summary.json").read_text())["detector"]
    assert block["format"] == "torch" and block["score_output"] == "maximum of output"


def test_a_python_object_with_fit_is_fitted_on_the_anomaly_free_images(work, tmp_path):
    (tmp_path / "fitted.py").write_text(textwrap.dedent('''
        import numpy as np

        class MeanDistance:
            """Distance of each image's mean colour from the mean of the fit images."""
            def fit(self, images):
                self.mean = np.mean([i.reshape(-1, 3).mean(axis=0) for i in images], axis=0)

            def score(self, images):
                return {"pred_score": [float(np.abs(i.reshape(-1, 3).mean(axis=0) - self.mean).sum())
                                       for i in images], "anomaly_map": None}
    '''))
    from detect.registry import build_detector

    detector = build_detector(f"python:{tmp_path / 'fitted.py'}:MeanDistance")
    assert detector.needs_fit
    images = [np.full((16, 16, 3), v, np.uint8) for v in (10, 30)]
    detector.fit(images)
    result = detector.score([np.full((20, 12), 50, np.uint8)])  # gray: repeated to RGB
    assert result.scores.tolist() == [pytest.approx(3 * 30.0)]
    assert result.maps[0].shape == (20, 12) and not detector.has_maps


def test_stress_takes_an_external_detector_and_names_it(work, tmp_path):
    from synth import save_png

    save_png(tmp_path / "gravel.png", skimage.data.gravel()[:256, :256])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "anomalyforge.py"), "stress", str(tmp_path / "gravel.png"),
                           "--detector", f"onnx:{work['root'] / 'model.onnx'}", "--anomalies", "20",
                           "--output", str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("onnx:model.onnx used as given; ") and "anomalies on 8 anomaly-free test tiles" in proc.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["detector"]["file"] == "model.onnx" and summary["detector"]["input"].startswith("input [2, 3, 64")
