"""anomalyforge Space: make synthetic anomalies in your own images and see where a detector is blind.

``python app.py`` serves the app on http://127.0.0.1:7860 (CPU is enough). Gradio's own variables
move it: ``GRADIO_SERVER_NAME=0.0.0.0`` to listen on every interface, ``GRADIO_SERVER_PORT=8080``
for another port (a Hugging Face Space sets both itself). It starts on three CC0 example textures
from scikit-image (brick, grass, gravel), so it is useful before anything is uploaded.

Tabs: **Generate** (anomalies with masks and metadata, downloadable in the ``imagefolder`` layout),
**Detect** (PatchCore or PaDiM fitted on your anomaly-free images, or on the example texture),
**Stress test** (recall at 1 false positive per shape and mode against size bin, on your images),
**Datasets** (a few rows of a published dataset version).

This file holds widgets and calls only: anomalies come from ``synth``, detectors and metrics from
``detect``, published datasets from ``hub_tools``. GPU work runs in functions decorated with
``spaces.GPU`` (a ZeroGPU Space lends a GPU for their duration; elsewhere the decorator is absent
or does nothing, and the same code runs on a GPU Space or on CPU).

Limits (see ``MAX_FILE_SIZE`` and below): uploads up to 20 MB and 16.7 megapixels (decompression
bombs are refused before decoding), at least 32x32 pixels; 16 anomalies per Generate click; 40
images per Detect click; the queue runs 2 jobs at once (1 detector job) and holds 64 waiting.
"""

from __future__ import annotations

try:  # ZeroGPU needs ``spaces`` imported before torch initialises CUDA
    import spaces

    GPU = spaces.GPU
except ImportError:  # not on a Space: run the same functions as they are

    def GPU(task=None, **_options):
        return task if callable(task) else (lambda fn: fn)


import functools
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
import numpy as np
import pandas as pd
import skimage.data

from synth import (
    DEFAULT_BINS,
    InvalidImageError,
    SynthError,
    decode_image,
    get_method,
    method_names,
    synthesize,
)
from synth.export import export_parquet, export_rows, export_zip
from synth.image import save_png
from synth.preview import contour_overlay, display_rgb, heatmap_overlay, mask_preview, region_from_layers

# ------------------------------------------------------------------------------------ limits
#: largest upload gradio accepts (``launch(max_file_size=...)``); bigger files are refused on upload
MAX_FILE_SIZE = "20mb"
MAX_FILE_BYTES = 20 * 1024 * 1024
#: largest image in pixels (4096 x 4096); checked from the header before any pixel is decoded
MAX_UPLOAD_PIXELS = 4096 * 4096
#: smallest side in pixels: the smallest size bin (0.02 %) needs whole pixels, detectors need 32
MIN_SIDE = 32
#: anomalies per Generate click
MAX_COUNT = 16
#: images per Detect click (fit + test)
MAX_DETECT_IMAGES = 40
#: longer side of the previews shown in the browser (downloads keep full size)
PREVIEW_SIDE = 768
#: jobs that run at once, and how many may wait in the queue before new ones are turned away
CONCURRENCY = int(os.environ.get("ANOMALYFORGE_CONCURRENCY", "2"))
QUEUE_SIZE = int(os.environ.get("ANOMALYFORGE_QUEUE_SIZE", "64"))
#: dataset proposed in the Datasets tab (ORG/NAME of any published anomalyforge dataset)
DEFAULT_DATASET = os.environ.get("ANOMALYFORGE_DATASET", "")
#: side the detectors work at (images are resized to it on the way in, maps back)
DETECT_SIZE = int(os.environ.get("ANOMALYFORGE_DETECT_SIZE", "256"))
#: memory-bank cap of PatchCore (bounds fitting time on CPU)
PATCHCORE_MAX_CORESET = 4000

RANDOM = "random"
DETECTORS = ("patchcore", "padim")
WORK_ROOT = Path(tempfile.gettempdir()) / "anomalyforge-space"
#: per-click output folders older than this are deleted (the browser has its own copies by then)
WORK_TTL_S = 3600

try:
    VERSION = metadata.version("anomalyforge")
except metadata.PackageNotFoundError:
    VERSION = "unknown"


# ---------------------------------------------------------------------------------- examples
EXAMPLE_NAMES = ("brick", "grass", "gravel")


def example_paths() -> dict[str, str]:
    """The example textures as PNG files (written once per machine), name -> path."""
    folder = WORK_ROOT / "examples"
    paths = {}
    for name in EXAMPLE_NAMES:
        path = folder / f"{name}.png"
        if not path.is_file():
            save_png(path, getattr(skimage.data, name)())
        paths[name] = str(path)
    return paths


def example_image(name: str) -> np.ndarray:
    return getattr(skimage.data, name)()


