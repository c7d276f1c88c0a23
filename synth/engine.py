"""The one caller of a batched render: groups of anomalies in, one anomaly (or the reason it
failed) per draw out, in order.

A *group* is the anomalies drawn on one image (every output of a folder-protocol task in every
bin) or on one image each (a training batch); the engine cuts each group into batches of
``batch_size``, draws the next batch's specs and starts its plans (``prepare``) on CPU threads
before this one renders, so the device does not wait for them, and on a failed batch renders
its anomalies one at a time, so a problem with one (a region too small for its bin) costs only
that one: each anomaly's bytes do not depend on the batch it was rendered in. ``finish`` (e.g.
PNG encoding and writing) runs on ``threads`` CPU threads while the next batch renders. The
anomalies come back as numpy ``Anomaly`` objects on the host, or (``host=False``, for a training
loop) as ``OnDevice`` tensors that never leave the device.

``render`` runs a stream of groups with its own preparing ahead; a caller that receives its
batches one at a time (``synth.transforms.BatchSynthesize``) stages the next one itself with
``stage`` / ``on`` / ``outcomes``, the steps ``render`` is made of.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import groupby
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from .anomaly import Anomaly
from .batched import PreparedBatch, prepare_batch, sample_specs, to_anomalies
from .batched.device import choose_device
from .batched.prepare import check_threads
from .errors import SizeBinError, SynthError
from .method import Method
from .sizebins import SizeBin


@dataclass(frozen=True)
class Draw:
    """One anomaly to render: its seed and the choices the caller fixes (``None``: drawn)."""

    seed: int
    shape: str | None = None
    mode: str | None = None
    size_bin: SizeBin | None = None


@dataclass(frozen=True)
class Group:
    """Anomalies rendered together on one device.

    ``images``   ``(1, C, H, W)``: every draw on this image; ``(N, C, H, W)``: draw i on image i.
    ``regions``  allowed-pixel masks, ``(1, H, W)`` or ``(N, H, W)`` like ``images``, or ``None``.
    ``gray``     the anomalies' images as ``(H, W)`` (a single-channel source given as 2-D).
    ``error``    the group's inputs could not be read: every draw fails with this message.
    """

    draws: Sequence[Draw]
    images: torch.Tensor | None = None
    regions: torch.Tensor | None = None
    textures: tuple[np.ndarray, ...] = ()
    partners: tuple[np.ndarray, ...] = ()
    gray: bool = False
    error: str | None = None
    key: Any = field(default=None, compare=False)  # the caller's name for the group


@dataclass(frozen=True)
class OnDevice:
    """One anomaly left on the device: ``image`` ``(C, H, W)`` in the input's dtype, ``mask``
    bool ``(H, W)``, and its record."""

    image: torch.Tensor
    mask: torch.Tensor
    record: dict[str, Any]


class Failure(str):
    """Why one anomaly could not be made: the message (a ``str``, as written in a failure row)
    and ``error``, the ``SynthError`` to raise for it."""

    error: SynthError

    def __new__(cls, error: SynthError) -> "Failure":
        failure = super().__new__(cls, str(error))
        failure.error = error
        return failure


#: one anomaly, or the reason it could not be made
Outcome = Anomaly | OnDevice | Failure


@dataclass(frozen=True)
class Staged:
    """The draws ``start:stop`` of ``group`` with their specs drawn and plans started
    (``prepared``), or the error that stopped it (``None``: the group's inputs failed)."""

    group: Group
    start: int
    stop: int
    prepared: PreparedBatch | SynthError | None


def _choices(draw: Draw) -> tuple:
    return draw.shape, draw.mode, draw.size_bin


def image_batch(image: np.ndarray, region: np.ndarray | None, device: torch.device):
    """A host image ``(H, W[, C])`` and its region ``(H, W)`` as batches of one on ``device``."""
    array = image if image.ndim == 3 else image[:, :, None]
    images = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].to(device)
    return images, None if region is None else torch.from_numpy(region)[None].to(device)


