"""One anomaly end to end: convert the image, draw a spec, render it, measure the ground truth.

``synthesize`` is the function most users call. Whatever the method, the result obeys the same
contract: ``mask`` covers every pixel that differs from the source by more than 1/255, the pixels
outside the region are untouched, and ``record`` holds the columns of the published schema with the
*measured* area, brightness change and bounding box.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from .change import CHANGE_TOLERANCE, is_changed, largest_change
from .errors import InvalidImageError, InvalidParameterError
from .image import from_float, luminance, quantize, to_float
from .method import Method, Rendering, Scene, Spec
from .region import normalize_region
from .record import make_record
from .sizebins import DEFAULT_BINS, SizeBin, bin_of, resolve_bin


@dataclass(frozen=True)
class Anomaly:
    """One synthetic anomaly and its ground truth.

    ``image``  the anomalous image, same dtype, channels and size as the source.
    ``mask``   bool ``(H, W)``: every pixel whose value changed by more than 1/255.
    ``diff``   float32 ``(H, W)`` in [0, 1]: ``max_c |output - source|``.
    ``label``  float32 ``(H, W)`` soft label when the method defines one (NSA, FPI), else ``None``.
    ``record`` the record columns (``synth.record.RECORD_COLUMNS``: method, shape, mode, ...).
    ``spec``   the drawn spec; ``render(scene, spec)`` reproduces the image.
    """

    image: np.ndarray
    mask: np.ndarray
    diff: np.ndarray
    label: np.ndarray | None
    record: dict[str, Any]
    spec: Spec

    @property
    def mask_u8(self) -> np.ndarray:
        """The mask as uint8 0/255, as written to ``masks/`` and the ``mask`` column."""
        return self.mask.astype(np.uint8) * 255


def size_bin_name(fraction: float, bins: Sequence[SizeBin] = DEFAULT_BINS) -> str:
    """Name of the bin a measured fraction falls in; ``"<0.02%"`` / ``">=15%"`` outside all bins."""
    found = bin_of(fraction, tuple(bins))
    if found is not None:
        return found.name
    lowest = min(bins, key=lambda b: b.low)
    if fraction < lowest.low:
        return f"<{lowest.name.split('-')[0]}%"
    highest = max(bins, key=lambda b: b.high)
    return f">={highest.name.split('-')[1]}"


def measure(
    source: np.ndarray,
    output: np.ndarray,
    mask: np.ndarray,
    offset: tuple[int, int] = (0, 0),
    n_pixels: int | None = None,
) -> dict[str, Any]:
    """Measured columns area_fraction, bbox, brightness_delta for a (window of an) image.

    ``source``/``output`` float ``(h, w, C)`` and ``mask`` bool ``(h, w)`` may be a window of the
    image at ``offset = (y0, x0)``; ``n_pixels`` is then the whole image's pixel count.
    """
    height, width = mask.shape
    area = int(mask.sum())
    n_pixels = n_pixels or height * width
    if area:
        ys, xs = np.nonzero(mask)
        y0, x0 = offset
        bbox = [int(xs.min()) + x0, int(ys.min()) + y0, int(xs.max()) + 1 + x0, int(ys.max()) + 1 + y0]
        before = float(luminance(source)[mask].mean())
        after = float(luminance(output)[mask].mean())
        delta = (after - before) / max(before, 1.0 / 255.0)
    else:
        bbox = [0, 0, 0, 0]
        delta = 0.0
    return {"area_fraction": area / float(n_pixels), "bbox": bbox, "brightness_delta": float(delta)}


@dataclass(frozen=True)
class PreparedImage:
    """An image converted once for several anomalies (``prepare``; the protocol renders one drawn
    anomaly in five sizes): the ``Scene`` methods read, the caller's array, its alpha and layout,
    and its background brightness. The array must not change while it is used."""

    original: np.ndarray
    scene: Scene
    alpha: np.ndarray | None
    layout: Any
    background: float


def prepare(
    image: np.ndarray,
    region: np.ndarray | None = None,
    partners: Sequence[np.ndarray] = (),
    textures: Sequence[np.ndarray] = (),
    foreground: np.ndarray | None = None,
    min_change: int = 1,
) -> PreparedImage:
    """Convert ``image`` (any dtype/layout) and its scene inputs once into the ``Scene`` methods
    read; pass the result to ``synthesize`` in place of the image (same bytes as passing the
    image each time). ``min_change``: a pixel is in the mask (and the measured area) when some
    channel changed by more than this many levels of 255 (default 1)."""
    if isinstance(min_change, bool) or not isinstance(min_change, int) or not 1 <= min_change <= 254:
        raise InvalidParameterError(f"min_change must be a whole number of levels in 1..254, got {min_change!r}")
    colour, alpha, layout = to_float(image)
    height, width = colour.shape[:2]
    scene = Scene(
        image=colour,
        region=normalize_region(region, height, width),
        partners=tuple(_as_colour(p, layout.colour_channels, "partner image") for p in partners),
        textures=tuple(_as_colour(t, 3, "texture") for t in textures),
        foreground=normalize_region(foreground, height, width) if foreground is not None else None,
        quantum=layout.quantum,
        min_change=CHANGE_TOLERANCE if min_change == 1 else min_change / 255.0,
    )
    return PreparedImage(image, scene, alpha, layout, background_brightness(image, layout))


def _as_colour(image: np.ndarray, channels: int, what: str) -> np.ndarray:
    try:
        colour, _, _ = to_float(image)
    except InvalidImageError as exc:
        raise InvalidImageError(f"{what}: {exc}") from None
    if colour.shape[2] == channels:
        return colour
    if channels == 3:
        return np.repeat(colour, 3, axis=2)
    return luminance(colour)[:, :, None].astype(np.float32)


def finish(
    prepared: PreparedImage,
    spec: Spec,
    rendering: Rendering,
    bins: Sequence[SizeBin] = DEFAULT_BINS,
) -> Anomaly:
    """Turn a rendering into an ``Anomaly``: enforce the region, quantise, measure, build the record.

    Only the rendering's window is touched; ``prepared.original`` (the caller's array) supplies
    the rest.
    """
    scene, original, alpha, layout = prepared.scene, prepared.original, prepared.alpha, prepared.layout
    height, width = scene.height, scene.width
    y0, y1, x0, x1 = rendering.window or (0, height, 0, width)
    win = (slice(y0, y1), slice(x0, x1))
    source = scene.image[win]
    output = np.clip(rendering.image.astype(np.float32, copy=False), 0.0, 1.0)
    if output.shape != source.shape:
        raise RuntimeError(
            f"method {spec.method!r} rendered shape {output.shape}, expected {source.shape}"
        )
    if scene.region is not None:
        # The guarantee does not depend on each method getting it right.
        output = np.where(scene.region[win][:, :, None], output, source)
    output = quantize(output, scene.quantum)
    # ``output`` holds stored values already (quantising is idempotent), so the changed pixels
    # are read from the same largest-change map that is the ``diff``
    change = largest_change(source, output)
    mask_w = is_changed(change, scene.min_change)
    mask = np.zeros((height, width), bool)
    mask[win] = mask_w
    diff = np.zeros((height, width), np.float32)
    diff[win] = change
    label = None
    if rendering.label is not None:
        label = np.zeros((height, width), np.float32)
        label[win] = np.where(mask_w, rendering.label, 0.0)
    measured = measure(source, output, mask_w, offset=(y0, x0), n_pixels=height * width)
    record = build_record(spec, rendering, measured, prepared.background, bins)
    image = original.copy()
    image[win] = from_float(output, None if alpha is None else alpha[win], layout)
    return Anomaly(image=image, mask=mask, diff=diff, label=label, record=record, spec=spec)


def build_record(
    spec: Spec,
    rendering: Rendering,
    measured: dict[str, Any],
    background: float,
    bins: Sequence[SizeBin] = DEFAULT_BINS,
) -> dict[str, Any]:
    """The record (``synth.record``) of one anomaly from its spec, rendering and ``measure``d ground truth."""
    params = dict(spec.params)
    params.update(rendering.extra)
    if spec.size_bin is not None:
        params["requested_size_bin"] = spec.size_bin.name
    return make_record(
        method=spec.method,
        shape=spec.shape,
        mode=spec.mode,
        size_bin=size_bin_name(measured["area_fraction"], bins if spec.size_bin is None else (spec.size_bin, *bins)),
        area_fraction=measured["area_fraction"],
        brightness_delta=measured["brightness_delta"],
        background_brightness=background,
        bbox=measured["bbox"],
        angle=float(rendering.angle),
        seed=int(spec.seed),
        params=json.dumps(params, sort_keys=True),
    )


def background_brightness(image: np.ndarray, layout: Any) -> float:
    """Mean luminance (0-1) of an image as given (any layout): the paper's background brightness."""
    # luminance is linear in the channels, so its mean is the weighted sum of channel means;
    # cv2.mean on the stored array avoids a float copy of the whole image
    means = cv2.mean(image)
    scale = 1.0 / layout.quantum if layout.quantum else 1.0
    if layout.colour_channels == 1:
        return float(means[0] / scale)
    return float((0.299 * means[0] + 0.587 * means[1] + 0.114 * means[2]) / scale)