# ----------------------------------------------------------------------------------- uploads
def uploaded_image(**options: Any) -> gr.Image:
    """A ``gr.Image`` (``type="filepath"``) whose uploads reach the app as undecoded files.

    Gradio's own preprocessing opens every upload with Pillow before the app sees it, so a text
    file or a corrupt PNG fails there with a bare "Error". Here the file's path comes through and
    ``read_upload`` decodes it with ``synth.decode_image`` (16-bit kept, pixel limit checked from
    the header), answering bad files with a message the user can act on. (An instance attribute,
    not a subclass: gradio writes a ``.pyi`` stub beside every module that subclasses a component.)
    """
    component = gr.Image(type="filepath", **options)
    component.preprocess = _upload_path
    return component


def _upload_path(payload: Any) -> str | None:
    if payload is None:
        return None
    if payload.path is None:
        raise gr.Error("The image did not arrive as a file; upload it again.", print_exception=False)
    return str(payload.path)


def _size_text(n_bytes: int) -> str:
    return f"{n_bytes / 1024 / 1024:.1f} MB"


def read_upload(path: str | None, what: str = "image") -> np.ndarray:
    """Decode an uploaded file (gray/RGB/RGBA, 8 or 16 bit) or raise ``gr.Error`` saying what is wrong."""
    if not path:
        raise gr.Error(f"No {what} yet: upload one (or pick an example).", print_exception=False)
    name = Path(path).name
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise gr.Error(
                f"{what} {name} is {_size_text(size)}; the limit is {MAX_FILE_SIZE}. Downscale or crop it.",
                print_exception=False,
            )
        data = Path(path).read_bytes()
    except OSError:
        raise gr.Error(f"{what} {name} could not be read; upload it again.", print_exception=False) from None
    try:
        image = decode_image(data, name=name, max_pixels=MAX_UPLOAD_PIXELS)
    except InvalidImageError as exc:
        raise gr.Error(f"{what} {exc}", title="Not a usable image", print_exception=False) from None
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise gr.Error(
            f"{what} {name} is {width}x{height} pixels; anomalies need at least {MIN_SIDE}x{MIN_SIDE}. "
            "Upload a larger image.",
            title="Image too small",
            print_exception=False,
        )
    return image


def upload_notes(path: str, image: np.ndarray) -> list[str]:
    """Plain-language notes about what happens to an unusual image (shown as warnings)."""
    from PIL import Image

    notes = []
    name = Path(path).name
    try:
        with Image.open(path) as im:
            if im.mode in ("P", "PA"):
                kind = "RGBA" if image.shape[-1] == 4 else "RGB"
                notes.append(f"{name} is a palette image: it is converted to {kind}.")
    except OSError:
        pass
    if image.dtype == np.uint16:
        notes.append(f"{name} is 16-bit: the downloads keep all 16 bits; previews show 8 bits.")
    if image.ndim == 3 and image.shape[2] in (2, 4):
        notes.append(f"{name} has an alpha channel: it is kept unchanged; anomalies change colour only.")
    return notes


def _warn(notes: Sequence[str]) -> None:
    for note in notes:
        gr.Warning(note)


def _work_dir() -> Path:
    """A fresh folder for one click's files; folders older than an hour are removed on the way."""
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in WORK_ROOT.glob("call-*"):
        try:
            if now - old.stat().st_mtime > WORK_TTL_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass  # another worker removed it first
    return Path(tempfile.mkdtemp(prefix="call-", dir=WORK_ROOT))


def _png(folder: Path, name: str, image: np.ndarray) -> str:
    path = folder / name
    save_png(path, image)
    return str(path)


# ---------------------------------------------------------------------------------- generate
@functools.lru_cache(maxsize=1)
def available_methods() -> tuple[str, ...]:
    """Registered methods that build with their default options (the registry is fixed at start)."""
    names = []
    for name in method_names():
        try:
            get_method(name)
        except (ImportError, AttributeError, SynthError):
            continue  # needs options it has no default for, or its code is missing from this install
        names.append(name)
    return tuple(names)


def method_options(method: str) -> tuple[list[str], list[str], bool]:
    """(shape choices, mode choices, whether size bins apply) of a method, ``RANDOM`` first."""
    try:
        obj = get_method(method)
    except (SynthError, ImportError) as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    return [RANDOM, *obj.shapes], [RANDOM, *obj.modes], bool(getattr(obj, "targets_size", False))


def on_method_change(method: str):
    shapes, modes, sized = method_options(method)
    return (
        gr.Dropdown(choices=shapes, value=RANDOM),
        gr.Dropdown(choices=modes, value=RANDOM),
        gr.Dropdown(interactive=sized, value=RANDOM,
                    info=None if sized else f"{method} does not steer the size; the measured bin is reported"),
    )


def on_image_change(image_path: str | None):
    """Put the uploaded image under the region editor's brush (as an 8-bit preview)."""
    if not image_path:
        return gr.ImageEditor(value=None)
    try:
        image = read_upload(image_path)
    except gr.Error:
        return gr.ImageEditor(value=None)  # the Generate click reports the problem
    return gr.ImageEditor(value={"background": display_rgb(image, PREVIEW_SIDE), "layers": [], "composite": None})


