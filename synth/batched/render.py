"""Batched anomaly synthesis in torch: a batch of images on any device in, anomalous images,
exact masks, |difference| maps and records out, on the same device.

>>> import torch, skimage.data
>>> from synth.batched import synthesize_batch
>>> images = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].repeat(4, 1, 1, 1)
>>> out = synthesize_batch(images, "synagen", seeds=[0, 1, 2, 3], size_bin="0.5-1.5%")
>>> out.images.shape, out.masks.dtype, [r["size_bin"] for r in out.records]
(torch.Size([4, 3, 512, 512]), torch.bool, ['0.5-1.5%', '0.5-1.5%', '0.5-1.5%', '0.5-1.5%'])

Specs are drawn by the method's own ``Method.sample`` from ``numpy.random.default_rng(seed)``,
exactly as ``synth.synthesize`` draws them: for one seed both paths render the *same spec*, so
parameter distributions are identical. The renderings follow the numpy path step by step (the
same size search, ``cv2.resize``'s area and bilinear filters, the same placement), and agree
with it byte for byte for most anomalies (tests/test_batched.py states and measures the
tolerance); they carry ``"renderer": "torch"`` in their params. The guarantees are the numpy path's: the measured changed area of every output lies in
its size bin (or ``SizeBinError`` names the anomalies that could not be placed), nothing outside
the region changes, the mask holds every pixel changed by more than 1/255, any dtype (uint8,
uint16, float in [0, 1]) and 1-4 channels (alpha untouched) in and out, and the same seed gives
the same bytes on the same device whatever the batch size.

Methods with a batched renderer: ``BATCHED_METHODS`` — SYNAGEN; CutOut, FPI and CutPaste, whose
batched outputs are byte-identical to the numpy path's (their geometry is computed by the same
functions, their values by the same float32 operations); CutPaste-Scar, whose rotation is
OpenCV's bilinear warp written out (byte-identical for most anomalies, the others within one
quantum; tests/test_batched.py measures it); DRAEM, fractal and foreground Perlin, byte-identical:
their noise fields, fills and foreground masks are made on the CPU by the numpy path's own
functions from the spec's seeds (``noise_masks``), the ranking, blend and size search on the
device. NSA: placement and resized patches by the numpy path's functions on the CPU, the Poisson
blending on the device (``poisson.seamless_clone``, OpenCV's algorithm as a DST solve, one solve
per patch); the solve agrees with ``cv2.seamlessClone`` except on values within float32 rounding of an
integer, there by one level; through the size search NSA outputs land in the requested bin, many
byte-identical (``synth.methods.nsa.batched`` states the bounds and the measurements).
Hybrid stays on the CPU path: ``synth.synthesize`` per image.

The CPU work of a batch (each spec's *plan*: SYNAGEN's shape panels, the noise fields and
fills) is made on a pool of threads (``prepare``; ``prep_threads``, default every usable CPU):
``prepare_batch`` starts it and returns, ``PreparedBatch.render`` renders on the device, so a
caller that prepares batch k+1 before rendering batch k keeps the device busy (the protocol's
runner and ``BatchSynthesize`` do). The bytes depend on neither.
"""

from __future__ import annotations

import importlib
from concurrent.futures import Future
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Sequence

import numpy as np
import torch

from ..anomaly import Anomaly, _as_colour, build_record, measure
from ..errors import InvalidParameterError, RegionError, SizeBinError
from ..image import ImageLayout, to_float
from ..method import Method, Rendering, Scene, Spec
from ..registry import batched_methods, get_method
from ..sizebins import DEFAULT_BINS, SizeBin, resolve_bin
from .device import to_device
from .layout import join, batch_layout, split
from .prepare import plan_pool
from .steering import Rendered

#: methods whose rendering runs batched on a torch device (``Method.batched``)
BATCHED_METHODS = batched_methods()


class UnsupportedMethodError(InvalidParameterError):
    """The method has no batched renderer; it runs on the CPU path (``synth.synthesize``)."""


