"""Generation for the Generate tab: the methods on offer, the allowed region, one anomaly per seed."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import gradio as gr
import numpy as np

from synth import Anomaly, SynthError, get_method, method_names, synthesize
from synth.errors import RegionError
from synth.preview import region_from_layers
from synth.region import normalize_region

from space.config import PARQUET_MAX_BYTES, RANDOM
from space.inputs import read_upload


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


def paired_options(method: str, shape: str | None, mode: str | None) -> tuple[list[str], list[str]]:
    """(shape choices, mode choices) of a method that go with the mode and the shape chosen
    (``RANDOM`` or ``None``: any), ``RANDOM`` first: a mixture makes only some shapes in a mode."""
    obj = get_method(method)
    shape, mode = (None if v in (None, "", RANDOM) else v for v in (shape, mode))
    return ([RANDOM, *(s for s in obj.shapes if obj.offers(s, mode))],
            [RANDOM, *(m for m in obj.modes if obj.offers(shape, m))])


def check_pair(method: str, shape: str | None, mode: str | None) -> None:
    """Refuse a shape and mode the method does not make together, saying what goes with the shape."""
    try:
        get_method(method).check_choices(shape, mode)
    except SynthError as exc:
        raise gr.Error(str(exc), title="Shape and mode do not go together", print_exception=False) from None


def allowed_region(image: np.ndarray, drawing: dict | None, mask_path: str | None) -> tuple[np.ndarray | None, str | None]:
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
        try:
            normalize_region(mask, height, width)
        except RegionError:  # the size matches: no pixel is white
            raise gr.Error(f"region mask {Path(mask_path).name} has no white pixel, so anomalies may appear nowhere: "
                           "white marks where they may (or remove the mask to use the whole image).",
                           title="Empty region", print_exception=False) from None
        return mask, "uploaded mask"
    layers = (drawing or {}).get("layers") or []
    region = region_from_layers([np.asarray(layer) for layer in layers if layer is not None], height, width)
    return region, None if region is None else "drawn"



def make_anomalies(image: np.ndarray, method: str, seeds: Sequence[int], *, shape: str | None, mode: str | None,
                   size_bin: str | None, region: np.ndarray | None,
                   textures: Sequence[np.ndarray]) -> tuple[list[Anomaly], list[str]]:
    """(anomalies, failure messages): ``synth.synthesize`` per seed, on the CPU whatever the Space
    runs on, so a seed gives the same bytes here as on the command line and on any other Space."""
    anomalies, failures = [], []
    for seed in seeds:
        try:
            anomalies.append(synthesize(image, method, seed=seed, shape=shape, mode=mode, size_bin=size_bin,
                                        region=region, textures=textures))
        except SynthError as exc:
            failures.append(f"seed {seed}: {exc}")
    return anomalies, failures


def generate_status(count: int, method: str, region_source: str | None, parquet: bool) -> str:
    return (f"Made {count} anomal{'y' if count == 1 else 'ies'} with **{method}**"
            f"{' inside the ' + region_source + ' region' if region_source else ''}. "
            "The zip holds `images/`, `masks/` and `metadata.jsonl` "
            "(`datasets.load_dataset(\"imagefolder\", data_dir=...)` reads it)"
            + ("; the parquet holds the same rows." if parquet else
               f"; the parquet is left out above {PARQUET_MAX_BYTES // 1024**2} MB (it would repeat the zip).")
            + " Next: the **Detect** tab scores these anomalies.")
