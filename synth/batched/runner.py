"""The folder protocol's tasks rendered by the batched torch renderer (``--device``).

``DeviceRunner`` is the protocol's ``TaskRunner`` with another ``run``: the outputs of many
tasks of one source image (every drawn anomaly in every bin) go through ``render_batch``
``batch_size`` at a time on the device, and their PNG encoding and writing run on CPU threads
while the next batch renders; the next batch's specs are drawn and its plans (``prepare``) made
on CPU threads before this one renders, so neither the encoding nor the planning leaves the
device idle. Files, names, rows, the resume log and failure rows are those of
the numpy runner; only the rendering differs (the renderer is recorded in ``config.json``).
Per-anomaly bytes do not depend on the batch, so any ``batch_size`` writes the same files.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..anomaly import Anomaly
from ..errors import InvalidParameterError, SynthError
from ..atomic import write_atomic
from ..image import encode_png
from ..protocol import Job, Task, TaskResult, TaskRunner, metadata_row, output_names, region_path
from ..region import normalize_region
from . import PreparedBatch, prepare_batch, sample_specs, to_anomalies
from .device import choose_device
from .prepare import check_threads


@dataclass
class _Group:
    """The tasks of one source image (and partner) and what their batches share."""

    tasks: list[Task]
    jobs: list[tuple[Task, int | None]]  # (task, bin index) per output, in file order
    error: str | None = None  # the inputs could not be read: every task fails with this
    inputs: tuple = ()  # (image batch of 1, region batch of 1, textures, partners, gray)
    encoding: tuple = ()  # (PNG base of the source, PNG base of the masks)
    outputs: dict[int, list[Future | dict[str, Any]]] = field(default_factory=dict)
    rendered: int = 0  # jobs rendered so far
    handed: int = 0  # tasks handed on so far


class DeviceRunner(TaskRunner):
    """Renders the protocol's tasks in batches on ``device``; ``encoders`` PNG-writing threads,
    ``prep_threads`` threads making the next batch's plans (default: every usable CPU)."""

    def __init__(self, job: Job, device: str, batch_size: int, encoders: int = 1, prep_threads: int | None = None) -> None:
        super().__init__(job)
        self.device = choose_device(device, what="--device")
        self.batch_size = int(batch_size)
        self.encoders = max(1, int(encoders))
        self.prep_threads = check_threads(prep_threads)

    def run_all(self, tasks: Sequence[Task]) -> Iterator[tuple[int, TaskResult]]:
        """``(task index, result)`` for every task, each once all its files are written."""
        groups: OrderedDict[tuple[str, str | None], list[Task]] = OrderedDict()
        for task in tasks:
            partner = task.partner_id if self.needs_partner else None
            groups.setdefault((task.source_id, partner), []).append(task)
        with ThreadPoolExecutor(max_workers=self.encoders) as pool:
            waiting: deque[tuple[Task, list[Future | dict[str, Any]]]] = deque()
            for item in self._rendered(groups, pool):
                waiting.append(item)
                # hand back finished tasks in order, without waiting for the ones still encoding
                while waiting and all(not isinstance(f, Future) or f.done() for f in waiting[0][1]):
                    yield self._result(*waiting.popleft())
            while waiting:
                yield self._result(*waiting.popleft())

    # ------------------------------------------------------------------------------------------
    def _rendered(self, groups, pool: ThreadPoolExecutor):
        """``(task, outputs)`` per task in order; ``outputs`` hold a future per written output or
        a failure row. Batch k+1 (possibly of the next image) is read, drawn and its plans
        started on the CPU before batch k renders, so the device does not wait for them."""
        pending = None
        for group, chunk in self._batches(groups):
            staged = (group, chunk, None if chunk is None else self._prepare(group, chunk))
            if pending is not None:
                yield from self._finish(*pending, pool)
            pending = staged
        if pending is not None:
            yield from self._finish(*pending, pool)

    def _batches(self, groups) -> Iterator[tuple[_Group, list | None]]:
        """``(group, jobs of one batch)`` in order; ``(group, None)`` for a group whose inputs
        could not be read."""
        bins = list(range(len(self.bins))) if self.targets_size else [None]
        for (source_id, partner_id), tasks in groups.items():
            group = _Group(tasks, [(task, b) for task in tasks for b in bins])
            group.outputs = {task.index: [] for task in tasks}
            try:
                source, image, region, partners, textures = self._inputs(source_id, partner_id)
            except SynthError as exc:
                group.error = str(exc)
                yield group, None
                continue
            array = image if image.ndim == 3 else image[:, :, None]
            one = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].to(self.device)
            regions = None if region is None else torch.from_numpy(region)[None].to(self.device)
            group.inputs = (one, regions, textures, partners, image.ndim == 2)
            base = None if image.dtype.kind == "f" else self._png_base(source)  # built once, before the threads
            group.encoding = (base, self._mask_base(image.shape[0], image.shape[1]))
            for start in range(0, len(group.jobs), self.batch_size):
                yield group, group.jobs[start : start + self.batch_size]

    def _inputs(self, source_id: str, partner_id: str | None):
        job = self.job
        source = str(Path(job.input_dir) / source_id)
        image = self._load(source)
        region_file = region_path(job.input_dir, job.region_dir, source_id)
        region = None
        if region_file is not None:
            region = normalize_region(self._load(str(region_file)), image.shape[0], image.shape[1])
        partners = () if partner_id is None else (self._load(str(Path(job.input_dir) / partner_id)),)
        return source, image, region, partners, self.textures()

    def _prepare(self, group: _Group, chunk) -> PreparedBatch | SynthError:
        """The batch's specs drawn and its plans started (or the error that stopped it)."""
        one, regions, textures, partners, _ = group.inputs
        try:
            specs = []
            for task, b in chunk:
                specs += sample_specs(
                    one, self.method, seeds=[task.seed], shape=task.shape, mode=task.mode,
                    size_bin=None if b is None else self.bins[b], regions=regions, textures=textures,
                    partners=partners, bins=self.bins,
                )
            n = len(chunk)
            return prepare_batch(
                one.expand(n, -1, -1, -1), specs, regions=None if regions is None else regions.expand(n, -1, -1),
                textures=textures, partners=partners, bins=self.bins, method=self.method,
                prep_threads=self.prep_threads,
            )
        except SynthError as exc:
            return exc

    def _finish(self, group: _Group, chunk, prepared, pool: ThreadPoolExecutor):
        """Render one prepared batch, queue its files for writing and yield the group's tasks
        whose every output is rendered."""
        if chunk is None:
            for task in group.tasks:
                yield task, [{"failed": True, "source_id": task.source_id, "k": task.k, "error": group.error}]
            return
        level = self.config.png_compression
        base, mask_base = group.encoding
        for (task, b), result in zip(chunk, self._render_chunk(group, chunk, prepared)):
            file_name, mask_name = output_names(task, self.label, b)
            if isinstance(result, str):
                group.outputs[task.index].append(
                    {"failed": True, "file_name": file_name, "source_id": task.source_id, "error": result}
                )
                continue
            group.outputs[task.index].append(
                pool.submit(self._write, result, file_name, mask_name, task.source_id, level, base, mask_base)
            )
        group.rendered += len(chunk)
        tasks = group.tasks
        while group.handed < len(tasks) and all(job[0] is not tasks[group.handed] for job in group.jobs[group.rendered:]):
            yield tasks[group.handed], group.outputs[tasks[group.handed].index]
            group.handed += 1

    def _render_chunk(self, group: _Group, chunk, prepared) -> list[Anomaly | str]:
        """Anomalies (or failure messages) for ``chunk``'s ``(task, bin)`` jobs in one batch; a
        problem with one job (e.g. a region too small for its bin) costs only that job, since
        each anomaly's bytes do not depend on the batch it was rendered in."""
        try:
            if isinstance(prepared, SynthError):
                raise prepared
            return self._anomalies(prepared, group.inputs[4])
        except SynthError as exc:
            if len(chunk) == 1:
                return [str(exc)]
        results: list[Anomaly | str] = []
        for job in chunk:
            one_job = self._prepare(group, [job])
            try:
                if isinstance(one_job, SynthError):
                    raise one_job
                results += self._anomalies(one_job, group.inputs[4])
            except SynthError as exc:
                results.append(str(exc))
        return results

    @staticmethod
    def _anomalies(prepared: PreparedBatch, gray: bool) -> list[Anomaly | str]:
        out = prepared.render(strict=False)
        results: list[Anomaly | str] = []
        for spec, anomaly in zip(prepared.specs, to_anomalies(out, gray=gray)):
            if anomaly is None:
                results.append(
                    f"could not bring a {spec.shape}/{spec.mode} anomaly into size bin "
                    f"{spec.size_bin.name if spec.size_bin else '(any)'} with the torch renderer; the image may be "
                    "too flat for this mode or the region too fragmented; try another seed, mode or bin"
                )
            else:
                results.append(anomaly)
        return results

    def _write(self, anomaly: Anomaly, file_name: str, mask_name: str, source_id: str, level: int, base, mask_base):
        image_png = encode_png(anomaly.image, level) if base is None else encode_png(anomaly.image, level, base)
        mask_png = encode_png(anomaly.mask_u8, level, mask_base)
        files = {}
        for name, data in ((file_name, image_png), (mask_name, mask_png)):
            write_atomic(self.out / name, data, durable=False)  # as the numpy runner's outputs
            files[name] = [len(data), zlib.crc32(data)]
        return metadata_row(anomaly, file_name, mask_name, source_id), files

    @staticmethod
    def _result(task: Task, outputs: list[Future | dict[str, Any]]) -> tuple[int, TaskResult]:
        rows, failed, files = [], [], {}
        for item in outputs:
            if isinstance(item, Future):
                row, written = item.result()
                rows.append(row)
                files.update(written)
            else:
                failed.append(item)
        return task.index, TaskResult(rows, failed, files)