@dataclass(frozen=True)
class BatchAnomalies:
    """A batch of anomalies, on the device of the input.

    ``images``  same shape, dtype and device as the input batch ``(B, C, H, W)``; alpha untouched.
    ``masks``   bool ``(B, H, W)``: every pixel whose stored value changed by more than 1/255.
    ``diffs``   float32 ``(B, H, W)`` in [0, 1]: ``max_c |output - source|``.
    ``records`` one dict of schema columns per anomaly (as ``Anomaly.record``); ``None`` for an
                anomaly listed in ``missed``.
    ``specs``   the drawn specs; ``render_batch`` with them reproduces the bytes.
    ``missed``  indices no placement brought into their bin (only with ``strict=False``; their
                images are unchanged and their masks empty).
    """

    images: torch.Tensor
    masks: torch.Tensor
    diffs: torch.Tensor
    records: list[dict[str, Any] | None]
    specs: list[Spec]
    missed: tuple[int, ...] = ()


def batched_method(method: str | Method, options: dict[str, Any]) -> Method:
    """The method object (by name, with ``options``), refused when it has no batched renderer."""
    obj = get_method(method, **options) if isinstance(method, str) else method
    if obj.batched is None:
        where = (
            "it mixes methods per image (render each drawn method's batch instead)"
            if obj.name == "hybrid"
            else "it has no batched renderer yet"
        )
        raise UnsupportedMethodError(
            f"method {obj.name!r} cannot render in a batch on a torch device: {where}. "
            f"Batched methods: {', '.join(batched_methods())}; render {obj.name!r} per image with "
            "synth.synthesize (or anomalyforge synth without --device)"
        )
    return obj


def _renderer(method: Method) -> type:
    module_name, class_name = method.batched.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def reads_pixels(method: Method) -> bool:
    """Whether drawing or planning the method's specs reads the images' pixels (not only their size)."""
    return method.samples_pixels or getattr(_renderer(method), "needs_pixels", False)


def _regions(regions: torch.Tensor | None, images: torch.Tensor) -> torch.Tensor | None:
    if regions is None:
        return None
    b, _, h, w = images.shape
    if not isinstance(regions, torch.Tensor) or tuple(regions.shape) != (b, h, w):
        raise RegionError(
            f"regions must be a tensor of shape {(b, h, w)} (one allowed-pixel mask per image), "
            f"got {tuple(getattr(regions, 'shape', ()))}"
        )
    regions = regions.to(images.device)
    return regions > (127 if regions.dtype == torch.uint8 else 0)


def _scenes(
    images: torch.Tensor, layout: ImageLayout, regions: torch.Tensor | None, textures, pixels: bool,
    partners: Sequence[np.ndarray] = (),
) -> list[Scene]:
    """CPU scenes for drawing specs and sizing: the image's size, region and textures, and its
    pixels only when ``pixels`` (copying a GPU batch to the host is what the renderer avoids)."""
    b, _, h, w = images.shape
    blank = np.broadcast_to(np.float32(0.0), (h, w, layout.colour_channels))
    region_np = None if regions is None else regions.cpu().numpy()
    partner_arrays = tuple(_as_colour(np.asarray(p), layout.colour_channels, "partner image") for p in partners)
    pixels_of: list[np.ndarray] = [blank] * b
    if pixels:
        # one image repeated by ``expand`` (the protocol's batches) is copied and converted once
        repeated = b > 1 and images.stride(0) == 0
        host = (images[:1] if repeated else images).permute(0, 2, 3, 1).cpu().numpy()
        floats = [to_float(one)[0] for one in host]
        for one in floats:  # shared by the scenes and read by the plan threads: never written
            one.setflags(write=False)
        pixels_of = floats * b if repeated else floats
    return [
        Scene(
            image=pixels_of[i],
            region=None if region_np is None else region_np[i],
            partners=partner_arrays,
            textures=tuple(textures),
            quantum=layout.quantum,
        )
        for i in range(b)
    ]


