"""Synthetic anomalies as training-time transforms, in the style of ``torchvision.transforms.v2``.

* ``Synthesize``: one image in (a ``(C, H, W)`` tensor or ``tv_tensors.Image``, as a dataset's
  ``__getitem__`` returns it), ``(image, tv_tensors.Mask, record)`` out. It runs the numpy path
  (any method, NSA included) where it is called, typically in DataLoader workers; each call draws
  its seed from torch's random generator (or ``generator``), which DataLoader seeds per worker,
  so a seeded DataLoader gives the same anomalies on every run.
* ``BatchSynthesize``: a batch already on its device (the GPU) in, the same triple for the batch
  out, rendered through ``synth.engine`` (batched methods only). Seeds come from a counter: the
  k-th image it ever sees gets the k-th seed of ``seed``'s stream, and each anomaly's bytes depend
  only on its image and seed, so the result does not depend on how the images are batched.

``collate_anomalies`` stacks ``Synthesize`` outputs into ``(images, masks, records)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torchvision import tv_tensors

from .anomaly import synthesize
from .batched.device import to_device
from .batched.prepare import check_threads
from .batched.render import batched_method, reads_pixels
from .engine import Draw, Engine, Failure, Group, Staged
from .errors import InvalidImageError, InvalidParameterError
from .method import Method
from .registry import get_method
from .sizebins import DEFAULT_BINS, SizeBin, resolve_bin

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
        self.method.check_choices(shape, mode)
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
            partners=self.partners, textures=self.textures, label_bins=self.bins,
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
    their bytes, an all-False mask and the record ``None``. An anomaly no placement brings into
    its size bin raises ``SizeBinError`` (the other errors are those of ``synth.synthesize``).
    ``prep_threads`` CPU threads make the specs' plans (default: every usable CPU); for methods
    whose plans need only the images' size (SYNAGEN, CutPaste, ...) the next batch's are made
    while this one renders. Neither changes the bytes.
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
        prep_threads: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.method = batched_method(method, options)
        self.method.check_choices(shape, mode)
        self.p = _check_p(p)
        self.seed = int(seed)
        self.bins = tuple(bins)
        self.size_bin = None if size_bin is None else resolve_bin(size_bin, self.bins)
        self.shape, self.mode, self.textures = shape, mode, tuple(textures)
        self.prep_threads = check_threads(prep_threads)
        self.seen = 0
        # methods whose specs and plans need only the images' size are staged a batch ahead
        self._plans_ahead = not reads_pixels(self.method)
        self._ahead: tuple[tuple, Staged] | None = None

    def _draws(self, first: int, count: int) -> tuple[list[int], list[bool]]:
        """Seeds and coin flips of the images ``first .. first + count - 1`` of the stream."""
        seeds, chosen = [], []
        for k in range(first, first + count):
            state = np.random.SeedSequence([self.seed, k]).generate_state(2)
            seeds.append(int(state[0] % _MAX_SEED))
            chosen.append(state[1] / 2.0**32 < self.p)
        return seeds, chosen

    def _group(self, images: torch.Tensor, seeds: list[int]) -> Group:
        draws = [Draw(seed, self.shape, self.mode, self.size_bin) for seed in seeds]
        return Group(draws, images=images, textures=self.textures)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tv_tensors.Mask, list[dict[str, Any] | None]]:
        count = int(images.shape[0])
        first, self.seen = self.seen, self.seen + count
        seeds, chosen = self._draws(first, count)
        picked = [k for k, c in enumerate(chosen) if c]
        engine = Engine(self.method, self.bins, images.device, max(1, count), self.prep_threads, host=False)
        ahead, self._ahead = self._ahead, None
        staged = None
        if picked:
            subset = images.index_select(0, to_device(picked, images.device))
            if ahead is not None and ahead[0] == self._key(first, images):
                staged = engine.on(ahead[1], subset)  # drawn and planned while the previous batch rendered
            else:
                staged = engine.stage(self._group(subset, [seeds[k] for k in picked]))
        if self._plans_ahead:
            self._ahead = self._stage_next(engine, images)
        return self._apply(images, picked, [] if staged is None else engine.outcomes(staged))

    @staticmethod
    def _key(first: int, images: torch.Tensor) -> tuple:
        return first, int(images.shape[0]), tuple(images.shape[1:]), images.dtype, images.device

    def _stage_next(self, engine: Engine, images: torch.Tensor) -> tuple[tuple, Staged] | None:
        """The next call's specs and plans, made on CPU threads while this batch renders, for a
        next batch of the same size and image size (another one is staged anew)."""
        seeds, chosen = self._draws(self.seen, int(images.shape[0]))
        picked = [k for k, c in enumerate(chosen) if c]
        if not picked:
            return None
        # one image's copy stands in for the next batch (whose pixels the plans do not read)
        stand_in = images[:1].clone().expand(len(picked), *images.shape[1:])
        return self._key(self.seen, images), engine.stage(self._group(stand_in, [seeds[k] for k in picked]))

    @staticmethod
    def _apply(images: torch.Tensor, picked: list[int], outcomes: list) -> tuple[torch.Tensor, tv_tensors.Mask, list]:
        """The batch with image ``picked[i]`` replaced by ``outcomes[i]``; a failure raises its error."""
        for outcome in outcomes:
            if isinstance(outcome, Failure):
                raise outcome.error
        masks = torch.zeros((images.shape[0], *images.shape[2:]), dtype=torch.bool, device=images.device)
        records: list[dict[str, Any] | None] = [None] * int(images.shape[0])
        out = images.clone() if outcomes else images
        for k, anomaly in zip(picked, outcomes):
            out[k], masks[k], records[k] = anomaly.image, anomaly.mask, anomaly.record
        return out, tv_tensors.Mask(masks), records
