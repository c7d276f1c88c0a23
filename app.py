"""anomalyforge Space: make synthetic anomalies in your own images and see where a detector is blind.

``python app.py`` serves the app on http://127.0.0.1:7860 (CPU is enough). Gradio's own variables
move it: ``GRADIO_SERVER_NAME=0.0.0.0`` to listen on every interface, ``GRADIO_SERVER_PORT=8080``
for another port (a Hugging Face Space sets both itself); the app's own settings are read once,
at start, by ``SpaceConfig.from_environment``. It starts on three CC0 example textures from
scikit-image (brick, grass, gravel), and every tab's main button works before anything is uploaded.

Tabs: **Generate** (anomalies with masks and metadata, downloadable in the ``imagefolder`` layout),
**Detect** (PatchCore or PaDiM fitted on the same kind of image it scores), **Stress test**
(``detect.evaluation.stress``: recall at k false positives per shape and mode against size bin, with 95 %
intervals), **Datasets** (rows of the dataset made here, or of a published version on the Hub,
read anonymously or as the signed-in visitor -- never with the Space's own token).

This file holds widgets and calls only: anomalies come from ``synth``, detectors, the stress test
and metrics from ``detect``, published datasets from ``hub_tools``. GPU work runs in functions
decorated with ``spaces.GPU`` (a ZeroGPU Space lends a GPU for their duration; elsewhere the
decorator is absent or does nothing, and the same code runs on a GPU Space or on CPU).

Limits: uploads up to 20 MB and 16.7 megapixels (decompression bombs are refused before decoding),
at least 32x32 pixels; 16 anomalies per Generate click; 40 images per Detect click; the queue runs
2 jobs at once (1 detector job) and holds 64 waiting. Disk: each session keeps only its newest
click per tab; a session's files go when its page closes or 15 minutes after its last click, and
all sessions together stay under ``SpaceConfig.disk_budget`` (2 GB; the oldest sessions go first).
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
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import gradio as gr
import numpy as np
import pandas as pd
import skimage.data

from synth import (
    DEFAULT_BINS,
    Anomaly,
    InvalidImageError,
    SynthError,
    decode_image,
    get_method,
    method_names,
    synthesize,
)
from synth.export import export_parquet, export_rows, export_zip
from synth.image import save_png
from synth.preview import contour_overlay, display_rgb, heatmap_overlay, mask_preview, region_from_layers, shrink
from synth.record import RECORD_COLUMNS, Column
from synth.version import tool_version

from detect.evaluation.stress import TEXTURE_SPREAD_LIMIT, StressConfig, mirror_split, run_stress, texture_spread
from detect.images import as_colour
from detect.registry import FittedDetectors

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
#: the parquet download repeats the zip's images; above this zip size only the zip is offered
PARQUET_MAX_BYTES = 64 * 1024 * 1024

RANDOM = "random"
DETECTORS = ("patchcore", "padim")
#: an uploaded detector: ONNX only (loading it runs no code), at most this big, scored within this time per run
MODEL_SUFFIX = ".onnx"
MAX_MODEL_BYTES = 20 * 1024 * 1024
MODEL_TIME_LIMIT_S = 120


@dataclass(frozen=True)
class SpaceConfig:
    """Settings of one running app. ``from_environment`` reads them once, at start.

    ``work_root``     where per-click files go (``None``: a folder inside gradio's own cache, so
                      gradio serves them without a second copy).
    ``disk_budget``   bytes all sessions' files may take together; the oldest go first.
    ``work_ttl_s``    seconds a session's files are kept after its last click.
    ``on_space``      running on a Hugging Face Space: offers "Sign in with Hugging Face".
    """

    concurrency: int = 2
    queue_size: int = 64
    dataset: str = ""
    detect_size: int = 256
    work_root: Path | None = None
    disk_budget: int = 2 * 1024**3
    work_ttl_s: int = 900
    on_space: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "SpaceConfig":
        """``ANOMALYFORGE_CONCURRENCY``, ``_QUEUE_SIZE``, ``_DATASET``, ``_DETECT_SIZE``,
        ``_WORK_DIR``, ``_DISK_BUDGET_MB``, ``_WORK_TTL_S``; ``SPACE_ID`` (set by Spaces)."""
        env = os.environ if environ is None else environ

        def number(name: str, default: int) -> int:
            text = env.get(name, "")
            try:
                return int(text) if text else default
            except ValueError:
                raise SystemExit(f"{name}={text!r} is not a whole number") from None

        work = env.get("ANOMALYFORGE_WORK_DIR", "")
        return cls(
            concurrency=number("ANOMALYFORGE_CONCURRENCY", cls.concurrency),
            queue_size=number("ANOMALYFORGE_QUEUE_SIZE", cls.queue_size),
            dataset=env.get("ANOMALYFORGE_DATASET", ""),
            detect_size=number("ANOMALYFORGE_DETECT_SIZE", cls.detect_size),
            work_root=Path(work) if work else None,
            disk_budget=number("ANOMALYFORGE_DISK_BUDGET_MB", cls.disk_budget // 1024**2) * 1024**2,
            work_ttl_s=number("ANOMALYFORGE_WORK_TTL_S", cls.work_ttl_s),
            on_space=bool(env.get("SPACE_ID")),
        )


# ------------------------------------------------------------------------------------- files
class WorkArea:
    """Per-session folders for the files a click writes, with bounded disk use.

    Layout: ``root/<session>/<tab>-<id>/``. A click replaces the previous folder of the same tab
    and session (the page shows only the newest results), a closed tab removes its session's
    folders (``Blocks.unload``), sessions untouched for ``ttl_s`` are removed by a timer that
    checks every ``expiry_period(ttl_s)`` seconds (also for a client that never clicks again or
    never closes its page), and while all folders together exceed ``budget`` bytes the least
    recently used sessions are removed first. ``root/examples`` holds the example textures and
    is never removed.
    """

    def __init__(self, root: Path, budget: int, ttl_s: int) -> None:
        self.root, self.budget, self.ttl_s = Path(root), int(budget), int(ttl_s)
        self._lock = threading.Lock()
        _start_expiry_timer(self)

    def folder(self, session: str | None, tab: str) -> Path:
        """A fresh empty folder for one click of ``tab`` in ``session``."""
        session_dir = self.root / _session_name(session)
        with self._lock:
            for old in session_dir.glob(f"{tab}-*"):
                shutil.rmtree(old, ignore_errors=True)
            self._expire(keep=session_dir)
            folder = session_dir / f"{tab}-{uuid.uuid4().hex[:12]}"
            folder.mkdir(parents=True)
            os.utime(session_dir)
        return folder

    def release(self, session: str | None) -> None:
        """Remove every file of ``session`` (its browser tab closed)."""
        with self._lock:
            shutil.rmtree(self.root / _session_name(session), ignore_errors=True)

    def expire(self) -> None:
        """Remove the sessions untouched for ``ttl_s`` now (the budget is kept by the clicks,
        which are what adds files)."""
        with self._lock:
            self._drop_expired(keep=None)

    def usage(self) -> int:
        """Bytes under the root, example textures included."""
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())

    def _expire(self, keep: Path) -> None:
        """Drop expired sessions, then the least recently used ones while over the budget (never ``keep``)."""
        sessions = self._drop_expired(keep)
        total = self.usage()
        for _, path in sorted(sessions):
            if total <= self.budget:
                break
            if path == keep:
                continue
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            shutil.rmtree(path, ignore_errors=True)
            total -= size

    def _drop_expired(self, keep: Path | None) -> list[tuple[float, Path]]:
        """Remove the sessions (but ``keep``) untouched for ``ttl_s``; return ``(mtime, path)`` of the rest."""
        now = time.time()
        sessions = []
        for path in self.root.glob("s-*"):
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue  # removed meanwhile
            if path != keep and now - mtime > self.ttl_s:
                shutil.rmtree(path, ignore_errors=True)
            else:
                sessions.append((mtime, path))
        return sessions


def expiry_period(ttl_s: int) -> int:
    """Seconds between two expiry checks: a session's files outlive ``ttl_s`` by at most this."""
    return min(60, max(1, ttl_s // 4))


def _start_expiry_timer(work: WorkArea) -> None:
    """Run ``work.expire()`` every ``expiry_period`` seconds in a daemon thread, for as long as
    ``work`` is in use (the thread holds it weakly and ends once it is gone)."""
    ref, period = weakref.ref(work), expiry_period(work.ttl_s)

    def loop() -> None:
        while True:
            time.sleep(period)
            area = ref()
            if area is None:
                return
            area.expire()
            del area

    threading.Thread(target=loop, name="work-area-expiry", daemon=True).start()


def _session_name(session: str | None) -> str:
    # gradio's session hashes are short alphanumerics; anything else is hashed to stay a plain name
    text = session or "anonymous"
    return "s-" + (text if text.isalnum() and len(text) <= 64 else hashlib.sha256(text.encode()).hexdigest()[:24])


def _png(folder: Path, name: str, image: np.ndarray) -> str:
    path = folder / name
    save_png(path, image)
    return str(path)


# ------------------------------------------------------------------------------------ inputs
def checked_input(component: gr.components.Component, what: str, expected: str) -> gr.components.Component:
    """Answer a value the component cannot read with a message naming the input, not ``{"error": null}``.

    gradio validates and converts each input (``data_model``, ``preprocess``) before the app's
    function runs, and a failure there reaches an API caller as a bare error. Both steps are
    wrapped here, on the instance (a subclass would make gradio write a ``.pyi`` stub).
    """

    def refuse(value: Any) -> gr.Error:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return gr.Error(f"{what}: expected {expected}, got {shown}", title="Invalid input", print_exception=False)

    preprocess = component.preprocess

    def checked_preprocess(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception:  # noqa: BLE001 -- any failure to read the value means the same to the caller
            raise refuse(getattr(payload, "model_dump", lambda: payload)()) from None

    component.preprocess = checked_preprocess
    model = getattr(component, "data_model", None)
    if model is not None:
        component.data_model = _CheckedModel(model, refuse)
    return component


#: what a file-list input expects, as its refusal says
UPLOADED_FILES = "a list of uploaded image files"


def answer_every_error_with_a_message(demo: gr.Blocks) -> None:
    """Make every failure of a request reach the caller as a ``gr.Error`` with a message.

    The app's own errors are ``gr.Error``s already; what is left is raised by gradio around them --
    a file argument naming a path that was not uploaded (``InvalidPathError``), or a failure no
    handler foresaw -- and would reach an API caller as ``{"error": null}``. Wrapped on the
    instance, like ``checked_input``.
    """
    from gradio.exceptions import InvalidPathError

    process_api = demo.process_api

    async def answered(*args: Any, **kwargs: Any) -> Any:
        try:
            return await process_api(*args, **kwargs)
        except gr.Error:
            raise
        except InvalidPathError as exc:
            raise gr.Error(f"file argument refused: {exc} Send files as uploads (gradio_client: handle_file).",
                           title="Invalid input", print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 -- whatever it is, the caller gets its name and message
            raise gr.Error(f"the request failed: {type(exc).__name__}: {exc}", title="Error") from exc

    demo.process_api = answered  # type: ignore[method-assign]


class _CheckedModel:
    """A component's pydantic ``data_model`` whose validation failure becomes a ``gr.Error``."""

    def __init__(self, model: Any, refuse: Callable[[Any], gr.Error]) -> None:
        self._model, self._refuse = model, refuse

    def model_validate(self, value: Any, **options: Any) -> Any:
        try:
            return self._model.model_validate(value, **options)
        except Exception:  # noqa: BLE001 -- pydantic raises ValidationError, TypeError or ValueError
            raise self._refuse(value) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


# ---------------------------------------------------------------------------------- examples
EXAMPLE_NAMES = ("brick", "grass", "gravel")


def example_paths(folder: Path) -> dict[str, str]:
    """The example textures as PNG files in ``folder`` (written once), name -> path."""
    paths = {}
    for name in EXAMPLE_NAMES:
        path = Path(folder) / f"{name}.png"
        if not path.is_file():
            save_png(path, getattr(skimage.data, name)())
        paths[name] = str(path)
    return paths


def example_image(name: str) -> np.ndarray:
    return getattr(skimage.data, name)()


# ----------------------------------------------------------------------------------- uploads
def uploaded_image(what: str, **options: Any) -> gr.Image:
    """A ``gr.Image`` (``type="filepath"``) whose uploads reach the app as undecoded files.

    Gradio's own preprocessing opens every upload with Pillow before the app sees it, so a text
    file or a corrupt PNG fails there with a bare "Error". Here the file's path comes through and
    ``read_upload`` decodes it with ``synth.decode_image`` (16-bit kept, pixel limit checked from
    the header), answering bad files with a message the user can act on. (An instance attribute,
    not a subclass: gradio writes a ``.pyi`` stub beside every module that subclasses a component.)
    """
    component = gr.Image(type="filepath", **options)
    component.preprocess = _upload_path
    return checked_input(component, what, "an uploaded image file")


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


def readable_uploads(paths: Sequence[str]) -> tuple[list[np.ndarray], list[str]]:
    """The images of ``paths`` that decode, and the names of those skipped (each said in a warning);
    ``gr.Error`` when none is usable."""
    images, skipped, reasons = [], [], []
    for path in paths:
        try:
            images.append(read_upload(path))
        except gr.Error as exc:
            skipped.append(Path(path).name)
            reasons.append(exc.message)
    if not images:
        raise gr.Error(reasons[0], title="Not a usable image", print_exception=False)
    for reason in reasons:
        gr.Warning(f"Skipped: {reason}")
    return images, skipped


def check_uploads(files: Any) -> None:
    """Say at upload, not at the button, which files cannot be used (not an image, too small,
    over the pixel limit): one warning each."""
    for path in _paths(files):
        try:
            read_upload(path)
        except gr.Error as exc:
            gr.Warning(exc.message)


def cleared() -> str:
    """A status pane emptied as a run starts, so that an error never sits above the last success."""
    return ""


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


#: the record columns of each generated anomaly (``params``, long JSON, stays in the downloads)
_SHOWN = [c for c in RECORD_COLUMNS if c.name != "params"]
TABLE_COLUMNS = ["area_%" if c.name == "area_fraction" else c.name for c in _SHOWN] + ["file_name"]


def _cell(column: Column, value: Any) -> Any:
    if column.name == "area_fraction":
        return round(100.0 * float(value), 4)
    if column.kind == "float32":
        return round(float(value), 1 if column.name == "angle" else 4)
    if column.kind == "bbox":
        return " ".join(str(v) for v in value)
    return int(value) if column.kind == "int64" else value


def _table(rows: Sequence[dict]) -> pd.DataFrame:
    records = [dict(zip(TABLE_COLUMNS, [*(_cell(c, row[c.name]) for c in _SHOWN), row["file_name"]])) for row in rows]
    return pd.DataFrame(records, columns=TABLE_COLUMNS)


# ------------------------------------------------------------------------------------ device
def serving_device() -> str:
    """Where detectors run in this process, in words: "GPU (name)" or "CPU"."""
    import torch

    device = torch.device(_torch_device())
    return f"GPU ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "CPU"


def _torch_device() -> str:
    from detect.runtime import choose_device

    return str(choose_device())


#: fitted detectors shared by every visitor (a few kept; fitting is the slow part)
FITTED = FittedDetectors(capacity=4)


def uploaded_model(path: str | None) -> tuple[str, dict[str, Any]] | None:
    """(detector name, options) for an uploaded model file, or None without one. Only ONNX: a pickle
    or a Python file would run the visitor's code on the server. The options bound the run's time."""
    if not path:
        return None
    name = Path(path).name
    if Path(path).suffix.lower() != MODEL_SUFFIX:
        raise gr.Error(f"{name}: upload an ONNX model ({MODEL_SUFFIX}, e.g. anomalib's model.onnx). Pickles (.pt, "
                       ".pth, .ckpt, .pkl) and Python files run code when loaded, so the Space never loads them; "
                       "analyse those with the command line on your own machine", print_exception=False)
    if os.path.getsize(path) > MAX_MODEL_BYTES:
        raise gr.Error(f"{name} is {_size_text(os.path.getsize(path))}; models up to {_size_text(MAX_MODEL_BYTES)} "
                       "are run here (the command line takes any size)", print_exception=False)
    return f"onnx:{path}", {"time_limit_s": MODEL_TIME_LIMIT_S}


@GPU(duration=60)
def score_on_device(name: str, key: str, fit_images: Sequence[np.ndarray], batches: Sequence[Sequence[np.ndarray]],
                    size: int, **options: Any):
    """Fit (or reuse) a detector and score each batch of images, on the GPU when there is one. An
    uploaded model (``options`` set) is built for this run only, so its time limit counts from now."""
    cache = FittedDetectors(capacity=1) if options else FITTED
    detector = cache.get(name, key, fit_images, device=_torch_device(), image_size=size, **options)
    detector.to(_torch_device())
    try:
        return [detector.score(list(batch)) for batch in batches], serving_device()
    finally:
        detector.to("cpu")


def render_batched(image: np.ndarray, method: str, seeds: Sequence[int], *, shape: str | None, mode: str | None,
                   size_bin: str | None, region: np.ndarray | None, textures: Sequence[np.ndarray],
                   device: str) -> tuple[list[Anomaly], list[str]]:
    """(anomalies, failure messages): one anomaly per seed from ``synth.batched``'s torch renderer,
    all seeds in one batch on ``device``. The specs are those ``synthesize`` draws for the seeds."""
    import torch

    from synth.batched import render_batch, sample_specs, to_anomalies
    from synth.region import normalize_region

    array = image if image.ndim == 3 else image[:, :, None]
    one = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].to(device)
    regions = None
    if region is not None:
        regions = torch.from_numpy(normalize_region(region, image.shape[0], image.shape[1]))[None].to(device)
    specs = []
    for seed in seeds:
        specs += sample_specs(one, method, seeds=[seed], shape=shape, mode=mode, size_bin=size_bin, regions=regions,
                              textures=textures)
    out = render_batch(one.expand(len(specs), -1, -1, -1), specs, textures=textures, method=method, strict=False,
                       regions=None if regions is None else regions.expand(len(specs), -1, -1))
    anomalies, failures = [], []
    for seed, anomaly in zip(seeds, to_anomalies(out, gray=image.ndim == 2)):
        if anomaly is None:
            failures.append(f"seed {seed}: could not bring the anomaly into its size bin; try another seed or bin")
        else:
            anomalies.append(anomaly)
    return anomalies, failures


@GPU(duration=60)
def make_anomalies(image: np.ndarray, method: str, seeds: Sequence[int], *, shape: str | None, mode: str | None,
                   size_bin: str | None, region: np.ndarray | None, textures: Sequence[np.ndarray]):
    """(anomalies, failure messages, device in words). With a GPU, a method that has a batched
    renderer renders every seed there at once; otherwise ``synth.synthesize`` per seed on the CPU."""
    from synth.batched import BATCHED_METHODS

    device = _torch_device()
    if device.startswith("cuda") and method in BATCHED_METHODS:
        return (*render_batched(image, method, seeds, shape=shape, mode=mode, size_bin=size_bin, region=region,
                                textures=textures, device=device), serving_device())
    anomalies, failures = [], []
    for seed in seeds:
        try:
            anomalies.append(synthesize(image, method, seed=seed, shape=shape, mode=mode, size_bin=size_bin,
                                        region=region, textures=textures))
        except SynthError as exc:
            failures.append(f"seed {seed}: {exc}")
    return anomalies, failures, "CPU"


def _stress_duration(images, config) -> int:
    """ZeroGPU time to ask for: fitting plus about 0.05 s per image scored on a GPU, with margin."""
    return int(min(300, 30 + 0.1 * (config.anomalies + 8 * len(images) * config.grid**2)))


@GPU(duration=_stress_duration)
def stress_on_device(images: Sequence[np.ndarray], config: StressConfig, **options: Any):
    """``detect.evaluation.stress.run_stress`` on the GPU when there is one (detectors shared through
    ``FITTED``; an uploaded model, ``options`` set, is built for this run only)."""
    return run_stress(images, config, detectors=None if options else FITTED, device=_torch_device(), progress=True,
                      detector_options=options), serving_device()


# ---------------------------------------------------------------------------------- generate
def generate_status(count: int, method: str, region_source: str | None, parquet: bool) -> str:
    return (f"Made {count} anomal{'y' if count == 1 else 'ies'} with **{method}**"
            f"{' inside the ' + region_source + ' region' if region_source else ''}. "
            "The zip holds `images/`, `masks/` and `metadata.jsonl` "
            "(`datasets.load_dataset(\"imagefolder\", data_dir=...)` reads it)"
            + ("; the parquet holds the same rows." if parquet else
               f"; the parquet is left out above {PARQUET_MAX_BYTES // 1024**2} MB (it would repeat the zip).")
            + " Next: the **Detect** tab scores these anomalies.")


DETECT_COLUMNS = ["file", "verdict", "x threshold", "score", "threshold"]
STRESS_COLUMNS = ["by", "value", "size_bin", "n", "detected", "recall", "recall_low", "recall_high"]
BROWSE_COLUMNS = ["source_id", "method", "shape", "mode", "size_bin", "area_%", "brightness_delta", "seed"]
GENERATED = "the Generate tab's image"
#: anomalies scored by a Detect click with nothing generated and nothing uploaded
DETECT_DEMO_COUNT = 3


def _paths(files: Any) -> list[str]:
    if not files:
        return []
    if isinstance(files, (str, os.PathLike)):
        return [str(files)]
    return [str(getattr(f, "name", f)) for f in files]


def _files_key(paths: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return digest.hexdigest()[:16]


def colour_bar(path: Path, detector: str) -> str:
    """A horizontal colour bar for the heatmaps: typical anomaly-free level, threshold, twice as far."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.cm import ScalarMappable

    fig, ax = plt.subplots(figsize=(6.0, 0.9), dpi=110)
    bar = fig.colorbar(ScalarMappable(Normalize(0, 2), colormaps["inferno"]), cax=ax, orientation="horizontal",
                       ticks=[0, 1, 2])
    bar.ax.set_xticklabels(["typical anomaly-free", "threshold", "2x threshold"], fontsize=8)
    bar.ax.set_title(f"{detector} anomaly map, per image: transparent below the typical level", fontsize=8)
    fig.subplots_adjust(left=0.16, right=0.84, top=0.62, bottom=0.38)  # room for the end labels
    fig.savefig(path)
    plt.close(fig)
    return str(path)


class Space:
    """The app's event handlers, with the state they share made explicit: the settings, the per-
    session file area, and the example textures. ``build_demo`` wires them to the widgets."""

    def __init__(self, config: SpaceConfig, work: WorkArea) -> None:
        self.config, self.work = config, work
        self.examples = example_paths(work.root / "examples")

    # ----------------------------------------------------------------------------- generate
    def generate(
        self,
        image_path: str | None,
        method: str,
        shape: str,
        mode: str,
        size_bin: str,
        count: float,
        seed: float,
        region_drawing: dict | None,
        region_mask_path: str | None,
        request: gr.Request,
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
        bin_arg = _choice(size_bin, [b.name for b in DEFAULT_BINS], "size bin") if sized else None
        count = _int(count, "count", 1, MAX_COUNT)
        seed = _int(seed, "seed", 0, 2**62)
        region, region_source = _region(image, region_drawing, region_mask_path)
        textures = tuple(example_image(name) for name in EXAMPLE_NAMES)  # for the "texture" modes

        progress(0.1, desc=f"Generating {count} anomalies")
        try:
            anomalies, failures, device = make_anomalies(image, method, range(seed, seed + count), shape=shape_arg,
                                                         mode=mode_arg, size_bin=bin_arg, region=region,
                                                         textures=textures)
        except SynthError as exc:  # a problem of every seed alike (e.g. the region is too small)
            raise gr.Error(str(exc), title="No anomaly could be made", print_exception=False) from None
        if not anomalies:
            raise gr.Error(failures[0], title="No anomaly could be made", print_exception=False)
        if failures:
            gr.Warning(f"{len(failures)} of {count} anomalies could not be made ({failures[0]}).")

        folder = self.work.folder(request.session_hash, "generate")
        source_id = Path(image_path).name
        rows = export_rows(anomalies, source_id)
        before = _png(folder, "before.png", display_rgb(image, PREVIEW_SIDE))
        gallery, views = [], []
        for i, (anomaly, row) in enumerate(zip(anomalies, rows)):
            overlay = _png(folder, f"overlay_{i}.png", contour_overlay(anomaly.image, anomaly.mask, PREVIEW_SIDE))
            after = _png(folder, f"after_{i}.png", display_rgb(anomaly.image, PREVIEW_SIDE))
            mask = _png(folder, f"mask_{i}.png", mask_preview(anomaly.mask, PREVIEW_SIDE))
            caption = f"{row['shape']} · {row['mode']} · {row['size_bin']} · seed {row['seed']}"
            gallery.append((overlay, caption))
            views.append({"before": before, "after": after, "mask": mask, "source": str(image_path),
                          "name": Path(row["file_name"]).name})
        config = {
            "tool": f"anomalyforge {tool_version()} (Space)",
            "method": method, "shape": shape_arg, "mode": mode_arg, "size_bin": bin_arg,
            "count": count, "seed": seed, "source_id": source_id, "region": region_source,
        }
        stem = Path(source_id).stem or "image"
        downloads = [str(export_zip(anomalies, folder / f"{stem}_{method}_seed{seed}.zip", source_id, config=config))]
        parquet = Path(downloads[0]).stat().st_size <= PARQUET_MAX_BYTES
        if parquet:
            downloads.append(str(export_parquet(anomalies, folder / f"{stem}_{method}_seed{seed}.parquet", source_id)))
        generated = {"views": views, "parquet": downloads[1] if parquet else None}
        return (
            gallery,
            (views[0]["before"], views[0]["after"]),
            views[0]["mask"],
            _table(rows),
            downloads,
            generate_status(len(anomalies), method, region_source, parquet) + f" Served on **{device}**.",
            generated,
        )

    # ------------------------------------------------------------------------------- detect
    def detect(
        self,
        detector_name: str,
        fit_files: Any,
        reference: str,
        test_files: Any,
        image_path: str | None,
        generated: dict | None,
        request: gr.Request,
        model_file: Any = None,
        progress: gr.Progress = gr.Progress(),
    ):
        """Score images with a detector fitted on the same kind of image.

        Test images: the uploads, else the anomalies made in Generate (with their clean source),
        else a few anomalies made here on the Generate tab's image. Fit images: the anomaly-free
        uploads, else the Generate tab's image (or an example texture) and its mirror images.
        """
        from detect.errors import DetectError

        if detector_name not in DETECTORS:
            raise gr.Error(f"unknown detector {detector_name!r}; choose from {', '.join(DETECTORS)}",
                           print_exception=False)
        uploaded = uploaded_model(model_file)
        model_options = {}
        if uploaded is not None:
            detector_name, model_options = uploaded
        shown = Path(detector_name.split(":", 1)[1]).name if uploaded else detector_name
        choices = (GENERATED, *EXAMPLE_NAMES)
        if reference not in choices:
            raise gr.Error(f"unknown reference {reference!r}; choose from {', '.join(choices)}", print_exception=False)
        fit_paths, test_paths = _paths(fit_files), _paths(test_files)
        if len(fit_paths) + len(test_paths) > MAX_DETECT_IMAGES:
            raise gr.Error(f"at most {MAX_DETECT_IMAGES} images per run (fit + test); got "
                           f"{len(fit_paths) + len(test_paths)}", print_exception=False)
        progress(0.05, desc="Reading images")
        source_path = image_path or self.examples["brick"]
        views = (generated or {}).get("views") or []
        # (name, image, truth): truth is None (unknown), CLEAN, or the anomaly's bool mask
        if test_paths:
            tests = [(Path(p).name, as_colour(read_upload(p, "test image")), None) for p in test_paths]
            what = f"{len(tests)} uploaded image(s)"
        elif views and (reference != GENERATED or views[0]["source"] == source_path):
            tests = [("clean source", as_colour(read_upload(views[0]["before"], "clean image")), CLEAN)]
            tests += [(v["name"], as_colour(read_upload(v["after"], "generated image")),
                       read_upload(v["mask"], "mask")[..., 0] > 0) for v in views]
            what = f"the {len(views)} anomalies made in Generate and their clean source"
        else:
            source = read_upload(source_path)
            method = "synagen" if "synagen" in available_methods() else available_methods()[0]
            tests = [("clean source", as_colour(display_rgb(source, PREVIEW_SIDE)), CLEAN)]
            for seed in range(DETECT_DEMO_COUNT):
                anomaly = synthesize(source, method, seed=seed, size_bin=DEFAULT_BINS[-1].name)
                tests.append((f"{method} seed {seed} ({anomaly.record['shape']}, {anomaly.record['mode']})",
                              as_colour(display_rgb(anomaly.image, PREVIEW_SIDE)),
                              shrink(anomaly.mask.astype(np.uint8) * 255, PREVIEW_SIDE) > 0))
            what = (f"{DETECT_DEMO_COUNT} large {method} anomalies made now on {Path(source_path).name} "
                    "and the clean image (generate or upload to score your own)")
        if fit_paths:
            goods = [as_colour(read_upload(p, "anomaly-free image")) for p in fit_paths]
            # with two or more, the last one is held out to measure the normal range honestly
            fits, held_out = (goods[:-1], goods[-1:]) if len(goods) > 1 else (goods, goods)
            key = f"uploads:{_files_key(fit_paths)}"
            source = f"{len(fits)} uploaded anomaly-free image(s)"
            held = ("the held-out last anomaly-free image" if len(goods) > 1
                    else "the fit image itself (upload 2+ for a held-out reference)")
            one_image = len(goods) < 3
        else:
            path = source_path if reference == GENERATED else self.examples[reference]
            base = read_upload(path, "reference image")
            fits, held_out = mirror_split(display_rgb(base, PREVIEW_SIDE))
            key = f"mirror:{_files_key([path])}"
            source = (f"**{Path(path).name}** ({'the Generate tab' if reference == GENERATED else 'example'} image) "
                      "and its two mirror images")
            held = "the same image turned by 180 degrees"
            one_image = True
        unlike = [name for name, image, _ in tests if texture_spread([fits[0], image]) > TEXTURE_SPREAD_LIMIT]
        if unlike:
            gr.Warning(f"{', '.join(unlike[:3])}{' ...' if len(unlike) > 3 else ''} look unlike the images the "
                       "detector is fitted on, so they will score high whatever they show: upload anomaly-free "
                       "images of their kind (or choose another image to fit on).")
        progress(0.2, desc=f"Scoring with {shown}" if uploaded else f"Fitting {shown} (once, then cached) and scoring")
        try:
            (normal, result), device = score_on_device(detector_name, key, fits, [held_out, [t for _, t, _ in tests]],
                                                       self.config.detect_size, **model_options)
        except DetectError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        progress(0.9, desc="Drawing heatmaps")
        threshold = float(np.max(normal.scores))
        typical = float(np.median([np.median(m) for m in normal.maps]))
        top = typical + 2.0 * max(threshold - typical, 1e-9)
        folder = self.work.folder(request.session_hash, "detect")
        gallery, rows = [], []
        for i, ((name, image, truth), score, amap) in enumerate(zip(tests, result.scores, result.maps)):
            # one scale for every image, anchored on the reference: the threshold is mid-scale
            heat = heatmap_overlay(image, amap, typical, top, opacity=0.6, max_side=PREVIEW_SIDE)
            if truth is not None and truth is not CLEAN:  # the true mask outlined on the heatmap
                heat = contour_overlay(heat, shrink(truth.astype(np.uint8) * 255, max(heat.shape[:2])) > 0,
                                       colour=TRUTH_RGB)
            overlay = _png(folder, f"heatmap_{i}.png", heat)
            verdict = detect_verdict(score > threshold, truth, one_image)
            ratio = float(score) / threshold if threshold > 0 else float("inf")
            gallery.append((overlay, f"{verdict.upper()} · {ratio:.2f}x threshold · {name}"))
            rows.append({"file": name, "verdict": verdict, "x threshold": round(ratio, 3),
                         "score": round(float(score), 4), "threshold": round(threshold, 4)})
        used = f"your model **{shown}**, used as given," if uploaded else f"**{shown}** fitted on {source};"
        status = (f"{used} scored {what}. An image is above the threshold when "
                  f"its score is above the highest score of {held} ({threshold:.4g}). Synthetic anomalies read "
                  f"DETECTED or MISSED (true mask outlined in cyan), the clean source CLEAN or FALSE ALARM. "
                  f"Served on **{device}**.")
        if one_image and any(truth is None for _, _, truth in tests):
            status = ONE_REFERENCE_CAVEAT + status
        return gallery, pd.DataFrame(rows, columns=DETECT_COLUMNS), colour_bar(folder / "colour_bar.png",
                                                                                 shown), status

    # -------------------------------------------------------------------------- stress test
    def stress_test(
        self,
        files: Any,
        image_path: str | None,
        method: str,
        detector_name: str,
        total: float,
        k: float,
        seed: float,
        model_file: Any = None,
        progress: gr.Progress = gr.Progress(track_tqdm=True),
    ):
        """The paper's analysis on the user's images: recall at k false positives per shape and mode vs size bin."""
        import matplotlib.pyplot as plt

        from detect.errors import DetectError

        paths = _paths(files) or [image_path or self.examples["brick"]]
        if len(paths) > STRESS_MAX_IMAGES:
            raise gr.Error(f"at most {STRESS_MAX_IMAGES} images per stress test; got {len(paths)}",
                           print_exception=False)
        if method not in available_methods():
            raise gr.Error(f"unknown method {method!r}; choose from {', '.join(available_methods())}",
                           print_exception=False)
        if detector_name not in DETECTORS:
            raise gr.Error(f"unknown detector {detector_name!r}; choose from {', '.join(DETECTORS)}",
                           print_exception=False)
        uploaded = uploaded_model(model_file)
        model_options = {}
        if uploaded is not None:
            detector_name, model_options = uploaded
        config = StressConfig(method=method, detector=detector_name, anomalies=_int(total, "number of anomalies", 1,
                                                                                     STRESS_MAX),
                              k=_int(k, "k (false positives)", 1, 5), seed=_int(seed, "seed", 0, 2**62),
                              grid=STRESS_GRID, image_size=min(STRESS_SIZE, self.config.detect_size), min_side=MIN_SIDE)
        progress(0.0, desc="Reading images")
        images, skipped = readable_uploads(paths)
        try:
            result, device = stress_on_device(images, config, **model_options)
        except DetectError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        parts = []
        for by, name in (("shape", "shape_size"), ("mode", "mode_size")):
            part = result.tables[name].rename(columns={by: "value"})
            part.insert(0, "by", by)
            parts.append(part)
        table = pd.concat(parts, ignore_index=True)[STRESS_COLUMNS]
        for column in ("recall", "recall_low", "recall_high"):
            table[column] = table[column].astype(float).round(3)
        figures = result.figures()
        for fig in figures.values():
            plt.close(fig)  # gradio draws the figure object itself; pyplot need not keep it
        lines = result.text().splitlines()
        facts = [line for line in lines if not line.startswith("Warning: ")]
        warnings = [line[len("Warning: "):] for line in lines if line.startswith("Warning: ")]
        names = ", ".join(Path(p).name for p in paths if Path(p).name not in skipped)
        status = f"On **{names}**: " + " ".join(facts) + f" Served on **{device}**."
        if skipped:
            status = f"> ⚠️ **Skipped** {', '.join(skipped)}: not usable (see the message).\n\n" + status
        if warnings:
            status = "".join(f"> ⚠️ **Warning:** {w}\n\n" for w in warnings) + status
        return figures["shape"], figures["mode"], table, status

    # ----------------------------------------------------------------------------- datasets
    def browse(self, repo: str, version: str, n_rows: float, generated: dict | None,
               oauth_token: gr.OAuthToken | None = None, request: gr.Request = None):
        """A few rows (image with mask outline, metadata): of a published version on the Hub
        (read anonymously, or as the signed-in visitor -- never with the app's own token), or,
        with no name given, of the dataset made in the Generate tab (or a small example one)."""
        repo, version = (repo or "").strip(), (version or "").strip()
        n_rows = _int(n_rows, "rows", 1, 24)
        empty = pd.DataFrame(columns=BROWSE_COLUMNS)
        if not repo:
            return self._browse_local(generated, n_rows, request)
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise gr.Error(f"give the dataset as ORG/NAME, got {repo!r}", print_exception=False)
        from hub_tools.errors import DatasetNotFoundError, HubToolsError, ValidationError
        from hub_tools.preview import read_rows

        token = oauth_token.token if oauth_token is not None else False
        try:
            rows, version, total = read_rows(repo, version or None, n_rows, token=token)
        except DatasetNotFoundError as exc:
            signed = "" if oauth_token is not None else " Sign in with Hugging Face to read your own private datasets."
            return [], empty, f"### `{repo}`: not found or private\n{exc}.{signed}"
        except ValidationError as exc:
            raise gr.Error(str(exc), title="Not an anomalyforge dataset", print_exception=False) from None
        except HubToolsError as exc:
            return [], empty, (f"### Could not load `{repo}` {version or '(latest)'}\n{exc}\n\nThe Hugging Face "
                               "Hub may be unreachable from this machine. Leave the name empty to browse the dataset "
                               "made in the Generate tab.")
        gallery, table = self._rows_view(rows, request)
        return gallery, table, f"`{repo}` version {version}: showing {len(table)} of {total} rows of the `test` split."

    def _browse_local(self, generated: dict | None, n_rows: int, request: gr.Request | None):
        parquet = (generated or {}).get("parquet")
        if parquet and Path(parquet).is_file():
            import datasets
            import pyarrow.parquet as pq

            table = pq.read_table(parquet)
            rows = datasets.Dataset(table.slice(0, n_rows))
            what = f"the dataset made in the Generate tab ({Path(parquet).name})"
            total = table.num_rows
        else:
            rows = self._example_dataset(n_rows)
            what = ("a small example dataset (SYNAGEN anomalies on the three example textures); make your own in "
                    "the Generate tab")
            total = len(rows)
        gallery, table = self._rows_view(rows, request)
        return gallery, table, f"Showing {len(table)} of {total} rows of {what}. Name an ORG/NAME to browse the Hub."

    def _example_dataset(self, n_rows: int):
        import datasets
        import pyarrow.parquet as pq

        path = self.work.root / "examples" / "example_dataset.parquet"
        if not path.is_file():
            anomalies, sources = [], []
            for i in range(6):
                name = EXAMPLE_NAMES[i % len(EXAMPLE_NAMES)]
                size_bin = DEFAULT_BINS[-2 - i % 3].name  # the larger bins: visible in a thumbnail
                anomalies.append(synthesize(example_image(name), "synagen", seed=i, size_bin=size_bin))
                sources.append(f"{name}.png")
            export_parquet(anomalies, path, sources)
        return datasets.Dataset(pq.read_table(path).slice(0, n_rows))

    def _rows_view(self, rows, request: gr.Request | None):
        from hub_tools.schema import decode_labels

        folder = self.work.folder(getattr(request, "session_hash", None), "browse")
        features = rows.features
        gallery, records = [], []
        for i in range(len(rows)):
            row = rows[i]
            image, mask = np.asarray(row["image"]), np.asarray(row["mask"]) > 0
            if mask.ndim == 3:
                mask = mask.any(axis=2)
            stored = {column: row.get("area_fraction" if column == "area_%" else column) for column in BROWSE_COLUMNS}
            record = decode_labels(stored, features)
            record["area_%"] = round(100.0 * float(record["area_%"]), 4)
            record["brightness_delta"] = round(float(record["brightness_delta"]), 4)
            records.append(record)
            overlay = _png(folder, f"row_{i}.png", contour_overlay(image, mask, PREVIEW_SIDE))
            gallery.append((overlay, f"{record['shape']} · {record['mode']} · {record['size_bin']}"))
        return gallery, pd.DataFrame(records, columns=BROWSE_COLUMNS)

    def show_in_editor(self, image_path: str | None, request: gr.Request):
        """Put the uploaded image under the region editor's brush (as an 8-bit preview, written
        to the session's work folder like every file the app makes); an unusable upload is said
        at once (a warning)."""
        if not image_path:
            return gr.ImageEditor(value=None)
        try:
            image = read_upload(image_path)
        except gr.Error as exc:  # said at once, not only at the Generate click
            gr.Warning(exc.message)
            return gr.ImageEditor(value=None)
        folder = self.work.folder(getattr(request, "session_hash", None), "editor")
        preview = _png(folder, "background.png", display_rgb(image, PREVIEW_SIDE))
        return gr.ImageEditor(value={"background": preview, "layers": [], "composite": None})

    def release(self, request: gr.Request) -> None:
        """The visitor closed the page: their files go now, not at the next expiry."""
        self.work.release(request.session_hash)


def show_selected(generated: dict | None, evt: gr.SelectData):
    """Gallery click: show that anomaly in the before/after slider and the mask view."""
    views = (generated or {}).get("views") or []
    if not views or evt.index is None or not 0 <= int(evt.index) < len(views):
        return gr.ImageSlider(), gr.Image()
    view = views[int(evt.index)]
    return (view["before"], view["after"]), view["mask"]


#: ``truth`` of a test image known to be anomaly-free (the clean source of generated anomalies)
CLEAN = "clean"
#: colour of the true mask's outline on a heatmap (red is too close to the heat colours)
TRUTH_RGB = (0, 255, 255)
ONE_REFERENCE_CAVEAT = (
    "> ⚠️ **One reference image, so no verdict.** The threshold is the score of a single held-out view, "
    "and clean images often score up to about 1.5x it: read the scores as a ranking. Upload 3 or more "
    "anomaly-free images of the same kind for a threshold that means anomalous.\n\n"
)


def detect_verdict(above: bool, truth: Any, one_image: bool) -> str:
    """What a score above or below the threshold says about one test image: DETECTED / MISSED for
    a synthetic anomaly (mask known), CLEAN / FALSE ALARM for the clean source, and for an image
    of unknown truth ANOMALOUS / NORMAL, or only above / within the reference when the threshold
    comes from one image."""
    if truth is None:
        if one_image:
            return "above reference" if above else "within reference"
        return "anomalous" if above else "normal"
    if truth is CLEAN:
        return "false alarm" if above else "clean"
    return "detected" if above else "missed"


# ------------------------------------------------------------------------------- stress test
#: anomalies per stress test, at most
STRESS_MAX = 400
#: tiles per side of each stress-test image
STRESS_GRID = 4
#: images per stress test, at most
STRESS_MAX_IMAGES = 8
#: side the stress test's detector works at (tiles are small; 128 px keeps a run near 10 s on CPU)
STRESS_SIZE = 128


# -------------------------------------------------------------------------------------- page
INTRO = """# anomalyforge
Make synthetic anomalies with exact masks in **your own images** (SYNAGEN and other methods), then see
**where a detector is blind**: which shapes, modes and sizes it misses at one false positive.
Every tab works with its defaults: press its main button first, then bring your own images.
Uploads up to {max_file}, {max_mp:.1f} MP, at least {min_side}x{min_side} px. Jobs wait in a queue when
the app is busy. This app runs on **{device}**.
"""


def build_demo(config: SpaceConfig | None = None) -> gr.Blocks:
    """The whole app as ``gr.Blocks`` (not launched). Endpoints: ``/generate``, ``/detect``,
    ``/stress_test``, ``/browse``. ``config`` defaults to ``SpaceConfig()`` (no environment read)."""
    config = config or SpaceConfig()
    methods = available_methods()
    default_method = "synagen" if "synagen" in methods else methods[0]
    shapes, modes, sized = method_options(default_method)
    bin_choices = [RANDOM, *(b.name for b in DEFAULT_BINS)]
    stress_defaults = StressConfig()

    # files live inside gradio's cache folder, which gradio serves without copying them again
    with gr.Blocks(title="anomalyforge", delete_cache=(max(1, min(600, config.work_ttl_s)), config.work_ttl_s)) as demo:
        root = config.work_root or Path(demo.GRADIO_CACHE) / "anomalyforge"
        space = Space(config, WorkArea(root, config.disk_budget, config.work_ttl_s))
        examples = space.examples
        demo.space = space  # for tests and scripts that measure the app
        gr.Markdown(INTRO.format(max_file=MAX_FILE_SIZE.upper(), max_mp=MAX_UPLOAD_PIXELS / 1e6, min_side=MIN_SIDE,
                                 device=serving_device()))
        if config.on_space:
            gr.LoginButton(value="Sign in with Hugging Face (to browse your private datasets)", size="sm")
        generated = gr.State({})
        with gr.Tabs():
            # ---------------------------------------------------------------- Generate
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        image = uploaded_image("image", label="Image (anomaly-free)", value=examples["brick"],
                                               sources=["upload", "clipboard"], height=320, elem_id="image-in")
                        gr.Examples(examples=[[p] for p in examples.values()], inputs=[image],
                                    label="Examples (CC0 textures from scikit-image)")
                        method = checked_input(gr.Dropdown(methods, value=default_method, label="Method"),
                                               "method", "a method name")
                        with gr.Row():
                            # choices follow the method; the API may name any, generate() checks them
                            shape = checked_input(gr.Dropdown(shapes, value=RANDOM, label="Shape",
                                                              allow_custom_value=True), "shape", "a shape name")
                            mode = checked_input(gr.Dropdown(modes, value=RANDOM, label="Mode",
                                                             allow_custom_value=True), "mode", "a mode name")
                        with gr.Row():
                            size_bin = checked_input(gr.Dropdown(bin_choices, value=RANDOM, label="Size bin",
                                                                 allow_custom_value=True,
                                                                 info="share of image pixels the anomaly changes"),
                                                     "size bin", "a size-bin name")
                            count = checked_input(gr.Slider(1, MAX_COUNT, value=4, step=1, label="Count"),
                                                  "count", f"a whole number from 1 to {MAX_COUNT}")
                            seed = checked_input(gr.Number(value=0, precision=0, minimum=0, label="Seed"),
                                                 "seed", "a whole number of at least 0")
                        with gr.Accordion("Region where anomalies may appear (optional)", open=False):
                            region_drawing = checked_input(gr.ImageEditor(
                                label="Paint the allowed region", type="numpy", image_mode="RGBA",
                                sources=[], transforms=[], layers=False,
                                brush=gr.Brush(colors=["#ff0000"], default_size=24, color_mode="fixed"),
                                height=360, value={"background": examples["brick"], "layers": [], "composite": None},
                            ), "region drawing", "an editor value {background, layers: [RGBA images], composite}")
                            region_mask = uploaded_image("region mask",
                                                         label="...or upload a mask (white = allowed, same size)",
                                                         sources=["upload"], height=200)
                        generate_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                    with gr.Column(scale=2):
                        status = gr.Markdown(elem_id="generate-status")
                        gallery = gr.Gallery(label="Anomalies (mask outline in red)", columns=2, height=640,
                                             object_fit="contain", format="png", elem_id="gallery")
                        with gr.Row():
                            slider = gr.ImageSlider(label="Before / after", type="filepath", height=360,
                                                    elem_id="before-after")
                            mask_view = gr.Image(label="Mask", type="filepath", height=360, interactive=False)
                        table = gr.Dataframe(value=pd.DataFrame(columns=TABLE_COLUMNS), interactive=False, wrap=True,
                                             label="Metadata (one row per anomaly)", elem_id="metadata")
                        files = gr.File(label="Download: zip (imagefolder layout) and parquet", file_count="multiple",
                                        interactive=False, height=120)
                method.change(on_method_change, method, [shape, mode, size_bin], api_visibility="private")
                image.change(space.show_in_editor, image, region_drawing, api_visibility="private")
                generate_btn.click(cleared, None, status, queue=False, api_visibility="private").then(
                    space.generate,
                    [image, method, shape, mode, size_bin, count, seed, region_drawing, region_mask],
                    [gallery, slider, mask_view, table, files, status, generated],
                    api_name="generate",
                )
                gallery.select(show_selected, generated, [slider, mask_view], api_visibility="private")

            # ---------------------------------------------------------------- Detect
            with gr.Tab("Detect", id="detect"):
                gr.Markdown("Scores images with a detector fitted on anomaly-free images of **the same kind**. "
                            "With nothing uploaded it scores the anomalies made in Generate (or makes a few) "
                            "against a detector fitted on the Generate tab's image.")
                with gr.Row():
                    with gr.Column(scale=1):
                        detector = checked_input(gr.Dropdown(list(DETECTORS), value="patchcore", label="Detector"),
                                                 "detector", "a detector name")
                        reference = checked_input(
                            gr.Dropdown([GENERATED, *EXAMPLE_NAMES], value=GENERATED, label="Fit the detector on",
                                        info="the image's mirror images fit it; uploads below replace it"),
                            "reference", "a reference name")
                        model_file = gr.File(label="...or your own detector: an ONNX file (e.g. anomalib's "
                                                   f"model.onnx; up to {_size_text(MAX_MODEL_BYTES)}, used as given)",
                                             file_types=[MODEL_SUFFIX], type="filepath", elem_id="detect-model")
                        fit_files = checked_input(
                            gr.File(label="...or your anomaly-free images (optional; 2+ recommended)",
                                    file_count="multiple", file_types=["image"], type="filepath"),
                            "anomaly-free images", UPLOADED_FILES)
                        test_files = checked_input(
                            gr.File(label="Images to score (optional; default: the Generate tab's anomalies)",
                                    file_count="multiple", file_types=["image"], type="filepath",
                                    elem_id="detect-test-files"),
                            "images to score", UPLOADED_FILES)
                        detect_btn = gr.Button("Detect", variant="primary", elem_id="detect-btn")
                    with gr.Column(scale=2):
                        detect_status = gr.Markdown(elem_id="detect-status")
                        heatmaps = gr.Gallery(label="Anomaly heatmaps (verdict · score / threshold · image)",
                                              columns=3, height=560, object_fit="contain", format="png",
                                              elem_id="heatmaps")
                        bar = gr.Image(label="Heatmap colour scale", show_label=False, height=90, interactive=False,
                                       elem_id="colour-bar", buttons=[])
                        scores = gr.Dataframe(value=pd.DataFrame(columns=DETECT_COLUMNS), label="Image scores",
                                              interactive=False, elem_id="scores")
                for upload in (fit_files, test_files):
                    upload.upload(check_uploads, upload, None, api_visibility="private")
                detect_btn.click(cleared, None, detect_status, queue=False, api_visibility="private").then(
                                 space.detect, [detector, fit_files, reference, test_files, image, generated,
                                                model_file],
                                 [heatmaps, scores, bar, detect_status], api_name="detect",
                                 concurrency_id="detector", concurrency_limit=1)

            # ---------------------------------------------------------------- Stress test
            with gr.Tab("Stress test", id="stress"):
                gr.Markdown(
                    f"Each image is cut into {STRESS_GRID}x{STRESS_GRID} tiles: alternate tiles fit the detector, "
                    "the others are the anomaly-free test tiles. Anomalies cycle through every shape x mode x size "
                    "bin of the method on those tiles; the threshold lets exactly *k* anomaly-free tiles through. "
                    "Shaded bands are 95 % intervals. Use a **repetitive texture** (fabric, wood, a wall); "
                    "without uploads it runs on the Generate tab's image.")
                with gr.Row():
                    with gr.Column(scale=1):
                        stress_files = checked_input(
                            gr.File(label="Anomaly-free images (optional)", file_count="multiple",
                                    file_types=["image"], type="filepath", elem_id="stress-files"),
                            "anomaly-free images", UPLOADED_FILES)
                        stress_method = checked_input(gr.Dropdown(methods, value=default_method, label="Method"),
                                                      "method", "a method name")
                        stress_detector = checked_input(
                            gr.Dropdown(list(DETECTORS), value=stress_defaults.detector, label="Detector"),
                            "detector", "a detector name")
                        stress_model = gr.File(label="...or your own detector: an ONNX file (used as given)",
                                               file_types=[MODEL_SUFFIX], type="filepath", elem_id="stress-model")
                        stress_total = checked_input(
                            gr.Slider(10, STRESS_MAX, value=stress_defaults.anomalies, step=10, label="Anomalies",
                                      info="more gives narrower intervals and takes longer"),
                            "anomalies", f"a whole number from 10 to {STRESS_MAX}")
                        stress_k = checked_input(gr.Slider(1, 5, value=1, step=1, label="k (false positives allowed)"),
                                                 "k", "a whole number from 1 to 5")
                        stress_seed = checked_input(gr.Number(value=0, precision=0, minimum=0, label="Seed"),
                                                    "seed", "a whole number of at least 0")
                        stress_btn = gr.Button("Run stress test", variant="primary", elem_id="stress-btn")
                    with gr.Column(scale=2):
                        stress_status = gr.Markdown(elem_id="stress-status")
                        gr.Markdown("**Recall per shape** and **per mode** against size bin")
                        with gr.Row():
                            shape_plot = gr.Plot(show_label=False, elem_id="shape-plot")
                            mode_plot = gr.Plot(show_label=False, elem_id="mode-plot")
                        stress_table = gr.Dataframe(value=pd.DataFrame(columns=STRESS_COLUMNS),
                                                    label="Recall per group (n anomalies per cell, 95 % interval)",
                                                    interactive=False, elem_id="stress-table")
                stress_files.upload(check_uploads, stress_files, None, api_visibility="private")
                stress_btn.click(cleared, None, stress_status, queue=False, api_visibility="private").then(
                                 space.stress_test,
                                 [stress_files, image, stress_method, stress_detector, stress_total, stress_k,
                                  stress_seed, stress_model],
                                 [shape_plot, mode_plot, stress_table, stress_status], api_name="stress_test",
                                 concurrency_id="detector", concurrency_limit=1)

            # ---------------------------------------------------------------- Datasets
            with gr.Tab("Datasets", id="datasets"):
                gr.Markdown("Browse a dataset: leave the name empty for the one made in the Generate tab (or a "
                            "small example), or name a published version on the Hugging Face Hub (ORG/NAME). "
                            "The Hub is read anonymously"
                            + (", or as you when you sign in above." if config.on_space else "."))
                with gr.Row():
                    repo = gr.Textbox(value=config.dataset, label="Dataset (ORG/NAME; empty = made here)",
                                      placeholder="empty: the dataset made in the Generate tab")
                    version = gr.Textbox(value="", label="Version (e.g. 1.0.0; empty = latest)")
                    n_rows = checked_input(gr.Slider(1, 24, value=8, step=1, label="Rows"), "rows",
                                           "a whole number from 1 to 24")
                browse_btn = gr.Button("Load rows", variant="primary", elem_id="browse-btn")
                browse_status = gr.Markdown(elem_id="browse-status")
                browse_gallery = gr.Gallery(label="Rows (mask outline in red)", columns=4, height=360, format="png",
                                            elem_id="browse-gallery")
                browse_table = gr.Dataframe(value=pd.DataFrame(columns=BROWSE_COLUMNS), label="Metadata",
                                            interactive=False)
                browse_btn.click(space.browse, [repo, version, n_rows, generated],
                                 [browse_gallery, browse_table, browse_status], api_name="browse")
        demo.unload(space.release)
    answer_every_error_with_a_message(demo)
    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    return demo


def launch(demo: gr.Blocks, **options: Any):
    """Launch with the app's limits (upload size, no tracebacks to visitors); ``options`` go to ``launch``."""
    options.setdefault("max_file_size", MAX_FILE_SIZE)
    options.setdefault("show_error", False)
    options.setdefault("css", CSS)
    return demo.launch(**options)


#: the before/after slider fits the whole image in its box (gradio sizes it by width, so a square
#: or tall image lost its bottom, and the anomaly with it); the Generate gallery grows to show
#: every row (its fixed-height grid hid the second row below a scroll edge)
CSS = (
    "#before-after img { width: 100% !important; height: 100% !important; object-fit: contain !important; }\n"
    "#gallery, #gallery .gallery-container, #gallery .grid-wrap "
    "{ height: auto !important; max-height: none !important; overflow: visible !important; }"
)


if __name__ == "__main__":
    launch(build_demo(SpaceConfig.from_environment()))
