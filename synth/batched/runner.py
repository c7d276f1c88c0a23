"""The folder protocol's tasks rendered by the batched torch renderer (``--device``).

``DeviceRunner`` is the protocol's ``TaskRunner`` with another ``run``: the outputs of many
tasks of one source image (every drawn anomaly in every bin) go through ``render_batch``
``batch_size`` at a time on the device, and their PNG encoding and writing run on CPU threads
while the next batch renders. Files, names, rows, the resume log and failure rows are those of
the numpy runner; only the rendering differs (the renderer is recorded in ``config.json``).
Per-anomaly bytes do not depend on the batch, so any ``batch_size`` writes the same files.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..anomaly import Anomaly
from ..errors import InvalidParameterError, SynthError
from ..image import encode_png, write_atomic
from ..protocol import Job, Task, TaskResult, TaskRunner, metadata_row, output_names, region_path
from ..region import normalize_region
from . import render_batch, sample_specs, to_anomalies
from .device import choose_device


class DeviceRunner(TaskRunner):
    """Renders the protocol's tasks in batches on ``device``; ``encoders`` PNG-writing threads."""

    def __init__(self, job: Job, device: str, batch_size: int, encoders: int = 1) -> None:
        super().__init__(job)
        self.device = choose_device(device, what="--device")
        self.batch_size = int(batch_size)
        self.encoders = max(1, int(encoders))

    def run_all(self, tasks: Sequence[Task]) -> Iterator[tuple[int, TaskResult]]:
        """``(task index, result)`` for every task, each once all its files are written."""
        groups: OrderedDict[tuple[str, str | None], list[Task]] = OrderedDict()
        for task in tasks:
            partner = task.partner_id if self.needs_partner else None
            groups.setdefault((task.source_id, partner), []).append(task)
        with ThreadPoolExecutor(max_workers=self.encoders) as pool:
            waiting: deque[tuple[Task, list[Future | dict[str, Any]]]] = deque()
            for (source_id, partner_id), group in groups.items():
                for item in self._render_group(source_id, partner_id, group, pool):
                    waiting.append(item)
                    # hand back finished tasks in order, without waiting for the ones still encoding
                    while waiting and all(not isinstance(f, Future) or f.done() for f in waiting[0][1]):
                        yield self._result(*waiting.popleft())
            while waiting:
                yield self._result(*waiting.popleft())

    # ------------------------------------------------------------------------------------------
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

    def _render_group(self, source_id: str, partner_id: str | None, tasks: list[Task], pool: ThreadPoolExecutor):
        """Render every output of ``tasks`` (one source image); yield ``(task, outputs)`` per task,
        ``outputs`` holding a future per written output or a failure row."""
        try:
            source, image, region, partners, textures = self._inputs(source_id, partner_id)
        except SynthError as exc:
            for task in tasks:
                yield task, [{"failed": True, "source_id": task.source_id, "k": task.k, "error": str(exc)}]
            return
        array = image if image.ndim == 3 else image[:, :, None]
        one = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].to(self.device)
        regions = None if region is None else torch.from_numpy(region)[None].to(self.device)
        bins = list(range(len(self.bins))) if self.targets_size else [None]
        jobs = [(task, b) for task in tasks for b in bins]
        outputs: dict[int, list[Future | dict[str, Any]]] = {task.index: [] for task in tasks}
        level = self.config.png_compression
        base = None if image.dtype.kind == "f" else self._png_base(source)  # built once, before the threads
        mask_base = self._mask_base(image.shape[0], image.shape[1])
        gray = image.ndim == 2
        done = 0
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            for (task, b), result in zip(chunk, self._render_chunk(chunk, one, regions, textures, partners, gray)):
                file_name, mask_name = output_names(task, self.label, b)
                if isinstance(result, str):
                    outputs[task.index].append(
                        {"failed": True, "file_name": file_name, "source_id": task.source_id, "error": result}
                    )
                    continue
                outputs[task.index].append(
                    pool.submit(self._write, result, file_name, mask_name, task.source_id, level, base, mask_base)
                )
            # tasks whose every output is rendered can be handed on
            rendered = start + len(chunk)
            while done < len(tasks) and all(job[0] is not tasks[done] for job in jobs[rendered:]):
                yield tasks[done], outputs[tasks[done].index]
                done += 1
        for task in tasks[done:]:
            yield task, outputs[task.index]

    def _render_chunk(self, chunk, one, regions, textures, partners, gray) -> list[Anomaly | str]:
        """Anomalies (or failure messages) for ``chunk``'s ``(task, bin)`` jobs in one batch; a
        problem with one job (e.g. a region too small for its bin) costs only that job, since
        each anomaly's bytes do not depend on the batch it was rendered in."""
        try:
            return self._render_specs(chunk, one, regions, textures, partners, gray)
        except SynthError:
            if len(chunk) == 1:
                raise
        results: list[Anomaly | str] = []
        for job in chunk:
            try:
                results += self._render_specs([job], one, regions, textures, partners, gray)
            except SynthError as exc:
                results.append(str(exc))
        return results

    def _render_specs(self, chunk, one, regions, textures, partners, gray) -> list[Anomaly | str]:
        n = len(chunk)
        images = one.expand(n, -1, -1, -1)
        region_batch = None if regions is None else regions.expand(n, -1, -1)
        specs = []
        for task, b in chunk:
            specs += sample_specs(
                one, self.method, seeds=[task.seed], shape=task.shape, mode=task.mode,
                size_bin=None if b is None else self.bins[b], regions=regions, textures=textures,
                partners=partners, bins=self.bins,
            )
        out = render_batch(
            images, specs, regions=region_batch, textures=textures, partners=partners, bins=self.bins,
            method=self.method, strict=False,
        )
        results: list[Anomaly | str] = []
        for spec, anomaly in zip(specs, to_anomalies(out, gray=gray)):
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
            write_atomic(self.out / name, data)
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