def _region(image: np.ndarray, drawing: dict | None, mask_path: str | None) -> tuple[np.ndarray | None, str | None]:
    """The allowed region from an uploaded mask image (first) or the brush strokes, and its origin."""
    height, width = image.shape[:2]
    if mask_path:
        mask = read_upload(mask_path, "region mask")
        if mask.shape[:2] != (height, width):
            raise gr.Error(
                f"region mask is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}; "
                "upload a mask of the same size (white = anomalies allowed).",
                print_exception=False,
            )
        return mask, "uploaded mask"
    layers = (drawing or {}).get("layers") or []
    region = region_from_layers([np.asarray(layer) for layer in layers if layer is not None], height, width)
    return region, None if region is None else "drawn"


def _choice(value: str | None, options: Sequence[str], what: str) -> str | None:
    if value in (None, "", RANDOM):
        return None
    if value not in options:
        raise gr.Error(f"unknown {what} {value!r}; choose from {', '.join(options)}", print_exception=False)
    return value


def _int(value: Any, what: str, low: int, high: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{what} must be a whole number, got {value!r}", print_exception=False) from None
    if number < low or (high is not None and number > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise gr.Error(f"{what} must be {limit}, got {number}", print_exception=False)
    return number


TABLE_COLUMNS = ["method", "shape", "mode", "size_bin", "area_%", "brightness_delta", "background_brightness",
                 "bbox", "angle", "seed", "file_name"]


def _table(rows: Sequence[dict]) -> pd.DataFrame:
    records = []
    for row in rows:
        records.append({
            "file_name": row["file_name"],
            "method": row["method"],
            "shape": row["shape"],
            "mode": row["mode"],
            "size_bin": row["size_bin"],
            "area_%": round(100.0 * float(row["area_fraction"]), 4),
            "brightness_delta": round(float(row["brightness_delta"]), 4),
            "background_brightness": round(float(row["background_brightness"]), 4),
            "bbox": " ".join(str(v) for v in row["bbox"]),
            "angle": round(float(row["angle"]), 1),
            "seed": int(row["seed"]),
        })
    return pd.DataFrame(records, columns=TABLE_COLUMNS)


def generate(
    image_path: str | None,
    method: str,
    shape: str,
    mode: str,
    size_bin: str,
    count: float,
    seed: float,
    region_drawing: dict | None,
    region_mask_path: str | None,
    progress: gr.Progress = gr.Progress(),
):
    """Make ``count`` anomalies (seeds ``seed``, ``seed + 1``, ...) in the image; previews, table, files."""
    image = read_upload(image_path)
    _warn(upload_notes(image_path, image))
    if method not in available_methods():
        raise gr.Error(f"unknown method {method!r}; choose from {', '.join(available_methods())}",
                       print_exception=False)
    shapes, modes, sized = method_options(method)
    shape_arg = _choice(shape, shapes[1:], "shape")
    mode_arg = _choice(mode, modes[1:], "mode")
    bin_names = [b.name for b in DEFAULT_BINS]
    bin_arg = _choice(size_bin, bin_names, "size bin") if sized else None
    count = _int(count, "count", 1, MAX_COUNT)
    seed = _int(seed, "seed", 0, 2**62)
    region, region_source = _region(image, region_drawing, region_mask_path)
    textures = tuple(example_image(name) for name in EXAMPLE_NAMES)  # for the "texture" modes

    anomalies, failures = [], []
    for i in progress.tqdm(range(count), desc="Generating anomalies"):
        try:
            anomalies.append(synthesize(image, method, seed=seed + i, shape=shape_arg, mode=mode_arg,
                                        size_bin=bin_arg, region=region, textures=textures))
        except SynthError as exc:
            failures.append(f"seed {seed + i}: {exc}")
    if not anomalies:
        raise gr.Error(failures[0], title="No anomaly could be made", print_exception=False)
    if failures:
        gr.Warning(f"{len(failures)} of {count} anomalies could not be made ({failures[0]}).")

    folder = _work_dir()
    source_id = Path(image_path).name
    rows = export_rows(anomalies, source_id)
    before = _png(folder, "before.png", display_rgb(image, PREVIEW_SIDE))
    gallery, views = [], []
    for i, (anomaly, row) in enumerate(zip(anomalies, rows)):
        overlay = _png(folder, f"overlay_{i}.png", contour_overlay(anomaly.image, anomaly.mask, PREVIEW_SIDE))
        after = _png(folder, f"after_{i}.png", display_rgb(anomaly.image, PREVIEW_SIDE))
        mask = _png(folder, f"mask_{i}.png", mask_preview(anomaly.mask, PREVIEW_SIDE))
        caption = (f"{row['shape']} · {row['mode']} · {row['size_bin']} "
                   f"({100 * row['area_fraction']:.3g} %) · seed {row['seed']}")
        gallery.append((overlay, caption))
        views.append({"before": before, "after": after, "mask": mask})
    config = {
        "tool": f"anomalyforge {VERSION} (Space)",
        "method": method, "shape": shape_arg, "mode": mode_arg, "size_bin": bin_arg,
        "count": count, "seed": seed, "source_id": source_id, "region": region_source,
    }
    stem = Path(source_id).stem or "image"
    zip_path = export_zip(anomalies, folder / f"{stem}_{method}_seed{seed}.zip", source_id, config=config)
    parquet_path = export_parquet(anomalies, folder / f"{stem}_{method}_seed{seed}.parquet", source_id)
    status = (f"Made {len(anomalies)} anomal{'y' if len(anomalies) == 1 else 'ies'} with **{method}**"
              f"{' inside the ' + region_source + ' region' if region_source else ''}. "
              "The zip holds `images/`, `masks/` and `metadata.jsonl` "
              "(`datasets.load_dataset(\"imagefolder\", data_dir=...)` reads it).")
    return (
        gallery,
        (views[0]["before"], views[0]["after"]),
        views[0]["mask"],
        _table(rows),
        [str(zip_path), str(parquet_path)],
        status,
        views,
    )


def show_selected(views: list[dict] | None, evt: gr.SelectData):
    """Gallery click: show that anomaly in the before/after slider and the mask view."""
    if not views or evt.index is None or not 0 <= int(evt.index) < len(views):
        return gr.ImageSlider(), gr.Image()
    view = views[int(evt.index)]
    return (view["before"], view["after"]), view["mask"]


def generated_files(views: list[dict] | None) -> list[str]:
    """The previews of the last Generate click, as test images for the Detect tab."""
    if not views:
        raise gr.Error("Nothing generated yet: make anomalies in the Generate tab first.", print_exception=False)
    return [view["after"] for view in views]


# ------------------------------------------------------------------------------------ detect
_FITTED: "OrderedDict[str, Any]" = OrderedDict()
_FIT_LOCK = threading.Lock()
_FITTED_MAX = 4


def _device() -> str:
    from detect.device import choose_device

    return str(choose_device())


def _new_detector(name: str, size: int):
    from detect.registry import build_detector

    if name == "patchcore":
        return build_detector(name, image_size=size, coreset_ratio=0.1, max_coreset=PATCHCORE_MAX_CORESET)
    return build_detector(name, image_size=size)


def example_detector_images(name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(fit images, held-out anomaly-free images) for the detector of one example texture.

    One texture is one image, so the detector is fitted on it and its two mirror images and the
    normal range is measured on the image turned by 180 degrees: the same kind of texture, not
    the same pixels (the features are not mirror-invariant).
    """
    image = as_rgb(example_image(name))
    return [image, image[:, ::-1], image[::-1, :]], [image[::-1, ::-1]]


def fitted_detector(name: str, key: str, images: Sequence[np.ndarray], size: int = DETECT_SIZE):
    """The detector ``name`` fitted on ``images`` at ``size``, cached under ``key`` (a few kept).

    Fitting holds a lock so that two users asking for the same detector fit it once.
    """
    if name not in DETECTORS:
        raise gr.Error(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}", print_exception=False)
    key = f"{key}@{size}"
    with _FIT_LOCK:
        if key in _FITTED:
            _FITTED.move_to_end(key)
            return _FITTED[key]
        detector = _new_detector(name, size)
        detector.to(_device())
        try:
            detector.fit(list(images))
        finally:
            detector.to("cpu")
        _FITTED[key] = detector
        while len(_FITTED) > _FITTED_MAX:
            _FITTED.popitem(last=False)
        return detector


def _files_key(paths: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return digest.hexdigest()[:16]


def _paths(files: Any) -> list[str]:
    if not files:
        return []
    if isinstance(files, (str, os.PathLike)):
        return [str(files)]
    return [str(getattr(f, "name", f)) for f in files]


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Detectors here work on colour: gray images become three equal channels, alpha is dropped."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] in (1, 2):
        return np.repeat(image[:, :, :1], 3, axis=2)
    return image[:, :, :3]


@GPU(duration=60)
def fit_and_score(name: str, key: str, fit_images: Sequence[np.ndarray], batches: Sequence[Sequence[np.ndarray]],
                  size: int = DETECT_SIZE):
    """Fit (or reuse) a detector and score each batch of images, on the GPU when there is one."""
    detector = fitted_detector(name, key, fit_images, size)
    detector.to(_device())
    try:
        return [detector.score(list(batch)) for batch in batches]
    finally:
        detector.to("cpu")


DETECT_COLUMNS = ["file", "score", "normal_max", "verdict"]


def detect(
    detector_name: str,
    fit_files: Any,
    example: str,
    test_files: Any,
    progress: gr.Progress = gr.Progress(),
):
    """Score test images with a detector fitted on the user's anomaly-free images (or the example)."""
    from detect.errors import DetectError

    fit_paths, test_paths = _paths(fit_files), _paths(test_files)
    if not test_paths:
        raise gr.Error("Upload one or more images to score.", print_exception=False)
    if len(fit_paths) + len(test_paths) > MAX_DETECT_IMAGES:
        raise gr.Error(f"at most {MAX_DETECT_IMAGES} images per run (fit + test); got "
                       f"{len(fit_paths) + len(test_paths)}", print_exception=False)
    progress(0.05, desc="Reading images")
    tests = [as_rgb(read_upload(p, "test image")) for p in test_paths]
    if fit_paths:
        goods = [as_rgb(read_upload(p, "anomaly-free image")) for p in fit_paths]
        # with two or more, the last one is held out to measure the normal range honestly
        fits, held_out = (goods[:-1], goods[-1:]) if len(goods) > 1 else (goods, goods)
        key = f"{detector_name}:{_files_key(fit_paths)}"
        source = f"{len(fits)} uploaded anomaly-free image(s)"
        reference = ("the held-out last anomaly-free image" if len(goods) > 1
                     else "the fit image itself (upload 2+ for a held-out reference)")
    else:
        if example not in EXAMPLE_NAMES:
            raise gr.Error(f"unknown example {example!r}; choose from {', '.join(EXAMPLE_NAMES)}",
                           print_exception=False)
        fits, held_out = example_detector_images(example)
        key, source = f"{detector_name}:example:{example}", f"the example texture '{example}'"
        reference = "the example turned by 180 degrees"
    progress(0.2, desc=f"Fitting {detector_name} on {source} (once, then cached)")
    try:
        normal, result = fit_and_score(detector_name, key, fits, [held_out, tests])
    except DetectError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    progress(0.9, desc="Drawing heatmaps")
    normal_max = float(np.max(normal.scores))
    low = float(np.median([np.median(m) for m in normal.maps]))
    high = max(normal_max, float(np.max(result.scores)))
    folder = _work_dir()
    gallery, rows = [], []
    for i, (path, image, score, amap) in enumerate(zip(test_paths, tests, result.scores, result.maps)):
        overlay = _png(folder, f"heatmap_{i}.png", heatmap_overlay(image, amap, low, high, max_side=PREVIEW_SIDE))
        verdict = "anomalous" if score > normal_max else "normal"
        gallery.append((overlay, f"{Path(path).name}: score {score:.3g} ({verdict})"))
        rows.append({"file": Path(path).name, "score": round(float(score), 4),
                     "normal_max": round(normal_max, 4), "verdict": verdict})
    status = (f"**{detector_name}** fitted on {source}. An image is called anomalous when it scores above "
              f"the anomaly-free reference ({reference}: {normal_max:.4g}). Heatmaps share one colour scale.")
    return gallery, pd.DataFrame(rows, columns=DETECT_COLUMNS), status


# ------------------------------------------------------------------------------- stress test
#: anomalies per stress test, at most
STRESS_MAX = 400
#: each image is cut into GRID x GRID tiles: alternate tiles fit the detector, the others are the
#: anomaly-free test images that set the threshold and receive the synthetic anomalies
STRESS_GRID = 4
#: images per stress test, at most
STRESS_MAX_IMAGES = 8


def tiles(image: np.ndarray, grid: int) -> list[np.ndarray]:
    """``grid x grid`` equal tiles of ``image`` (the remainder at the right and bottom is dropped)."""
    height, width = image.shape[0] // grid, image.shape[1] // grid
    return [np.ascontiguousarray(image[r * height:(r + 1) * height, c * width:(c + 1) * width])
            for r in range(grid) for c in range(grid)]


def _stress_axes(method: str) -> tuple[list[str | None], list[str | None], list[str | None]]:
    """Shapes, modes and size bins the stress test cycles through (``None`` = the method draws)."""
    obj = get_method(method)
    bins = [b.name for b in DEFAULT_BINS] if getattr(obj, "targets_size", False) else [None]
    if method == "hybrid":  # a mixture: most shape x mode pairs belong to no single method
        return [None], [None], bins
    # the paper's modes; "texture" needs a texture collection and is not part of its analysis
    return list(obj.shapes), [m for m in obj.modes if m != "texture"], bins


def _stress_duration(detector_name, key, fit, test_rows, good, k, size) -> int:
    """ZeroGPU time to ask for: fitting plus about 0.05 s per image scored on a GPU, with margin."""
    return int(min(300, 30 + 0.1 * (len(test_rows) + len(good) + len(fit))))


@GPU(duration=_stress_duration)
def evaluate_on_device(detector_name: str, key: str, fit: Sequence[np.ndarray], test_rows: list[dict],
                       good: Sequence[np.ndarray], k: int, size: int):
    """Fit (or reuse) the detector and run ``detect.evaluate`` on the GPU when there is one."""
    from detect.evaluate import evaluate

    detector = fitted_detector(detector_name, key, fit, size)
    detector.to(_device())
    try:
        return evaluate(test_rows, list(good), detector, ks=(k,), table_k=k, pixel_size=64, progress=True)
    finally:
        detector.to("cpu")


STRESS_COLUMNS = ["by", "value", "size_bin", "n", "detected", "recall"]


def stress_test(
    files: Any,
    image_path: str | None,
    method: str,
    detector_name: str,
    total: float,
    k: float,
    seed: float,
    progress: gr.Progress = gr.Progress(track_tqdm=True),
):
    """The paper's analysis on the user's images: recall at k false positives per shape and mode vs size bin."""
    import matplotlib.pyplot as plt

    from detect.errors import DetectError
    from detect.report import plot_recall_by_size

    paths = _paths(files) or ([image_path] if image_path else [example_paths()["brick"]])
    if len(paths) > STRESS_MAX_IMAGES:
        raise gr.Error(f"at most {STRESS_MAX_IMAGES} images per stress test; got {len(paths)}", print_exception=False)
    if method not in available_methods():
        raise gr.Error(f"unknown method {method!r}; choose from {', '.join(available_methods())}",
                       print_exception=False)
    total = _int(total, "number of anomalies", 1, STRESS_MAX)
    k = _int(k, "k (false positives)", 1, 5)
    seed = _int(seed, "seed", 0, 2**62)
    progress(0.0, desc="Reading images")
    images = [as_rgb(read_upload(p)) for p in paths]
    pool = [t for image in images for t in tiles(image, STRESS_GRID)]
    fit, good = pool[0::2], pool[1::2]
    side = min(min(t.shape[:2]) for t in pool)
    if side < MIN_SIDE or len(good) <= k:
        raise gr.Error(
            f"the images give {len(good)} anomaly-free test tiles of {side} px; k = {k} needs more than {k} "
            f"tiles of at least {MIN_SIDE} px: upload more or larger images",
            print_exception=False,
        )
    size = min(DETECT_SIZE, side)
    shapes, modes, bins = _stress_axes(method)
    cells = [(s, m, b) for b in bins for s in shapes for m in modes]
    test_rows, failures = [], []
    for j in progress.tqdm(range(total), desc=f"Generating {total} anomalies"):
        shape, mode, size_bin = cells[j % len(cells)]
        try:
            anomaly = synthesize(good[(j // len(cells) + j) % len(good)], method, seed=seed + j,
                                 shape=shape, mode=mode, size_bin=size_bin)
        except SynthError as exc:
            failures.append(str(exc))
            continue
        test_rows.append({"image": anomaly.image, "mask": anomaly.mask, **anomaly.record})
    if not test_rows:
        raise gr.Error(f"no anomaly could be made: {failures[0]}", print_exception=False)
    progress(0.5, desc=f"Fitting {detector_name} on {len(fit)} tiles (once, then cached) and scoring")
    try:
        result = evaluate_on_device(detector_name, f"stress:{detector_name}:{_files_key(paths)}", fit, test_rows,
                                    good, k, size)
    except DetectError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    parts = []
    for by, name in (("shape", "shape_size"), ("mode", "mode_size")):
        part = result.tables[name].rename(columns={by: "value"})
        part.insert(0, "by", by)
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)[STRESS_COLUMNS]
    table["recall"] = table["recall"].astype(float).round(3)
    budget = f"{k} false positive{'s' if k > 1 else ''}"
    figures = [plot_recall_by_size(result.tables[name], by, f"{detector_name}, {method}: per {by}, {budget}")
               for by, name in (("shape", "shape_size"), ("mode", "mode_size"))]
    for fig in figures:
        plt.close(fig)  # gradio draws the figure object itself; pyplot need not keep it
    summary = result.summary
    status = (f"{len(test_rows)} anomalies on {len(good)} anomaly-free tiles ({len(fit)} other tiles fitted "
              f"{detector_name} at {size} px). The threshold lets {summary['false_positives_at_k'][str(k)]} of "
              f"{len(good)} anomaly-free tiles through; overall recall **{summary['recall_at_k'][str(k)]:.1%}**, "
              f"image AUROC {summary['image_auroc']:.3f}."
              + (f" {len(failures)} anomalies could not be made (e.g. {failures[0]})." if failures else ""))
    return figures[0], figures[1], table, status


# ---------------------------------------------------------------------------------- datasets
BROWSE_COLUMNS = ["source_id", "method", "shape", "mode", "size_bin", "area_fraction", "brightness_delta",
                  "seed"]


def _unreachable(repo: str, version: str, exc: Exception) -> str:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return (f"### Could not load `{repo}` {version or '(latest)'}\n{reason}\n\n"
            "The Hugging Face Hub may be unreachable from this machine, or the dataset or version does "
            "not exist. Generate, Detect and Stress test work without it.")


def browse(repo: str, version: str, n_rows: float):
    """A few rows (image with mask outline, metadata) of one published dataset version."""
    import hub_tools

    repo, version = (repo or "").strip(), (version or "").strip()
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise gr.Error(f"give the dataset as ORG/NAME, got {repo!r}", print_exception=False)
    n_rows = _int(n_rows, "rows", 1, 24)
    try:
        if not version:
            versions = hub_tools.list_versions(repo)
            if not versions:
                return [], pd.DataFrame(columns=BROWSE_COLUMNS), f"`{repo}` has no published version yet."
            version = versions[-1].version
        data = hub_tools.load_version(repo, version)
    except Exception as exc:  # noqa: BLE001 -- network and Hub client errors come in many types; all mean "cannot load"
        return [], pd.DataFrame(columns=BROWSE_COLUMNS), _unreachable(repo, version, exc)
    if "test" not in data:
        return [], pd.DataFrame(columns=BROWSE_COLUMNS), f"`{repo}` {version} has no `test` split."
    split = data["test"]
    features = split.features
    folder = _work_dir()
    gallery, records = [], []
    for i in range(min(n_rows, len(split))):
        row = split[i]
        image, mask = np.asarray(row["image"]), np.asarray(row["mask"]) > 0
        if mask.ndim == 3:
            mask = mask.any(axis=2)
        record = {}
        for column in BROWSE_COLUMNS:
            value = row.get(column)
            names = getattr(features.get(column), "names", None)
            record[column] = names[value] if names is not None and isinstance(value, int) else value
        records.append(record)
        overlay = _png(folder, f"row_{i}.png", contour_overlay(image, mask, PREVIEW_SIDE))
        gallery.append((overlay, f"{record['shape']} · {record['mode']} · {record['size_bin']}"))
    status = f"`{repo}` version {version}: showing {len(records)} of {len(split)} rows of the `test` split."
    return gallery, pd.DataFrame(records, columns=BROWSE_COLUMNS), status


# -------------------------------------------------------------------------------------- page
INTRO = """# anomalyforge
Make synthetic anomalies with exact masks in **your own images** (SYNAGEN and other methods), then see
**where a detector is blind**: which shapes, modes and sizes it misses at one false positive.
Runs on CPU; uploads up to {max_file}, {max_mp:.1f} MP, at least {min_side}x{min_side} px.
Jobs wait in a queue when the app is busy; the position in the queue shows on the outputs.
"""


def build_demo() -> gr.Blocks:
    """The whole app as ``gr.Blocks`` (not launched). Endpoints: ``/generate``, ``/detect``,
    ``/stress_test``, ``/browse``."""
    examples = example_paths()
    methods = available_methods()
    default_method = "synagen" if "synagen" in methods else methods[0]
    shapes, modes, sized = method_options(default_method)
    bin_choices = [RANDOM, *(b.name for b in DEFAULT_BINS)]

    with gr.Blocks(title="anomalyforge", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO.format(max_file=MAX_FILE_SIZE.upper(), max_mp=MAX_UPLOAD_PIXELS / 1e6, min_side=MIN_SIDE))
        with gr.Tabs():
            # ---------------------------------------------------------------- Generate
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        image = uploaded_image(label="Image (anomaly-free)", value=examples["brick"],
                                               sources=["upload", "clipboard"], height=320, elem_id="image-in")
                        gr.Examples(examples=[[p] for p in examples.values()], inputs=[image],
                                    label="Examples (CC0 textures from scikit-image)")
                        method = gr.Dropdown(methods, value=default_method, label="Method")
                        with gr.Row():
                            # choices follow the method; the API may name any, generate() checks them
                            shape = gr.Dropdown(shapes, value=RANDOM, label="Shape", allow_custom_value=True)
                            mode = gr.Dropdown(modes, value=RANDOM, label="Mode", allow_custom_value=True)
                        with gr.Row():
                            size_bin = gr.Dropdown(bin_choices, value=RANDOM, label="Size bin", allow_custom_value=True,
                                                   info="share of image pixels the anomaly changes")
                            count = gr.Slider(1, MAX_COUNT, value=4, step=1, label="Count")
                            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                        with gr.Accordion("Region where anomalies may appear (optional)", open=False):
                            region_drawing = gr.ImageEditor(
                                label="Paint the allowed region", type="numpy", image_mode="RGBA",
                                sources=[], transforms=[], layers=False,
                                brush=gr.Brush(colors=["#ff0000"], default_size=24, color_mode="fixed"),
                                height=360, value={"background": examples["brick"], "layers": [], "composite": None},
                            )
                            region_mask = uploaded_image(label="...or upload a mask (white = allowed, same size)",
                                                         sources=["upload"], height=200)
                        generate_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                    with gr.Column(scale=2):
                        status = gr.Markdown()
                        gallery = gr.Gallery(label="Anomalies (mask outline in red)", columns=4, height=360,
                                             object_fit="contain", format="png", elem_id="gallery")
                        with gr.Row():
                            slider = gr.ImageSlider(label="Before / after", type="filepath", height=360)
                            mask_view = gr.Image(label="Mask", type="filepath", height=360, interactive=False)
                        table = gr.Dataframe(value=pd.DataFrame(columns=TABLE_COLUMNS), interactive=False, wrap=True,
                                             label="Metadata (one row per anomaly)", elem_id="metadata")
                        files = gr.File(label="Download: zip (imagefolder layout) and parquet", file_count="multiple",
                                        interactive=False, height=120)
                views = gr.State([])
                method.change(on_method_change, method, [shape, mode, size_bin], api_visibility="private")
                image.change(on_image_change, image, region_drawing, api_visibility="private")
                generate_btn.click(
                    generate,
                    [image, method, shape, mode, size_bin, count, seed, region_drawing, region_mask],
                    [gallery, slider, mask_view, table, files, status, views],
                    api_name="generate",
                )
                gallery.select(show_selected, views, [slider, mask_view], api_visibility="private")

            # ---------------------------------------------------------------- Detect
            with gr.Tab("Detect", id="detect"):
                with gr.Row():
                    with gr.Column(scale=1):
                        detector = gr.Dropdown(list(DETECTORS), value="patchcore", label="Detector")
                        fit_files = gr.File(label="Anomaly-free images to fit on (optional; 2+ recommended)",
                                            file_count="multiple", file_types=["image"], type="filepath")
                        example = gr.Dropdown(list(EXAMPLE_NAMES), value="brick",
                                              label="...or use the detector fitted on an example texture")
                        test_files = gr.File(label="Images to score", file_count="multiple", file_types=["image"],
                                             type="filepath")
                        use_generated = gr.Button("Score the anomalies made in Generate", size="sm")
                        detect_btn = gr.Button("Detect", variant="primary")
                    with gr.Column(scale=2):
                        detect_status = gr.Markdown()
                        heatmaps = gr.Gallery(label="Anomaly heatmaps", columns=3, height=420, format="png")
                        scores = gr.Dataframe(value=pd.DataFrame(columns=DETECT_COLUMNS), label="Image scores",
                                              interactive=False)
                use_generated.click(generated_files, views, test_files, api_visibility="private")
                detect_btn.click(detect, [detector, fit_files, example, test_files],
                                 [heatmaps, scores, detect_status], api_name="detect",
                                 concurrency_id="detector", concurrency_limit=1)

            # ---------------------------------------------------------------- Stress test
            with gr.Tab("Stress test", id="stress"):
                gr.Markdown(
                    "Each image is cut into 4x4 tiles: alternate tiles fit the detector, the others are "
                    "the anomaly-free test tiles. Anomalies cycle through every shape x mode x size bin of "
                    "the method on those tiles; the threshold lets exactly *k* anomaly-free tiles through. "
                    "Without uploads it runs on the Generate tab's image.")
                with gr.Row():
                    with gr.Column(scale=1):
                        stress_files = gr.File(label="Anomaly-free images (optional)", file_count="multiple",
                                               file_types=["image"], type="filepath")
                        stress_method = gr.Dropdown(methods, value=default_method, label="Method")
                        stress_detector = gr.Dropdown(list(DETECTORS), value="patchcore", label="Detector")
                        stress_total = gr.Slider(10, STRESS_MAX, value=100, step=10, label="Anomalies")
                        stress_k = gr.Slider(1, 5, value=1, step=1, label="k (false positives allowed)")
                        stress_seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                        stress_btn = gr.Button("Run stress test", variant="primary")
                    with gr.Column(scale=2):
                        stress_status = gr.Markdown()
                        with gr.Row():
                            shape_plot = gr.Plot(label="Recall per shape against size bin")
                            mode_plot = gr.Plot(label="Recall per mode against size bin")
                        stress_table = gr.Dataframe(label="Recall per group", interactive=False)
                stress_btn.click(stress_test,
                                 [stress_files, image, stress_method, stress_detector, stress_total, stress_k,
                                  stress_seed],
                                 [shape_plot, mode_plot, stress_table, stress_status], api_name="stress_test",
                                 concurrency_id="detector", concurrency_limit=1)

            # ---------------------------------------------------------------- Datasets
            with gr.Tab("Datasets", id="datasets"):
                gr.Markdown("Browse a published synthetic dataset version (needs the Hugging Face Hub).")
                with gr.Row():
                    repo = gr.Textbox(value=DEFAULT_DATASET, label="Dataset (ORG/NAME)", placeholder="ORG/NAME")
                    version = gr.Textbox(value="", label="Version (e.g. 1.0.0; empty = latest)")
                    n_rows = gr.Slider(1, 24, value=8, step=1, label="Rows")
                browse_btn = gr.Button("Load rows")
                browse_status = gr.Markdown()
                browse_gallery = gr.Gallery(label="Rows (mask outline in red)", columns=4, height=360, format="png")
                browse_table = gr.Dataframe(label="Metadata", interactive=False)
                browse_btn.click(browse, [repo, version, n_rows], [browse_gallery, browse_table, browse_status],
                                 api_name="browse")
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


def launch(demo: gr.Blocks, **options: Any):
    """Launch with the app's limits (upload size, allowed example folder); ``options`` go to ``launch``."""
    options.setdefault("max_file_size", MAX_FILE_SIZE)
    options.setdefault("allowed_paths", [str(WORK_ROOT)])
    options.setdefault("show_error", False)
    return demo.launch(**options)


if __name__ == "__main__":
    launch(build_demo())