def synthesize(
    image: np.ndarray | PreparedImage,
    method: str | Method = "synagen",
    *,
    seed: int,
    shape: str | None = None,
    mode: str | None = None,
    size_bin: SizeBin | str | int | None = None,
    region: np.ndarray | None = None,
    partners: Sequence[np.ndarray] = (),
    textures: Sequence[np.ndarray] = (),
    foreground: np.ndarray | None = None,
    label_bins: Sequence[SizeBin] = DEFAULT_BINS,
    min_change: int = 1,
    bins: Sequence[SizeBin] | None = None,
    **method_options: Any,
) -> Anomaly:
    """Make one anomaly in ``image``; the same arguments give the same bytes.

    ``image``     uint8, uint16 or float in [0, 1]; gray ``(H, W)``, ``(H, W, 1)``, gray+alpha,
                  RGB or RGBA; any size. Alpha is never changed.
    ``method``    a registered name (``synagen``, ``nsa``, ...) or a ``Method`` instance.
    ``seed``      regenerates this anomaly: ``np.random.default_rng(seed)`` draws the spec.
    ``shape``, ``mode``  the method's options; ``None`` draws one.
    ``size_bin``  ``SizeBin``, its name (``"0.5-1.5%"``) or an index into ``label_bins``. Methods
                  that target sizes land the measured changed area inside it or raise ``SizeBinError``.
    ``label_bins`` the bins the measured area is named by (``Anomaly.record["size_bin"]``); they
                  choose no size. The bins a method targets are its own option (``Synagen(bins=...)``).
    ``bins``      the old name of ``label_bins``: still accepted, with a ``DeprecationWarning``.
    ``region``    allowed-pixel mask; nothing outside it changes.
    ``partners``  other anomaly-free images for methods that blend a second image.
    ``min_change`` visibility threshold: the mask and the measured area (so the size bin) count
                  pixels changed by more than this many levels of 255 (default 1).

    Several anomalies in one image: ``prepare(image, region, partners, textures, foreground, min_change)``
    once and pass the result as ``image`` (the scene inputs then come from it).
    """
    from .registry import get_method

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidParameterError(f"seed must be a non-negative integer, got {seed!r}")
    if bins is not None:
        label_bins = _renamed_bins(bins, label_bins)
    method_obj = get_method(method, **method_options) if isinstance(method, str) else method
    requested = None if size_bin is None else resolve_bin(size_bin, tuple(label_bins))
    if isinstance(image, PreparedImage):
        if region is not None or partners or textures or foreground is not None or min_change != 1:
            raise InvalidParameterError(
                "region, partners, textures, foreground and min_change of a prepared image are given to prepare(), "
                "not synthesize()"
            )
        prepared = image
    else:
        prepared = prepare(image, region, partners, textures, foreground, min_change)
    scene = prepared.scene
    rng = np.random.default_rng(int(seed))
    spec = method_obj.sample(rng, scene, shape=shape, mode=mode, size_bin=requested, seed=int(seed))
    rendering = method_obj.render(scene, spec)
    return finish(prepared, spec, rendering, label_bins)


def _renamed_bins(bins: Sequence[SizeBin], label_bins: Sequence[SizeBin]) -> Sequence[SizeBin]:
    if label_bins is not DEFAULT_BINS:
        raise InvalidParameterError("give synthesize() label_bins= only; bins= is its old name")
    warnings.warn(
        "synthesize(bins=...) is now label_bins=...: it names the measured size bin and targets no size; "
        "the bins SYNAGEN targets are Synagen(bins=...)",
        DeprecationWarning,
        stacklevel=3,
    )
    return bins


def replay(image: np.ndarray, spec: Spec | dict, **scene_inputs: Any) -> Anomaly:
    """Render a stored spec again on the same image: ``Anomaly.spec`` or its ``to_json()`` dict.

    A record's ``params`` column is not a spec: it holds the spec's params plus what the rendering
    measured and the requested size bin."""
    from .registry import get_method

    spec_obj = spec if isinstance(spec, Spec) else Spec.from_dict(spec)
    method_obj = get_method(spec_obj.method)
    prepared = prepare(image, **scene_inputs)
    return finish(prepared, spec_obj, method_obj.render(prepared.scene, spec_obj))