def _scene_identity(scene: Scene) -> tuple:
    """Scenes with equal identities hold the same arrays (the same memory), e.g. the scenes of one
    image repeated by ``expand``; valid while the scenes are alive."""

    def where(a: np.ndarray | None):
        return None if a is None else (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)

    return (where(scene.image), where(scene.region), tuple(map(where, scene.partners)), tuple(map(id, scene.textures)))


def _textures(textures: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    return tuple(_as_colour(np.asarray(t), 3, "texture") for t in textures)


def sample_specs(
    images: torch.Tensor,
    method: str | Method = "synagen",
    *,
    seeds: Sequence[int],
    shape: str | None = None,
    mode: str | None = None,
    size_bin: SizeBin | str | int | None = None,
    regions: torch.Tensor | None = None,
    textures: Sequence[np.ndarray] = (),
    partners: Sequence[np.ndarray] = (),
    bins: Sequence[SizeBin] = DEFAULT_BINS,
    **options: Any,
) -> list[Spec]:
    """Draw one spec per image with ``Method.sample`` and ``numpy.random.default_rng(seed)``."""
    method_obj = batched_method(method, options)
    layout = batch_layout(images)
    if len(seeds) != images.shape[0]:
        raise InvalidParameterError(f"got {len(seeds)} seeds for a batch of {images.shape[0]} images; pass one per image")
    requested = None if size_bin is None else resolve_bin(size_bin, tuple(bins))
    scenes = _scenes(
        images, layout, _regions(regions, images), _textures(textures), method_obj.samples_pixels, partners
    )
    specs = []
    for scene, seed in zip(scenes, seeds):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidParameterError(f"seeds must be non-negative integers, got {seed!r}")
        rng = np.random.default_rng(int(seed))
        specs.append(method_obj.sample(rng, scene, shape=shape, mode=mode, size_bin=requested, seed=int(seed)))
    return specs


def render_batch(
    images: torch.Tensor,
    specs: Sequence[Spec],
    *,
    regions: torch.Tensor | None = None,
    textures: Sequence[np.ndarray] = (),
    partners: Sequence[np.ndarray] = (),
    bins: Sequence[SizeBin] = DEFAULT_BINS,
    method: Method | None = None,
    strict: bool = True,
    prep_threads: int | None = None,
) -> BatchAnomalies:
    """Render ``specs[i]`` into ``images[i]`` for the whole batch on the images' device.

    ``images``   ``(B, C, H, W)`` uint8, uint16 or float in [0, 1]; C = 1, 2 (gray+alpha), 3, 4.
    ``regions``  optional ``(B, H, W)`` allowed-pixel masks (bool, or uint8 with 255 = allowed).
    ``textures`` texture images for SYNAGEN's ``texture`` mode (numpy, any layout).
    ``partners`` other normal images for FPI (numpy, any size; none: the image rotated 180°).
    ``prep_threads`` CPU threads that make the specs' plans (``prepare``; default: every usable
    CPU); the bytes do not depend on it.
    Raises ``SizeBinError`` naming the anomalies no placement could bring into their bin, or
    with ``strict=False`` lists them in ``BatchAnomalies.missed``.
    """
    return prepare_batch(
        images, specs, regions=regions, textures=textures, partners=partners, bins=bins, method=method,
        prep_threads=prep_threads,
    ).render(strict=strict)


@dataclass(frozen=True)
class PreparedBatch:
    """A batch whose per-spec plans are being made on CPU threads (``prepare_batch``);
    ``render()`` waits for them and renders on the device."""

    images: torch.Tensor
    colour: torch.Tensor
    alpha: torch.Tensor | None
    layout: ImageLayout
    specs: tuple[Spec, ...]
    method: Method
    renderer: type
    region_mask: torch.Tensor | None
    textures: tuple[np.ndarray, ...]
    scenes: tuple[Scene, ...]
    plans: tuple[Future, ...]
    bins: tuple[SizeBin, ...]

    def on(self, images: torch.Tensor) -> "PreparedBatch":
        """The same specs and plans for another batch of images of the same shape and dtype
        (on the same device), for renderers whose plans do not read pixels; lets a caller
        prepare a batch before its images exist (``BatchSynthesize``)."""
        if getattr(self.renderer, "needs_pixels", False):
            raise InvalidParameterError(
                f"{self.method.name}'s plans read the images' pixels; prepare it with its own images (prepare_batch)"
            )
        if images.shape != self.images.shape or images.dtype != self.images.dtype or images.device != self.images.device:
            raise InvalidParameterError(
                f"this batch was prepared for {tuple(self.images.shape)} {self.images.dtype} images on "
                f"{self.images.device}, got {tuple(images.shape)} {images.dtype} on {images.device}"
            )
        colour, alpha, layout = split(images)
        return replace(self, images=images, colour=colour, alpha=alpha, layout=layout)

    def render(self, strict: bool = True) -> BatchAnomalies:
        """``render_batch``'s result for this batch (same errors, same bytes)."""
        plans = [plan.result() for plan in self.plans]
        rendered = self.renderer(
            self.method, self.colour, self.region_mask, self.specs, self.scenes, self.layout.quantum, self.textures,
            plans=plans,
        ).run()
        missed = [i for i, r in enumerate(rendered) if r is None]
        if missed and strict:
            spec = self.specs[missed[0]]
            raise SizeBinError(
                f"could not bring anomalies {missed} of the batch into their size bins (the first: "
                f"{spec.method} {spec.shape}/{spec.mode} in {spec.size_bin.name if spec.size_bin else 'any size'}); "
                "the image may be too flat for the mode or the region too fragmented; try other seeds, modes or bins"
            )
        return _assemble(
            self.images, self.colour, self.alpha, self.layout, self.specs, rendered, self.bins, self.method.records_angle
        )


def prepare_batch(
    images: torch.Tensor,
    specs: Sequence[Spec],
    *,
    regions: torch.Tensor | None = None,
    textures: Sequence[np.ndarray] = (),
    partners: Sequence[np.ndarray] = (),
    bins: Sequence[SizeBin] = DEFAULT_BINS,
    method: Method | None = None,
    prep_threads: int | None = None,
) -> PreparedBatch:
    """Start making the per-spec plans of a batch on ``prep_threads`` CPU threads and return at
    once; ``.render()`` renders it. Arguments as ``render_batch``'s. Preparing the next batch
    before rendering this one keeps the device busy while the CPU plans.
    """
    colour, alpha, layout = split(images)
    if len(specs) != images.shape[0]:
        raise InvalidParameterError(f"got {len(specs)} specs for a batch of {images.shape[0]} images; pass one per image")
    names = {spec.method for spec in specs}
    if len(names) != 1:
        raise InvalidParameterError(f"a batch renders one method at a time, got {sorted(names)}; split the batch by method")
    method_obj = batched_method(method if method is not None else specs[0].method, {})
    region_mask = _regions(regions, images)
    texture_arrays = _textures(textures)
    renderer = _renderer(method_obj)
    scenes = tuple(_scenes(
        images, layout, region_mask, texture_arrays, pixels=getattr(renderer, "needs_pixels", False), partners=partners
    ))
    pool, make = plan_pool(prep_threads), partial(renderer.plan, method_obj, textures=texture_arrays)
    plan_key = getattr(renderer, "plan_key", None)
    if plan_key is None:
        plans = pool.map(make, specs, scenes)
    else:
        # specs whose plans are equal by construction (the same draw in several size bins, on the
        # same image) share one plan, made once
        made: dict[tuple, Future] = {}
        plans = []
        for spec, scene in zip(specs, scenes):
            key = (plan_key(spec), _scene_identity(scene))
            if key not in made:
                made[key] = pool.submit(make, spec, scene)
            plans.append(made[key])
    return PreparedBatch(
        images, colour, alpha, layout, tuple(specs), method_obj, renderer, region_mask, texture_arrays, scenes, tuple(plans), tuple(bins)
    )


def _background_brightness(images: torch.Tensor, layout: ImageLayout) -> list[float]:
    """Mean luminance (0-1) of each input image: ``anomaly.background_brightness``'s arithmetic
    (channel means in stored units, weighted, then scaled), batched."""
    cc = layout.colour_channels
    colour = images[:, :cc]
    n = images.shape[2] * images.shape[3]
    if images.shape[0] > 1 and images.stride(0) == 0:  # one image repeated: measure it once
        return _background_brightness(images[:1], layout) * images.shape[0]
    # integer sums are exact in any order; accumulating in the sum's dtype avoids a wide copy
    if layout.quantum:
        means = (colour.sum(dim=(2, 3), dtype=torch.int64).to(torch.float64) / n).cpu().numpy()
    else:
        means = colour.to(torch.float64).mean(dim=(2, 3)).cpu().numpy()
    scale = 1.0 / layout.quantum if layout.quantum else 1.0
    if cc == 1:
        return [float(m[0] / scale) for m in means]
    return [float((0.299 * m[0] + 0.587 * m[1] + 0.114 * m[2]) / scale) for m in means]


def _write_windows(
    out_images, masks, diffs, colour, layout: ImageLayout, rendered: list[Rendered], indexed: bool
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Write each rendered window into ``out_images`` (stored dtype), ``masks`` and ``diffs``;
    return per anomaly index its host windows ``(source, output, changed)`` for ``measure``.
    ``indexed``: all windows by a few indexed operations for the batch (the GPU's way), else
    by slices, anomaly by anomaly (the CPU's)."""
    dev, cc = out_images.device, layout.colour_channels
    found = [i for i, r in enumerate(rendered) if r is not None]
    windows: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    if not indexed:
        # on a CPU a slice costs nothing extra per anomaly, and the windows are host memory
        for i in found:
            r = rendered[i]
            wh, ww = r.changed.shape
            ys, xs = slice(r.oy, r.oy + wh), slice(r.ox, r.ox + ww)
            source = colour[i, :, ys, xs].permute(1, 2, 0)
            out_images[i, :cc, ys, xs] = join(r.output.permute(2, 0, 1)[None], None, layout, out_images.dtype)[0]
            masks[i, ys, xs] = r.changed
            diffs[i, ys, xs] = (r.output - source).abs().amax(dim=-1)
            windows[i] = (source.cpu().numpy(), r.output.cpu().numpy(), r.changed.cpu().numpy())
    elif found:
        # on a GPU every operation is a kernel launch: every window pixel of every anomaly at
        # once (a few operations per batch, not about a dozen per anomaly): its image, row and
        # column, from each window's corner and size
        sizes = np.array([rendered[i].changed.shape for i in found], np.int64).reshape(-1, 2)
        counts = sizes[:, 0] * sizes[:, 1]
        firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        table = to_device(np.stack([
            np.array(found, np.int64), [rendered[i].oy for i in found], [rendered[i].ox for i in found], sizes[:, 1], firsts,
        ], axis=1), dev)
        # output_size given: torch need not read the counts back from the device
        which = torch.repeat_interleave(
            torch.arange(len(found), device=dev), to_device(counts, dev), output_size=int(counts.sum())
        )
        per = table[which]
        local = torch.arange(int(counts.sum()), device=dev) - per[:, 4]
        bi, ys, xs = per[:, 0], per[:, 1] + local // per[:, 3], per[:, 2] + local % per[:, 3]
        output = torch.cat([rendered[i].output.reshape(-1, cc) for i in found])
        changed = torch.cat([rendered[i].changed.reshape(-1) for i in found])
        source = colour[bi, :, ys, xs]  # (pixels, cc)
        stored = join(output, None, layout, out_images.dtype)
        target = out_images
        if out_images.dtype == torch.uint16:  # torch writes uint16 through an index as the same 16 bits of int16
            target, stored = out_images.view(torch.int16), stored.view(torch.int16)
        target.permute(0, 2, 3, 1)[bi, ys, xs, :cc] = stored
        masks[bi, ys, xs] = changed
        diffs[bi, ys, xs] = (output - source).abs().amax(dim=-1)
        # the windows the records measure, on the host: one transfer for the batch
        packed = torch.cat([source, output, changed[:, None].to(source.dtype)], dim=1).cpu().numpy()
        source_np, output_np, changed_np = packed[:, :cc], packed[:, cc : 2 * cc], packed[:, 2 * cc] > 0.5
        for k, i in enumerate(found):
            rows = slice(firsts[k], firsts[k] + counts[k])
            shape = (int(sizes[k, 0]), int(sizes[k, 1]))
            windows[i] = (
                source_np[rows].reshape(*shape, cc), output_np[rows].reshape(*shape, cc), changed_np[rows].reshape(shape)
            )
    return windows


def _assemble(images, colour, alpha, layout, specs, rendered: list[Rendered], bins, records_angle: bool) -> BatchAnomalies:
    b, _, h, w = images.shape
    dev = images.device
    out_images = images.clone()
    masks = torch.zeros((b, h, w), dtype=torch.bool, device=dev)
    diffs = torch.zeros((b, h, w), dtype=torch.float32, device=dev)
    backgrounds = _background_brightness(images, layout)
    cc = layout.colour_channels
    windows = _write_windows(out_images, masks, diffs, colour, layout, rendered, indexed=dev.type != "cpu")
    records = []
    for i, (spec, r) in enumerate(zip(specs, rendered)):
        if r is None:  # missed (strict=False): the image stays as it was
            records.append(None)
            continue
        measured = measure(*windows[i], offset=(r.oy, r.ox), n_pixels=h * w)
        angle = float(spec.params.get("angle", 0.0)) if records_angle else 0.0
        rendering = Rendering(image=np.empty((0, 0, cc), np.float32), angle=angle, extra=r.info)
        records.append(build_record(spec, rendering, measured, backgrounds[i], bins))
    missed = tuple(i for i, r in enumerate(rendered) if r is None)
    return BatchAnomalies(out_images, masks, diffs, records, list(specs), missed)


def synthesize_batch(
    images: torch.Tensor,
    method: str | Method = "synagen",
    *,
    seeds: Sequence[int],
    shape: str | None = None,
    mode: str | None = None,
    size_bin: SizeBin | str | int | None = None,
    regions: torch.Tensor | None = None,
    textures: Sequence[np.ndarray] = (),
    partners: Sequence[np.ndarray] = (),
    bins: Sequence[SizeBin] = DEFAULT_BINS,
    **options: Any,
) -> BatchAnomalies:
    """One anomaly per image of the batch: ``sample_specs`` then ``render_batch``."""
    method_obj = batched_method(method, options)
    specs = sample_specs(
        images, method_obj, seeds=seeds, shape=shape, mode=mode, size_bin=size_bin,
        regions=regions, textures=textures, partners=partners, bins=bins,
    )
    return render_batch(
        images, specs, regions=regions, textures=textures, partners=partners, bins=bins, method=method_obj
    )


def to_anomalies(batch: BatchAnomalies, *, gray: bool = False) -> list[Anomaly | None]:
    """``batch`` as numpy ``Anomaly`` objects on the host, one per image (``None`` for an index in
    ``batch.missed``), as ``synth.synthesize`` returns them: ``image`` ``(H, W, C)`` in the input's
    dtype, or ``(H, W)`` with ``gray`` (a single-channel input given as a 2-D array); ``mask`` bool
    ``(H, W)``; ``diff`` float32 ``(H, W)`` in [0, 1]; ``label`` ``None``.
    """
    # one copy per tensor for the whole batch: per-anomaly copies from a GPU cost a sync each
    images = batch.images.permute(0, 2, 3, 1).cpu().numpy()
    masks, diffs = batch.masks.cpu().numpy(), batch.diffs.cpu().numpy()
    missed = set(batch.missed)
    return [
        None if k in missed
        else Anomaly(images[k][:, :, 0] if gray else images[k], masks[k], diffs[k], None, batch.records[k], spec)
        for k, spec in enumerate(batch.specs)
    ]
