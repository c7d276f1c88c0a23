"""What the Space accepts: upload policy, checked inputs, reading uploads, model-file limits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr
import numpy as np

from synth import InvalidImageError, decode_image

from space.config import (
    MAX_FILE_BYTES,
    MAX_FILE_SIZE,
    MAX_MODEL_BYTES,
    MAX_UPLOAD_PIXELS,
    MIN_SIDE,
    MODEL_SUFFIX,
    MODEL_TIME_LIMIT_S,
    RANDOM,
)


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
        except gr.Error as exc:  # the component's own check (a minimum, a maximum): say which input
            raise gr.Error(f"{what}: {exc.message}", title="Invalid input", print_exception=False) from None
        except Exception:  # noqa: BLE001 -- any failure to read the value means the same to the caller
            raise refuse(getattr(payload, "model_dump", lambda: payload)()) from None

    component.preprocess = checked_preprocess
    model = getattr(component, "data_model", None)
    if model is not None:
        component.data_model = _CheckedModel(model, refuse)
    return component


#: what a file-list input expects, as its refusal says
UPLOADED_FILES = "a list of uploaded image files"


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


def size_text(n_bytes: int) -> str:
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
                f"{what} {name} is {size_text(size)}; the limit is {MAX_FILE_SIZE}. Downscale or crop it.",
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


def upload_paths(files: Any) -> list[str]:
    if not files:
        return []
    if isinstance(files, (str, os.PathLike)):
        return [str(files)]
    return [str(getattr(f, "name", f)) for f in files]


def check_uploads(files: Any) -> None:
    """Say at upload, not at the button, which files cannot be used (not an image, too small,
    over the pixel limit): one warning each."""
    for path in upload_paths(files):
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


def warn(notes: Sequence[str]) -> None:
    for note in notes:
        gr.Warning(note)


def checked_choice(value: str | None, options: Sequence[str], what: str) -> str | None:
    if value in (None, "", RANDOM):
        return None
    if value not in options:
        raise gr.Error(f"unknown {what} {value!r}; choose from {', '.join(options)}", print_exception=False)
    return value


def checked_int(value: Any, what: str, low: int, high: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{what} must be a whole number, got {value!r}", print_exception=False) from None
    if number < low or (high is not None and number > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise gr.Error(f"{what} must be {limit}, got {number}", print_exception=False)
    return number


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
        raise gr.Error(f"{name} is {size_text(os.path.getsize(path))}; models up to {size_text(MAX_MODEL_BYTES)} "
                       "are run here (the command line takes any size)", print_exception=False)
    return f"onnx:{path}", {"time_limit_s": MODEL_TIME_LIMIT_S}