class Engine:
    """Renders groups of draws with ``method`` on ``device``, ``batch_size`` at a time;
    ``prep_threads`` CPU threads make the plans (default: every usable CPU)."""

    def __init__(
        self, method: Method, bins: Sequence[SizeBin], device: str | torch.device | None, batch_size: int,
        prep_threads: int | None = None, what: str = "device", host: bool = True,
    ) -> None:
        self.method = method
        self.host = host
        self.bins = tuple(bins)
        self.device = choose_device(device, what=what)
        self.batch_size = int(batch_size)
        self.prep_threads = check_threads(prep_threads)

    def render(
        self, groups: Iterable[Group], finish: Callable[[Group, int, Anomaly], Any] | None = None, threads: int = 1,
    ) -> Iterator[tuple[Group, int, list[Outcome | Future]]]:
        """``(group, index of the batch's first draw, outcomes)`` per batch, in order. With
        ``finish``, each anomaly's outcome is the ``Future`` of ``finish(group, draw index,
        anomaly)`` run on ``threads`` threads (failures stay ``Failure``s)."""
        with ThreadPoolExecutor(max_workers=max(1, int(threads))) as pool:
            pending = None
            for group, start in self._batches(groups):
                staged = self.stage(group, start)
                if pending is not None:
                    yield self._finish(pending, finish, pool)
                pending = staged
            if pending is not None:
                yield self._finish(pending, finish, pool)

    def stage(self, group: Group, start: int = 0) -> Staged:
        """The batch of ``group``'s draws from ``start`` (``batch_size`` of them; all of a group
        whose inputs failed) with its specs drawn and its plans started on CPU threads; returns
        at once."""
        if group.error is not None:
            return Staged(group, start, len(group.draws), None)
        stop = min(len(group.draws), start + self.batch_size)
        return Staged(group, start, stop, self._prepare(group, start, stop))

    @staticmethod
    def on(staged: Staged, images: torch.Tensor) -> Staged:
        """``staged``'s specs and plans for other images of the same shape (``images`` replaces
        the group's), for methods whose specs and plans do not read pixels (``reads_pixels``):
        a batch staged before its images exist."""
        prepared = staged.prepared
        if isinstance(prepared, PreparedBatch):
            prepared = prepared.on(images)
        return replace(staged, group=replace(staged.group, images=images), prepared=prepared)

    def outcomes(self, staged: Staged) -> list[Outcome]:
        """One outcome per draw of the staged batch, rendered on the device; a batch that failed
        as a whole is rendered again one draw at a time."""
        group, start, stop = staged.group, staged.start, staged.stop
        if group.error is not None:
            return [Failure(SynthError(group.error))] * (stop - start)
        try:
            if isinstance(staged.prepared, SynthError):
                raise staged.prepared
            return self._anomalies(staged.prepared, group.gray)
        except SynthError as exc:
            if stop - start == 1:
                return [Failure(exc)]
        outcomes: list[Outcome] = []
        for k in range(start, stop):
            one = self._prepare(group, k, k + 1)
            try:
                if isinstance(one, SynthError):
                    raise one
                outcomes += self._anomalies(one, group.gray)
            except SynthError as exc:
                outcomes.append(Failure(exc))
        return outcomes

    # ------------------------------------------------------------------------------------------
    def _batches(self, groups: Iterable[Group]) -> Iterator[tuple[Group, int]]:
        for group in groups:
            step = len(group.draws) if group.error is not None else self.batch_size
            for start in range(0, len(group.draws), max(1, step)):
                yield group, start

    def _prepare(self, group: Group, start: int, stop: int) -> PreparedBatch | SynthError:
        """The specs of ``draws[start:stop]`` drawn and their plans started (or the error that
        stopped it). Each draw's spec comes from its own seed, so drawing a run of draws with the
        same choices in one ``sample_specs`` call gives the specs of one call per draw."""
        images, regions = self._inputs(group, start, stop)
        try:
            specs, k = [], 0
            for (shape, mode, size_bin), run in groupby(group.draws[start:stop], key=_choices):
                seeds = [draw.seed for draw in run]
                specs += sample_specs(
                    images[k : k + len(seeds)], self.method, seeds=seeds, shape=shape, mode=mode, size_bin=size_bin,
                    regions=None if regions is None else regions[k : k + len(seeds)],
                    textures=group.textures, partners=group.partners, bins=self.bins,
                )
                k += len(seeds)
            return prepare_batch(
                images, specs, regions=regions, textures=group.textures, partners=group.partners, bins=self.bins,
                method=self.method, prep_threads=self.prep_threads,
            )
        except SynthError as exc:
            return exc

    @staticmethod
    def _inputs(group: Group, start: int, stop: int):
        """The images (and regions) of ``draws[start:stop]``: one image repeated by ``expand``, or a slice."""
        n = stop - start
        if group.images.shape[0] == 1:
            regions = None if group.regions is None else group.regions.expand(n, -1, -1)
            return group.images.expand(n, -1, -1, -1), regions
        return group.images[start:stop], None if group.regions is None else group.regions[start:stop]

    def _finish(self, staged: Staged, finish, pool: ThreadPoolExecutor):
        outcomes = self.outcomes(staged)
        if finish is not None:
            outcomes = [
                outcome if isinstance(outcome, Failure) else pool.submit(finish, staged.group, staged.start + k, outcome)
                for k, outcome in enumerate(outcomes)
            ]
        return staged.group, staged.start, outcomes

    def _anomalies(self, prepared: PreparedBatch, gray: bool) -> list[Outcome]:
        out = prepared.render(strict=False)
        if self.host:
            anomalies = to_anomalies(out, gray=gray)
        else:
            missed = set(out.missed)
            anomalies = [
                None if k in missed else OnDevice(out.images[k], out.masks[k], out.records[k]) for k in range(len(out.specs))
            ]
        outcomes: list[Outcome] = []
        for spec, anomaly in zip(prepared.specs, anomalies):
            if anomaly is None:
                outcomes.append(Failure(SizeBinError(
                    f"could not bring a {spec.shape}/{spec.mode} anomaly into size bin "
                    f"{spec.size_bin.name if spec.size_bin else '(any)'} with the torch renderer; the image may be "
                    "too flat for this mode or the region too fragmented; try another seed, mode or bin"
                )))
            else:
                outcomes.append(anomaly)
        return outcomes
