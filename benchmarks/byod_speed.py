"""What scoring through ``onnx:PATH`` costs over onnxruntime alone, on the same images and model.

    python benchmarks/byod_speed.py                           # a conv detector exported here (batch 2, 256²)
    python benchmarks/byod_speed.py --model path/to/model.onnx --images 64

"onnxruntime alone" is ``session.run`` on float32 batches prepared beforehand at the model's input
size (no decoding, conversion or resizing timed); "through onnx:" is ``detector.score(images)`` on
the uint8 images, which converts them, resizes them to the input size, pads the last fixed batch,
reads the outputs and resizes the maps back to each image's size. Images are RGB crops of
scikit-image's astronaut/coffee/chelsea/rocket at ``--side`` (the maps come back at that size).
Best of ``--repeats`` runs of each, taking turns, after one warm-up run of each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F


class ConvDetector(torch.nn.Module):
    """Five 3x3 convolutions (32 channels) and a local-contrast map: anomalib's output names."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        layers, width = [], 3
        for _ in range(5):
            layers += [torch.nn.Conv2d(width, 32, 3, padding=1), torch.nn.ReLU()]
            width = 32
        self.features = torch.nn.Sequential(*layers)

    def forward(self, x):
        f = self.features(x)
        amap = (f - F.avg_pool2d(f, 7, stride=1, padding=3)).pow(2).mean(dim=1, keepdim=True)
        return amap.flatten(1).amax(dim=1), amap


def _images(n: int, side: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sources = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        y = int(rng.integers(0, src.shape[0] - side + 1))
        x = int(rng.integers(0, src.shape[1] - side + 1))
        out.append(np.ascontiguousarray(src[y:y + side, x:x + side, :3]))
    return out


def _best(runs, repeats: int) -> list[float]:
    """Best time of each of ``runs``, run in turn ``repeats`` times after one warm-up each (taking
    turns, a load that comes and goes on a shared machine hits all of them alike)."""
    for run in runs:
        run()
    times = [[] for _ in runs]
    for _ in range(repeats):
        for run, spent in zip(runs, times):
            started = time.perf_counter()
            run()
            spent.append(time.perf_counter() - started)
    return [min(spent) for spent in times]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="an ONNX model (default: a conv detector made here)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--side", type=int, default=256, help="side of the images scored")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from detect.registry import build_detector

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = Path(tmp) / "conv.onnx"
            torch.onnx.export(ConvDetector().eval(), (torch.rand(2, 3, 256, 256),), str(model),
                              input_names=["input"], output_names=["pred_score", "anomaly_map"])
        detector = build_detector(f"onnx:{model}")
        plan = detector.plan
        images = _images(args.images, args.side)
        session = detector.backend.session
        batch = plan.batch or detector.batch_size
        h, w = plan.size or (args.side, args.side)
        prepared = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
        prepared = F.interpolate(prepared, size=(h, w), mode="bilinear", align_corners=False, antialias=True).numpy()
        if plan.layout == "nhwc":
            prepared = np.ascontiguousarray(prepared.transpose(0, 2, 3, 1))
        padded = -len(prepared) % batch
        prepared = np.concatenate([prepared, prepared[:padded]]) if padded else prepared
        feeds = [{plan.name: np.ascontiguousarray(prepared[i:i + batch])} for i in range(0, len(prepared), batch)]

        def alone():
            for feed in feeds:
                session.run(None, feed)

        def through():
            detector.score(images)

        t_alone, t_through = _best([alone, through], args.repeats)
    print(f"model {Path(model).name}: input {plan.text()}, {args.images} images of {args.side}x{args.side}, "
          f"{torch.get_num_threads()} torch threads, best of {args.repeats}")
    print("| path | seconds | images/s | × onnxruntime alone |")
    print("|---|---|---|---|")
    for name, seconds in (("onnxruntime alone", t_alone), ("through onnx:", t_through)):
        print(f"| {name} | {seconds:.3f} | {args.images / seconds:.1f} | {seconds / t_alone:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
