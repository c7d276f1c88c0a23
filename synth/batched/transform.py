"""Synthetic anomalies as training-time transforms, in the style of ``torchvision.transforms.v2``.

* ``Synthesize``: one image in (a ``(C, H, W)`` tensor or ``tv_tensors.Image``, as a dataset's
  ``__getitem__`` returns it), ``(image, tv_tensors.Mask, record)`` out. It runs the numpy path
  (any method, NSA included) where it is called, typically in DataLoader workers; each call draws
  its seed from torch's random generator (or ``generator``), which DataLoader seeds per worker,
  so a seeded DataLoader gives the same anomalies on every run.
* ``BatchSynthesize``: a batch already on its device (the GPU) in, the same triple for the batch
  out, rendered by ``synth.batched.render_batch`` (batched methods only). Seeds come from a
  counter: the k-th image it ever sees gets the k-th seed of ``seed``'s stream, so the result does
  not depend on how the images are batched.

``collate_anomalies`` stacks ``Synthesize`` outputs into ``(images, masks, records)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torchvision import tv_tensors

from ..anomaly import synthesize
from ..errors import InvalidImageError, InvalidParameterError
from ..method import Method
from ..registry import get_method
from ..sizebins import DEFAULT_BINS, SizeBin, resolve_bin
from . import _method, render_batch, sample_specs

_MAX_SEED = 2**31 - 1


def _check_p(p: float) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise InvalidParameterError(f"p (the share of images that get an anomaly) must lie in [0, 1], got {p}")
    return float(p)


class Synthesize(torch.nn.Module):
    """Put one synthetic anomaly into an image: ``image -> (image, tv_tensors.Mask, record)``.

    ``image``   ``(C, H, W)`` tensor (uint8, uint16 or float in [0, 1]; C = 1-4) or ``tv_tensors.Image``.
    Returns the image in the same type, dtype and layout; a bool ``tv_tensors.Mask`` ``(H, W)``
    of the changed pixels; the record (a dict of schema columns, ``None`` for an image left
    normal). ``p`` is the share of images that get an anomaly; ``method``, ``size_bin``, ``shape``,
    ``mode``, ``bins`` and method options are those of ``synth.synthesize``; ``partners`` and
    ``textures`` are numpy images for the methods that blend them.
    """

    def __init__(
        self,
        method: str | Method = "synagen",
        *,
        p: float = 1.0,
        size_bin: SizeBin | str | int | None = None,
        shape: str | None = None,
        mode: str | None = None,
        bins: Sequence[SizeBin] = DEFAULT_BINS,
        partners: Sequence[np.ndarray] = (),
        textures: Sequence[np.ndarray] = (),
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.method = get_method(method, **options) if isinstance(method, str) else method
        self.p = _check_p(p)
        self.size_bin = None if size_bin is None else resolve_bin(size_bin, tuple(bins))
        self.shape, self.mode, self.bins = shape, mode, tuple(bins)
        self.partners, self.textures = tuple(partners), tuple(textures)
        self.generator = generator

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, tv_tensors.Mask, dict[str, Any] | None]:
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            raise InvalidImageError(
                f"Synthesize expects one (C, H, W) tensor, got {type(image).__name__} of shape "
                f"{tuple(getattr(image, 'shape', ()))}; convert PIL images with transforms.v2.PILToTensor() first"
            )
        draws = torch.randint(0, _MAX_SEED, (2,), generator=self.generator)
        seed, coin = int(draws[0]), int(draws[1]) / _MAX_SEED
        empty = tv_tensors.Mask(torch.zeros(image.shape[1:], dtype=torch.bool))
        if coin >= self.p:
            return image, empty, None
        array = image.detach().cpu().permute(1, 2, 0).numpy()
        anomaly = synthesize(
            array, self.method, seed=seed, shape=self.shape, mode=self.mode, size_bin=self.size_bin,
            partners=self.partners, textures=self.textures, bins=self.bins,
        )
        out = torch.from_numpy(np.ascontiguousarray(anomaly.image)).reshape(array.shape).permute(2, 0, 1)
        out = tv_tensors.wrap(out, like=image) if isinstance(image, tv_tensors.TVTensor) else out
        return out, tv_tensors.Mask(torch.from_numpy(anomaly.mask)), anomaly.record


def collate_anomalies(batch: Sequence[tuple[torch.Tensor, torch.Tensor, dict | None]]):
    """DataLoader ``collate_fn`` for ``Synthesize`` outputs: ``(images, masks, records)``."""
    images, masks, records = zip(*batch)
    return torch.stack(list(images)), tv_tensors.Mask(torch.stack(list(masks))), list(records)


class BatchSynthesize(torch.nn.Module):
    """Anomalies for a batch already on its device: ``(B, C, H, W) -> (images, Mask, records)``.

    Same options as ``Synthesize`` (batched methods only; ``partners`` are not used by them).
    ``seed`` starts the stream of per-image seeds; images left normal (share ``1 - p``) keep
    their bytes, an all-False mask and the record ``None``.
    """

    def __init__(
        self,
        method: str | Method = "synagen",
        *,
        p: float = 1.0,
        seed: int = 0,
        size_bin: SizeBin | str | int | None = None,
        shape: str | None = None,
        mode: str | None = None,
        bins: Sequence[SizeBin] = DEFAULT_BINS,
        textures: Sequence[np.ndarray] = (),
        **options: Any,
    ) -> None:
        super().__init__()
        self.method = _method(method, options)
        self.p = _check_p(p)
        self.seed = int(seed)
        self.size_bin = size_bin
        self.shape, self.mode, self.bins, self.textures = shape, mode, tuple(bins), tuple(textures)
        self.seen = 0

    def _draws(self, count: int) -> tuple[list[int], list[bool]]:
        seeds, chosen = [], []
        for k in range(self.seen, self.seen + count):
            state = np.random.SeedSequence([self.seed, k]).generate_state(2)
            seeds.append(int(state[0] % _MAX_SEED))
            chosen.append(state[1] / 2.0**32 < self.p)
        self.seen += count
        return seeds, chosen

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tv_tensors.Mask, list[dict[str, Any] | None]]:
        seeds, chosen = self._draws(int(images.shape[0]))
        masks = torch.zeros((images.shape[0], *images.shape[2:]), dtype=torch.bool, device=images.device)
        records: list[dict[str, Any] | None] = [None] * len(seeds)
        picked = [k for k, c in enumerate(chosen) if c]
        out = images
        if picked:
            index = torch.as_tensor(picked, device=images.device)
            subset = images.index_select(0, index)
            specs = sample_specs(
                subset, self.method, seeds=[seeds[k] for k in picked], shape=self.shape, mode=self.mode,
                size_bin=self.size_bin, textures=self.textures, bins=self.bins,
            )
            result = render_batch(subset, specs, textures=self.textures, bins=self.bins, method=self.method)
            out = images.clone()
            out[index] = result.images
            masks[index] = result.masks
            for k, record in zip(picked, result.records):
                records[k] = record
        return out, tv_tensors.Mask(masks), records
