"""The one interface every detector implements: fit on anomaly-free images, then score images.

>>> detector = PatchCore(coreset_ratio=0.1)          # doctest: +SKIP
>>> detector.fit(good_images)                          # list of uint8/float arrays, gray or RGB
>>> result = detector.score(test_images)
>>> result.scores        # float32 (N,), larger = more anomalous
>>> result.maps[0]       # float32 (H, W) anomaly map at the input image's resolution
>>> detector.save("patchcore.pt"); same = load_detector("patchcore.pt")

Images are converted at the edge (``detect.images``). With ``image_size=None`` a detector works at
the resolution it was fitted on and refuses other sizes; with ``image_size=S`` every image is
resized to ``S x S`` on the way in and maps are resized back to each input's own size.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from detect.errors import InvalidImagesError, NotFittedError
from detect.images import channels_of, same_size, to_float_image, to_float_images, warn_converted
from synth.atomic import atomic_path

FILE_FORMAT = "anomalyforge-detector"
FILE_VERSION = 1


@dataclass(frozen=True)
class Detection:
    """Scores of N images.

    ``scores``  float32 ``(N,)`` image anomaly scores (larger = more anomalous; unbounded).
    ``maps``    N float32 arrays ``(H_i, W_i)``, each at its input image's resolution.
    """

    scores: np.ndarray
    maps: list[np.ndarray]


class Detector(ABC):
    """Base class. Subclasses set ``name`` and implement ``_fit``, ``_score_batch``, ``_state``.

    Common options: ``image_size`` (int or None, see module doc), ``batch_size`` (images per forward
    pass), ``device`` ("cpu", "cuda", "cuda:1", ...), ``seed`` (all randomness: coreset start,
    projections, channel subsets, training).
    """

    name: ClassVar[str]

    def __init__(
        self,
        *,
        image_size: int | None = None,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if image_size is not None and (not isinstance(image_size, int) or image_size < 32):
            raise InvalidImagesError(f"image_size must be an integer >= 32 or None, got {image_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.image_size = image_size
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.seed = int(seed)
        self.channels: int | None = None  # 1 or 3, fixed by fit
        self.fit_size: tuple[int, int] | None = None  # (H, W) the detector works at

    # --- public API --------------------------------------------------------------------------
    def fit(self, images: Iterable[Any], *, progress: bool = False) -> "Detector":
        """Fit on anomaly-free images (all gray or all RGB; one size unless ``image_size`` is set).

        ``progress`` shows tqdm bars for the feature pass and the slow steps of fitting.
        """
        arrays = images if isinstance(images, Sequence) else list(images)
        if self.streams_fit:
            self._fit(self._fit_batches(arrays, progress), progress=progress)
        else:
            self._fit(self.prepare_fit(arrays))
        return self

    def prepare_fit(self, images: Iterable[Any]) -> torch.Tensor:
        """Check fit images, fix the working size and channels; float32 ``(N, C, H, W)`` in [0, 1] on CPU."""
        arrays = to_float_images(images, "fit images")
        if self.image_size is None:
            self.fit_size = same_size(arrays, "fit images")
        else:
            self.fit_size = (self.image_size, self.image_size)
        self.channels = arrays[0].shape[2]
        return self._to_tensor(arrays, torch.device("cpu"))

    def score(self, images: Iterable[Any], *, map_size: int | None = None) -> Detection:
        """Image scores and anomaly maps (float32).

        ``map_size`` None gives each map at its input's resolution; an integer ``S`` gives maps
        whose long side is at most ``S`` (aspect kept, never enlarged), resized once from the
        working size, for metrics that need no more (``detect.evaluation.evaluate``'s ``pixel_size``).
        Image scores do not depend on ``map_size``.
        """
        if self.fit_size is None:
            raise NotFittedError(f"{self.name} is not fitted; call fit(images) or load_detector(path) first")
        arrays = to_float_images(images, "images", channels=self.channels)
        for i, img in enumerate(arrays):
            if self.image_size is None and img.shape[:2] != self.fit_size:
                h, w = self.fit_size
                raise InvalidImagesError(
                    f"images[{i}] is {img.shape[1]}x{img.shape[0]} but the detector was fitted at {w}x{h}; "
                    f"resize or crop it to {w}x{h}, or fit the detector with image_size=... (--image-size) to resize"
                )
        scores: list[np.ndarray] = []
        maps: list[np.ndarray] = []
        for start in range(0, len(arrays), self.batch_size):
            chunk = arrays[start : start + self.batch_size]
            with torch.no_grad():
                batch_maps = self._score_batch(self._to_tensor(chunk))  # (B, h, w) at working size
                scores.append(self._image_scores(batch_maps).float().cpu().numpy())
                maps += resize_maps(batch_maps, [map_shape(img.shape[:2], map_size) for img in chunk],
                                    antialias=bool(map_size))
        return Detection(scores=np.concatenate(scores).astype(np.float32), maps=maps)

    def to(self, device: str | torch.device) -> "Detector":
        self.device = torch.device(device)
        self._move(self.device)
        return self

    def save(self, path: str | Path) -> Path:
        """Write the fitted detector (config + tensors) to ``path``; ``load_detector`` reads it."""
        if self.fit_size is None:
            raise NotFittedError(f"{self.name} is not fitted; nothing to save")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "detector": self.name,
            "config": self.config(),
            "fitted": {"channels": self.channels, "fit_size": list(self.fit_size)},
            "state": {k: v.detach().cpu() for k, v in self._state().items()},
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON types) that rebuild an unfitted twin of this detector."""
        return {"image_size": self.image_size, "batch_size": self.batch_size, "seed": self.seed}

    # --- for subclasses -----------------------------------------------------------------------
    #: True: ``_fit(batches, progress=...)`` gets an iterator of float32 ``(B, C, H, W)`` batches
    #: already on ``self.device`` (images are converted batch by batch, so fitting on hundreds of
    #: large images never holds them all as float32). False: ``_fit(images)`` gets one CPU tensor.
    streams_fit: ClassVar[bool] = False

    @abstractmethod
    def _fit(self, images, **kwargs) -> None:
        """``images`` float32 ``(N, C, H, W)`` in [0, 1] on CPU, or batches (see ``streams_fit``)."""

    @abstractmethod
    def _score_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Anomaly maps ``(B, H, W)`` at the working size for float32 ``(B, C, H, W)`` in [0, 1]."""

    @abstractmethod
    def _state(self) -> dict[str, torch.Tensor]:
        """Every fitted tensor that ``_load_state`` needs."""

    @abstractmethod
    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        ...

    def _move(self, device: torch.device) -> None:
        """Move fitted tensors and networks to ``device``."""

    def _image_scores(self, maps: torch.Tensor) -> torch.Tensor:
        """Image score from working-size maps ``(B, H, W)``: the maximum (overridable)."""
        return maps.flatten(1).amax(dim=1)

    def _fit_batches(self, arrays: Sequence[Any], progress: bool) -> Iterator[torch.Tensor]:
        """Fit images converted and checked batch by batch: float32 ``(B, C, H, W)`` on the device.

        The fit set's layouts fix the channels (gray when every image is gray, else RGB; images
        converted by ``detect.images``' rule, said once); the first image fixes the working size
        (without ``image_size``), and a later image of another size raises the same
        ``InvalidImagesError`` as a whole-list check would.
        """
        from tqdm.auto import tqdm

        if len(arrays) == 0:
            raise InvalidImagesError("no fit images given; pass at least one image")
        self.fit_size = None if self.image_size is None else (self.image_size, self.image_size)
        kinds = [channels_of(img) for img in arrays]
        self.channels = max(kinds)  # gray when every image is gray, else RGB
        if kinds.count(1) and self.channels == 3:
            warn_converted(kinds.count(1), len(arrays), self.channels, "fit images")
        starts = range(0, len(arrays), self.batch_size)
        for start in tqdm(starts, desc=f"{self.name}: features", unit="batch", disable=not progress, leave=False):
            chunk = [to_float_image(img, f"fit images[{start + i}]")
                     for i, img in enumerate(arrays[start : start + self.batch_size])]
            chunk = [np.repeat(img, 3, axis=2) if img.shape[2] != self.channels else img for img in chunk]
            if self.fit_size is None:
                self.fit_size = chunk[0].shape[:2]
            if self.image_size is None:
                for i, img in enumerate(chunk):
                    if img.shape[:2] != self.fit_size:
                        height, width = self.fit_size
                        raise InvalidImagesError(
                            f"fit images[{start + i}] is {img.shape[1]}x{img.shape[0]} but fit images[0] is "
                            f"{width}x{height}; resize or crop them to one size, or give the detector an "
                            "image_size to resize to"
                        )
            yield self._to_tensor(chunk)

    def _to_tensor(self, arrays: Sequence[np.ndarray], device: torch.device | None = None) -> torch.Tensor:
        """float32 ``(N, C, H, W)`` at the working size on ``device`` (default ``self.device``).

        Images move to the device once, then are resized there (antialiased bilinear).
        """
        device = self.device if device is None else device
        size = tuple(self.fit_size) if self.fit_size is not None else None
        shapes = {a.shape for a in arrays}
        if len(shapes) == 1:
            batch = torch.from_numpy(np.stack(arrays)).to(device).permute(0, 3, 1, 2)
            if size is not None and tuple(batch.shape[-2:]) != size:
                batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
            return batch.contiguous()
        tensors = []
        for a in arrays:
            t = torch.from_numpy(np.ascontiguousarray(a)).to(device).permute(2, 0, 1)[None]
            if size is not None and tuple(t.shape[-2:]) != size:
                t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
            tensors.append(t[0])
        return torch.stack(tensors).contiguous()


def map_shape(image_shape: tuple[int, int], map_size: int | None) -> tuple[int, int]:
    """``(H, W)`` of a map for an image of ``image_shape``: as is, or shrunk so the long side is at
    most ``map_size`` (aspect kept, each side at least 1 px; ``None``/0 = as is)."""
    h, w = int(image_shape[0]), int(image_shape[1])
    if not map_size or max(h, w) <= map_size:
        return h, w
    scale = map_size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_maps(maps: torch.Tensor, shapes: Sequence[tuple[int, int]], antialias: bool = False) -> list[np.ndarray]:
    """Working-size maps ``(B, h, w)`` resized once each to ``shapes[i]``: float32 numpy arrays.

    Bilinear; with ``antialias`` a shrunk pixel averages what it covers (for maps shrunk for
    metrics). Maps already at their shape are not resampled; a batch with one common shape is
    resized in one call.
    """
    def resize(m: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        if tuple(m.shape[-2:]) == tuple(shape):
            return m
        return F.interpolate(m[:, None], size=shape, mode="bilinear", align_corners=False,
                             antialias=antialias)[:, 0]

    if len(set(shapes)) == 1:
        out = resize(maps, shapes[0]).float().cpu().numpy()
        return [np.ascontiguousarray(m) for m in out]
    return [resize(m[None], shape)[0].float().cpu().numpy() for m, shape in zip(maps, shapes)]


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of ``(B, H, W)`` maps (reflect padding, truncated at 4 sigma)."""
    if sigma <= 0:
        return maps
    radius = int(math.ceil(4 * sigma))
    radius = min(radius, maps.shape[-1] - 1, maps.shape[-2] - 1)
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = maps[:, None]
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return out[:, 0]
