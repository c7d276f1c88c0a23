"""The paper's dataset protocol as one call: every image x K anomalies x shapes x modes x size bins.

Output is an ``imagefolder`` layout that ``datasets.load_dataset("imagefolder", data_dir=OUT)``
reads: ``images/``, ``masks/`` and ``metadata.jsonl`` (one object per output: ``file_name``,
``mask_file_name``, ``source_id`` and the schema columns), plus ``config.json`` (the generation
config and tool version), ``inputs.json`` (the absolute path of the input folder) and
``failures.jsonl`` when some output could not be made.

Determinism: each task (image, k, shape, mode) gets a seed derived from the run seed and the task's
identity (not from its position in a queue), so the same inputs and seed give the same files for any
number of workers. One task renders the same drawn anomaly in every requested bin, as in the paper
("resizing it for the five size ranges"). Resuming: finished outputs are logged to
``metadata.partial.jsonl`` as they complete; a rerun skips them. A finished folder keeps no log:
its ``metadata.jsonl`` rows (files checked to decode) tell a rerun what is done. A run holds its
output folder (``synth.run_lock``) from its first write to its last.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import signal
import warnings
import zlib
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .anomaly import Anomaly, PreparedImage, prepare, synthesize
from .atomic import flush_to_disk, write_atomic
from .config import ProtocolConfig, RunOptions, resolve_generation
from .errors import InvalidParameterError, SynthError
from .image import IMAGE_SUFFIXES, encode_png, load_image
from .layout import (CONFIG, FAILURES, GENERATED_OUTPUTS, INPUTS, METADATA, PARTIAL, TOOL, is_generated_output,
                     output_folders)
from .memory import MemoryBudget, check_image_memory
from .method import Method
from .record import metadata_row
from .region import normalize_region
from .registry import get_method
from .run_lock import claimed_folder
from .version import tool_version

MASK_SUFFIX = "_mask"  # "<name>_mask.png" beside an image is its region mask


@dataclass(frozen=True)
class Task:
    index: int
    source_id: str
    k: int
    shape: str | None
    mode: str | None
    seed: int
    partner_id: str | None


class MaskNamedInputs(UserWarning):
    """Images named like region masks (``<name>_mask.*``) that are read as inputs: no ``<name>``
    image lies beside them."""


def is_region_mask(name: str, image_stems: set[str]) -> bool:
    """Whether the file ``name`` is a region mask: ``<stem>_mask.png`` with an image ``<stem>.*`` in
    the same folder (``image_stems``: the stems of the image files there). Any other file, such as
    ``face_mask.png`` with no ``face`` image beside it, is an input image."""
    stem, suffix = os.path.splitext(name)
    return suffix == ".png" and stem.endswith(MASK_SUFFIX) and stem[: -len(MASK_SUFFIX)] in image_stems


def list_images(input_dir: str | os.PathLike, exclude: Sequence[str | os.PathLike | None] = ()) -> list[str]:
    """Image files under ``input_dir`` (recursive, sorted), as paths relative to it.

    Left out: region masks (``is_region_mask``), hidden files and folders, the project's own outputs
    recognised by their folder's marker files (``synth.layout``: the outputs of a generated
    folder, finished or interrupted, including ``input_dir`` itself, and build folders), and
    anything under the folders in ``exclude`` (e.g. a region-mask folder inside ``input_dir``).
    A user's own ``images/`` or ``masks/`` folder is read like any other. Symbolic links are
    followed, to files and folders alike, wherever they point; a folder reached a second time (a
    link loop, two links to one folder) is listed once. Inputs named like region masks without their
    image beside them are reported with a ``MaskNamedInputs`` warning.
    """
    root = Path(input_dir)
    require_folder(root, "input folder")
    skipped = [Path(e).resolve() for e in exclude if e is not None]
    found, mask_named = [], []
    visited: set[Path] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        real = here.resolve()
        if real in visited:
            dirs[:] = []
            continue
        visited.add(real)
        outputs = {p.name for p in output_folders(here)}
        # pruning in place stops os.walk from descending into outputs, hidden and excluded folders
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and d not in outputs
            and not any((here / d).resolve().is_relative_to(s) for s in skipped)
        )
        images = [n for n in files if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_SUFFIXES]
        stems = {os.path.splitext(n)[0] for n in images}
        for name in images:
            if is_region_mask(name, stems):
                continue
            if is_generated_output(here / name):
                continue
            rel = (here / name).relative_to(root).as_posix()
            found.append(rel)
            if os.path.splitext(name)[0].endswith(MASK_SUFFIX):
                mask_named.append(rel)
    if mask_named:
        examples = ", ".join(sorted(mask_named)[:3]) + (", ..." if len(mask_named) > 3 else "")
        warnings.warn(MaskNamedInputs(
            f"{len(mask_named)} image(s) named like region masks are read as input images ({examples}): "
            f"a region mask is <name>{MASK_SUFFIX}.png beside an image <name>.*, and none lies beside them"
        ), stacklevel=2)
    return sorted(found)


def require_folder(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a ``Path`` when it is a folder; ``InvalidParameterError`` saying what it is otherwise."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        raise InvalidParameterError(f"{what} {path} is a file, not a folder")
    raise InvalidParameterError(f"{what} {path} does not exist")


def task_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from the run seed and a task's identity (stable across Python versions)."""
    text = "\0".join([str(int(seed)), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def _method_axes(config: ProtocolConfig) -> tuple[list[str | None], list[str | None], bool]:
    """Shapes, modes and whether bins apply, for the configured method (or mix).

    Unasked shapes / modes are the method's ``default_shapes`` / ``default_modes`` (each its own
    outputs), or ``None``: drawn per anomaly by the method.
    """
    if config.mix:
        return list(config.shapes or [None]), list(config.modes or [None]), True
    method = method_object(config)  # also checks the method's options before any work
    shapes = list(config.shapes or method.default_shapes or [None])
    modes = list(config.modes or method.default_modes or [None])
    for shape in shapes:
        method.check_choices(shape=shape)
    for mode in modes:
        method.check_choices(mode=mode)
    return shapes, modes, method.targets_size


def planned_outputs(n_sources: int, config: ProtocolConfig) -> int:
    """How many outputs ``plan`` makes for ``n_sources`` images: images x K x shapes x modes x bins."""
    shapes, modes, targets = _method_axes(config)
    bins = len(config.bins) if targets or config.mix else 1
    return n_sources * config.per_image * len(shapes) * len(modes) * bins


def _check_output_count(n_sources: int, config: ProtocolConfig, max_outputs: int) -> None:
    """Refuse, before planning, a run larger than ``max_outputs`` (a typo in ``--per-image``
    would otherwise plan without limit)."""
    count = planned_outputs(n_sources, config)
    if count > max_outputs:
        raise InvalidParameterError(
            f"this run would make {count:,} outputs ({n_sources:,} image(s) x {config.per_image:,} per image x "
            f"{count // max(1, n_sources * config.per_image):,} shape/mode/bin combinations), above the limit "
            f"of {max_outputs:,}; lower --per-image, or raise --max-outputs if you mean it"
        )


def plan(sources: Sequence[str], config: ProtocolConfig) -> list[Task]:
    """All tasks in their canonical order."""
    if config.per_image < 1:
        raise InvalidParameterError(f"per_image must be >= 1, got {config.per_image}")
    shapes, modes, _ = _method_axes(config)
    method_key = config.method if not config.mix else "mix:" + json.dumps(dict(config.mix), sort_keys=True)
    tasks = []
    for i, source_id in enumerate(sources):
        for k in range(config.per_image):
            for shape in shapes:
                for mode in modes:
                    seed = task_seed(config.seed, source_id, k, method_key, shape, mode)
                    partner = None
                    if len(sources) > 1:
                        j = seed % (len(sources) - 1)
                        partner = sources[j if j < i else j + 1]
                    tasks.append(Task(len(tasks), source_id, k, shape, mode, seed, partner))
    return tasks


_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
#: encoded source names longer than this are shortened (file names are limited to 255 bytes)
_MAX_STEM = 150


def source_stem(source_id: str) -> str:
    """A file-name-safe form of a source path that no other source path has.

    Letters, digits, ``.``, ``_`` and ``-`` are kept, ``/`` becomes ``~~`` and every other character
    ``~<hex code point>~`` (``"x y.png"`` -> ``"x~20~y.png"``, ``"sub/b.png"`` -> ``"sub~~b.png"``).
    The extension is kept, so ``a.png`` and ``a.jpg`` differ. Reading left to right, a ``~``
    followed by ``~`` is a slash and one followed by a hex digit opens an escape, so two paths
    never share a stem (also not when compared case-insensitively, as on macOS and Windows).
    Very long stems are cut and end in a hash of the path instead.
    """
    parts = []
    for char in source_id:
        if char in _KEPT:
            parts.append(char)
        elif char == "/":
            parts.append("~~")
        else:
            parts.append(f"~{ord(char):x}~")
    stem = "".join(parts)
    if len(stem) > _MAX_STEM:
        digest = hashlib.sha256(source_id.encode("utf-8")).hexdigest()[:16]
        stem = f"{stem[:_MAX_STEM - 20]}~h{digest}~"
    return stem


def output_names(task: Task, method: str, bin_index: int | None) -> tuple[str, str]:
    """(file_name, mask_file_name) of one output, relative to the output folder.

    ``images/<source stem>_k<k>_<shape or method>[_<mode>][_b<bin>].png`` (the same under
    ``masks/``). The source stem ends in the source's image suffix (``.png``, ``.jpg``, ...), which
    no part after it contains, so outputs of different sources never share a name;
    ``_check_unique_names`` checks a whole plan before anything is written.
    """
    parts = [source_stem(task.source_id), f"k{task.k}", method if task.shape is None else task.shape]
    if task.mode is not None:
        parts.append(task.mode)
    if bin_index is not None:
        parts.append(f"b{bin_index}")
    name = "_".join(parts) + ".png"
    return f"images/{name}", f"masks/{name}"


def _bin_indices(config: ProtocolConfig) -> list[int | None]:
    """The bin part of each output name of a task: one per bin when the method targets sizes."""
    _, _, targets = _method_axes(config)
    return list(range(len(config.bins))) if targets or config.mix else [None]


def _check_unique_names(tasks: Sequence[Task], config: ProtocolConfig) -> None:
    """Refuse a plan in which two outputs would share a file (one would overwrite the other)."""
    method, bins = config.method if not config.mix else "mix", _bin_indices(config)
    seen: dict[str, Task] = {}
    for task in tasks:
        for b in bins:
            name = output_names(task, method, b)[0]
            other = seen.setdefault(name, task)
            if other is not task:
                raise InvalidParameterError(
                    f"outputs of {other.source_id!r} and {task.source_id!r} would both be written to "
                    f"{name}; rename one of the inputs"
                )


# ------------------------------------------------------------------------------------- worker
@dataclass(frozen=True)
class Job:
    """What every task of one run shares (picklable: sent once to each worker process).

    ``region_dir`` is the ``--region-masks`` folder or None; ``texture_paths`` the texture images;
    ``memory`` the per-worker working-memory budget checked before an image is decoded.
    """

    input_dir: str
    output_dir: str
    config: ProtocolConfig
    region_dir: str | None
    texture_paths: tuple[str, ...]
    memory: MemoryBudget


@dataclass(frozen=True)
class TaskResult:
    """One task's outcome: metadata rows of the outputs written, failure rows (``failed: True``,
    ``error``), and ``[size, crc32]`` of every file written, which a resume checks before it
    trusts the file."""

    rows: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    files: dict[str, list[int]]


def region_path(input_dir: str | os.PathLike, region_dir: str | os.PathLike | None, source_id: str) -> Path | None:
    """The region mask of a source, or None: in ``region_dir`` at the image's relative path (same
    name, ``.png``, or ``<stem>_mask.png``), else ``<stem>_mask.png`` beside the image."""
    rel = Path(source_id)
    candidates = []
    if region_dir is not None:
        base = Path(region_dir) / rel
        candidates += [base, base.with_suffix(".png"), base.with_name(rel.stem + MASK_SUFFIX + ".png")]
    candidates.append((Path(input_dir) / rel).with_name(rel.stem + MASK_SUFFIX + ".png"))
    return next((path for path in candidates if path.is_file()), None)


def method_object(config: ProtocolConfig) -> Method:
    """The configured method (a ``hybrid`` of the mix's methods for a mix)."""
    if config.mix:
        return get_method("hybrid", weights=dict(config.mix), **dict(config.method_options))
    return get_method(config.method, **dict(config.method_options))


class TaskRunner:
    """Renders and writes the tasks of one job.

    Built once per process: the method object and the decoded images, PNG bases and textures it
    caches serve every task that process runs.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.config = job.config
        self.method = method_object(job.config)
        self.bins = job.config.size_bins()
        self.label = "mix" if job.config.mix else job.config.method
        self.targets_size = self.method.targets_size or bool(job.config.mix)
        self.needs_partner = self.method.needs_partner or bool(job.config.mix)
        self.out = Path(job.output_dir)
        self._load = lru_cache(maxsize=4)(self._read)
        self._png_base = lru_cache(maxsize=2)(self._source_base)
        self._mask_base = lru_cache(maxsize=2)(self._zero_base)
        self._textures: tuple[np.ndarray, ...] | None = None

    def _read(self, path: str) -> np.ndarray:
        # from the header, before decoding
        check_image_memory(path, self.job.memory, tuple(self.config.mix or (self.config.method,)))
        return load_image(path)

    def _source_base(self, path: str):
        """PNG bands of a source image: outputs re-encode only the bands their anomaly touched."""
        from .png import Base

        return Base.of(self._load(path), self.config.png_compression)

    def _zero_base(self, height: int, width: int):
        from .png import Base

        return Base.of(np.zeros((height, width), np.uint8), self.config.png_compression)

    def textures(self) -> tuple[np.ndarray, ...]:
        if self._textures is None:
            self._textures = tuple(load_image(p) for p in self.job.texture_paths)
        return self._textures

    def run(self, task: Task) -> TaskResult:
        """Render and write every output of one task (one per size bin when the method targets sizes).

        Nothing raised by one image ends the run: problems become failure rows with the reason.
        """
        try:
            source, image, region, partners, textures = self._inputs(task.source_id, task.partner_id)
        except SynthError as exc:
            return TaskResult([], [_task_failure(task, str(exc))], {})
        rows, failed, files = [], [], {}
        try:  # converted once for the task's sizes; a problem fails each of its outputs
            prepared: PreparedImage | Exception = prepare(image, region, partners, textures,
                                                          min_change=self.config.min_change)
        except Exception as exc:
            prepared = exc
        for b in (range(len(self.bins)) if self.targets_size else [None]):
            file_name, mask_name = output_names(task, self.label, b)
            try:
                if isinstance(prepared, Exception):
                    raise prepared
                anomaly = synthesize(
                    prepared,
                    self.method,
                    seed=task.seed,
                    shape=task.shape,
                    mode=task.mode,
                    size_bin=None if b is None else self.bins[b],
                    label_bins=self.bins,
                )
            except SynthError as exc:
                failed.append({"failed": True, "file_name": file_name, "source_id": task.source_id, "error": str(exc)})
                continue
            except Exception as exc:  # a defect met by one image must not cost the others their outputs
                failed.append({"failed": True, "file_name": file_name, "source_id": task.source_id,
                               "error": f"unexpected {type(exc).__name__} ({exc}); please report it with this image"})
                continue
            row, written = self.write(anomaly, file_name, mask_name, source, task.source_id)
            rows.append(row)
            files.update(written)
        return TaskResult(rows, failed, files)

    def _inputs(self, source_id: str, partner_id: str | None):
        """``(source path, image, region, partners, textures)`` of a task, read through the cache."""
        job = self.job
        source = str(Path(job.input_dir) / source_id)
        image = self._load(source)
        region_file = region_path(job.input_dir, job.region_dir, source_id)
        region = None if region_file is None else self._load(str(region_file))
        partners = ()
        if self.needs_partner and partner_id:
            partners = (self._load(str(Path(job.input_dir) / partner_id)),)
        return source, image, region, partners, self.textures()

    def write(self, anomaly: Anomaly, file_name: str, mask_name: str, source: str, source_id: str):
        """Encode and write one output's image and mask; its metadata row and ``[size, crc32]`` per file."""
        level = self.config.png_compression
        if anomaly.image.dtype.kind == "f":  # written as 16-bit; no base for float sources
            image_png = encode_png(anomaly.image, level)
        else:
            image_png = encode_png(anomaly.image, level, self._png_base(source))
        mask_png = encode_png(anomaly.mask_u8, level, self._mask_base(*anomaly.mask.shape))
        files = {}
        for name, data in ((file_name, image_png), (mask_name, mask_png)):
            # checked by size and CRC-32 on resume; made durable before metadata.jsonl
            write_atomic(self.out / name, data, durable=False)
            files[name] = [len(data), zlib.crc32(data)]
        return metadata_row(anomaly.record, file_name, mask_name, source_id), files


def _task_failure(task: Task, error: str) -> dict[str, Any]:
    """The failure row of a task whose inputs could not be read."""
    return {"failed": True, "source_id": task.source_id, "k": task.k, "error": error}


class DeviceRunner(TaskRunner):
    """Renders the tasks with the batched torch renderer (``--device``) through ``synth.engine``:
    the outputs of the tasks of one source image (every drawn anomaly in every bin) render
    ``batch_size`` at a time, ``encoders`` threads write their files. Files, names, rows, the
    resume log and failure rows are those of ``TaskRunner``; any ``batch_size`` writes the same
    files (the renderer is recorded in ``config.json``)."""

    def __init__(self, job: Job, device: str, batch_size: int, encoders: int = 1, prep_threads: int | None = None) -> None:
        from .engine import Engine

        super().__init__(job)
        self.engine = Engine(self.method, self.bins, device, batch_size, prep_threads, what="--device")
        self.encoders = max(1, int(encoders))

    def run_all(self, tasks: Sequence[Task]) -> Iterator[tuple[int, TaskResult]]:
        """``(task index, result)`` for every task, in order, each once all its files are written."""
        from concurrent.futures import Future

        groups: dict[tuple[str, str | None], list[Task]] = {}
        for task in tasks:
            groups.setdefault((task.source_id, task.partner_id if self.needs_partner else None), []).append(task)
        bins = list(range(len(self.bins))) if self.targets_size else [None]
        waiting: deque[tuple[Task, list]] = deque()
        for group, start, outcomes in self.engine.render(self._groups(groups, bins), self._write_one, self.encoders):
            tasks_of, jobs = group.key[:2]
            if group.error is not None:
                waiting.extend((task, [_task_failure(task, group.error)]) for task in tasks_of)
            else:
                for (task, b), outcome in zip(jobs[start:], outcomes):
                    if isinstance(outcome, str):
                        file_name, _ = output_names(task, self.label, b)
                        outcome = {"failed": True, "file_name": file_name, "source_id": task.source_id, "error": outcome}
                    if not waiting or waiting[-1][0] is not task:
                        waiting.append((task, []))
                    waiting[-1][1].append(outcome)
            # hand back finished tasks in order, without waiting for the ones still encoding
            done = start + len(outcomes) == len(group.draws)
            while len(waiting) > (0 if done else 1) and all(
                not isinstance(f, Future) or f.done() for f in waiting[0][1]
            ):
                yield _gathered(*waiting.popleft())
        while waiting:
            yield _gathered(*waiting.popleft())

    def _groups(self, groups: dict[tuple[str, str | None], list[Task]], bins: list[int | None]):
        from .engine import Draw, Group, image_batch

        for (source_id, partner_id), tasks in groups.items():
            jobs = [(task, b) for task in tasks for b in bins]
            draws = [
                Draw(task.seed, task.shape, task.mode, None if b is None else self.bins[b]) for task, b in jobs
            ]
            try:
                source, image, region, partners, textures = self._inputs(source_id, partner_id)
            except SynthError as exc:
                yield Group(draws, error=str(exc), key=(tasks, jobs))
                continue
            region = None if region is None else normalize_region(region, image.shape[0], image.shape[1])
            images, regions = image_batch(image, region, self.engine.device)
            # the PNG bases are built here, once, before the writing threads ask for them
            if image.dtype.kind != "f":
                self._png_base(source)
            self._mask_base(image.shape[0], image.shape[1])
            yield Group(draws, images, regions, textures, partners, gray=image.ndim == 2, key=(tasks, jobs, source))

    def _write_one(self, group, index: int, anomaly: Anomaly):
        _, jobs, source = group.key
        task, b = jobs[index]
        file_name, mask_name = output_names(task, self.label, b)
        return self.write(anomaly, file_name, mask_name, source, task.source_id)


def _gathered(task: Task, outputs: list) -> tuple[int, TaskResult]:
    """A task's result from its outputs: futures of ``(row, files)`` and failure rows."""
    rows, failed, files = [], [], {}
    for item in outputs:
        if isinstance(item, dict):
            failed.append(item)
        else:
            row, written = item.result()
            rows.append(row)
            files.update(written)
    return task.index, TaskResult(rows, failed, files)


#: the runner of a pool worker process, set once by the pool's initializer (``_start_worker``)
_PROCESS_RUNNER: TaskRunner | None = None


def _start_worker(job: Job) -> None:
    global _PROCESS_RUNNER
    import cv2

    cv2.setNumThreads(1)  # N worker processes already use N cores
    # Ctrl-C is the parent's to handle: it stops the pool; workers printing their own
    # KeyboardInterrupt tracebacks would bury its one-line message
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _PROCESS_RUNNER = TaskRunner(job)


def _run_in_worker(task: Task) -> tuple[int, TaskResult]:
    if _PROCESS_RUNNER is None:
        raise RuntimeError("_run_in_worker runs only in processes started by _start_worker")
    return task.index, _PROCESS_RUNNER.run(task)


# ------------------------------------------------------------------------------------- driver
class MissingRegionMasks(UserWarning):
    """Some images have no region mask: anomalies may land anywhere on them."""


def _check_region_masks(input_dir: str | os.PathLike, region_masks: str | os.PathLike | None,
                        sources: Sequence[str]) -> None:
    """A ``--region-masks`` folder must exist and match images; images without a mask are reported."""
    if region_masks is None:
        return
    folder = require_folder(region_masks, "region-mask folder (--region-masks)")
    missing = [s for s in sources if region_path(input_dir, folder, s) is None]
    if len(missing) == len(sources):
        raise InvalidParameterError(
            f"region-mask folder {folder} holds no mask for any of the {len(sources)} image(s); masks are "
            f"named like the images (e.g. {folder / sources[0]} or {folder / Path(sources[0]).stem}{MASK_SUFFIX}.png)"
        )
    if missing:
        examples = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        warnings.warn(MissingRegionMasks(
            f"{len(missing)} of {len(sources)} image(s) have no region mask in {folder} ({examples}); "
            "anomalies on them may land anywhere"
        ), stacklevel=3)


def run_protocol(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: ProtocolConfig | None = None,
    run: RunOptions | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Generate the dataset of ``input_dir`` into ``output_dir``; return the metadata rows.

    ``config`` (what is generated) and ``run`` (extra inputs, workers, memory, progress) come as
    objects or as keyword ``options`` parsed by ``synth.config.parse_generation`` -- method, mix,
    per_image, shapes, modes, bins, seed, method_options (preset), png_compression; workers,
    region_masks, textures, memory_budget, progress.

    Raises ``SynthError`` subclasses for an impossible configuration before any work starts.
    Outputs that fail (e.g. a region too small for a bin, an image above the memory budget) are
    listed in ``failures.jsonl``, the rest is still written; ``ProtocolFailures`` is raised at the
    end when there were any. Every run ends by checking that each row's image and mask exist, are
    distinct files and decode. The memory budget (bytes or e.g. ``"8GB"``, per worker) defaults
    to ``ANOMALYFORGE_MEMORY_BUDGET`` or half of the machine's memory over the workers.
    Images without a mask in ``region_masks`` are reported with a ``MissingRegionMasks`` warning.

    ``run.device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``) renders with the batched torch renderer
    (``synth.batched``, ``run.batch_size`` outputs at a time, PNG encoding on CPU threads overlapped
    with rendering) instead of ``synth.synthesize``; same seed and device -> same files for any
    batch size. ``run.shard=(index, count)`` makes only the tasks whose index is ``index`` modulo
    ``count`` (one of ``count`` processes, e.g. under ``accelerate launch``) and returns their
    rows without writing ``metadata.jsonl``; a run without ``shard`` afterwards finds every
    shard's outputs finished and writes ``metadata.jsonl``, identical to a one-process run's.
    """
    config, run = resolve_generation(config, run, options)
    workers, region_masks, textures, shard = run.workers, run.region_masks, run.textures, run.shard
    memory = MemoryBudget.resolve(run.memory_budget, workers)
    # the outputs of an output folder inside (or equal to) the input folder are recognised by its
    # marker files (``synth.layout``), whatever its sub-folders are named
    sources = list_images(input_dir, exclude=[region_masks])
    if not sources:
        raise InvalidParameterError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {input_dir}")
    _check_region_masks(input_dir, region_masks, sources)
    texture_paths: tuple[str, ...] = ()
    if textures is not None:
        require_folder(textures, "texture folder (--textures)")
        texture_paths = tuple(str(Path(textures) / t) for t in list_images(textures))
        if not texture_paths:
            raise InvalidParameterError(f"no texture images found in {textures}")
    _check_output_count(len(sources), config, run.max_outputs)
    tasks = plan(sources, config)
    _check_unique_names(tasks, config)
    out = Path(output_dir)
    job = Job(str(input_dir), str(out), config, None if region_masks is None else str(region_masks),
              texture_paths, memory)
    # the processes of one sharded launch share the folder; any other run into it is refused
    with claimed_folder(out, GENERATED_OUTPUTS, shared=shard is not None):
        return _generate(job, tasks, run)


def _generate(job: Job, tasks: list[Task], run: RunOptions) -> list[dict[str, Any]]:
    """Make the ``tasks`` not finished yet into the claimed output folder; write its records."""
    out, config, shard = Path(job.output_dir), job.config, run.shard
    _check_config(out, config)
    write_atomic(out / CONFIG, json.dumps(_config_record(config), indent=2, sort_keys=True).encode())
    # a file of its own: config.json stays the same wherever the inputs lie
    write_atomic(out / INPUTS, json.dumps({"input_dir": str(Path(job.input_dir).resolve())}, indent=2).encode())
    results = _finished(out, tasks, config)
    if shard is not None:
        tasks = [t for t in tasks if t.index % shard[1] == shard[0]]
        results = {t.index: results[t.index] for t in tasks if t.index in results}
    # what is finished survives in the resume log; until this run ends the folder is incomplete
    write_atomic(out / _log_name(shard), "".join(_log_line(t, results[t.index]) for t in tasks
                                                  if t.index in results).encode())
    (out / METADATA).unlink(missing_ok=True)
    todo = [t for t in tasks if t.index not in results]
    by_index = {t.index: t for t in tasks}
    log_path = out / _log_name(shard)
    with open(log_path, "a", encoding="utf-8") as log:
        for index, result in _execute(todo, job, run, len(tasks), len(tasks) - len(todo)):
            results[index] = result
            # logged after both files were renamed into place: a logged task is complete on disk
            _append(log, log_path, _log_line(by_index[index], result))
    good = [row for t in tasks for row in results[t.index].rows]
    failed = [row for t in tasks for row in results[t.index].failed]
    if shard is not None:  # the run without a shard writes metadata.jsonl for all shards
        if failed:
            raise ProtocolFailures(failed, good)
        return good
    broken = verify_outputs(out, good)
    if broken:
        failed += [{"failed": True, "file_name": r["file_name"], "source_id": r["source_id"], "error": error}
                   for r, error in broken]
        bad = {r["file_name"] for r, _ in broken}
        good = [r for r in good if r["file_name"] not in bad]
    flush_to_disk()  # the outputs, written without a sync each, are on disk before their record
    write_atomic(out / METADATA, "".join(json.dumps(r, sort_keys=True) + "\n" for r in good).encode())
    if failed:
        write_atomic(out / FAILURES, "".join(json.dumps(r, sort_keys=True) + "\n" for r in failed).encode())
        # failed tasks are retried on the next run
        failed_files = {r.get("file_name") for r in failed}
        kept = [_log_line(t, results[t.index]) for t in tasks
                if not results[t.index].failed and failed_files.isdisjoint(r["file_name"] for r in results[t.index].rows)]
        write_atomic(out / PARTIAL, "".join(kept).encode())
        _drop_shard_logs(out)
        raise ProtocolFailures(failed, good)
    # finished: metadata.jsonl (written last) is the record; a rerun resumes from it
    (out / FAILURES).unlink(missing_ok=True)
    (out / PARTIAL).unlink(missing_ok=True)
    _drop_shard_logs(out)
    return good


def _append(log: Any, path: Path, line: str) -> None:
    """Append one line to the resume log (the one file written in place: a cut line is skipped)."""
    try:
        log.write(line)
        log.flush()
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from exc


def _log_name(shard: tuple[int, int] | None) -> str:
    """The resume log a run appends to: one per shard, so processes never share a file."""
    if shard is None:
        return PARTIAL
    return PARTIAL.replace(".jsonl", f".{shard[0]}-of-{shard[1]}.jsonl")


def _shard_logs(out: Path) -> list[Path]:
    return sorted(out.glob(PARTIAL.replace(".jsonl", ".*-of-*.jsonl")))


def _drop_shard_logs(out: Path) -> None:
    for path in _shard_logs(out):
        path.unlink(missing_ok=True)


class ProtocolFailures(SynthError):
    """Some outputs could not be made; the others were written. ``.failed`` lists them."""

    def __init__(self, failed: list[dict[str, Any]], rows: list[dict[str, Any]]):
        self.failed = failed
        self.rows = rows
        first = failed[0]
        super().__init__(
            f"{len(failed)} output(s) failed (see failures.jsonl); first: "
            f"{first.get('file_name') or first.get('source_id')}: {first['error']}"
        )


def _config_record(config: ProtocolConfig) -> dict[str, Any]:
    return {"tool": TOOL, "tool_version": tool_version(), "config": config.to_dict()}


def _check_config(out: Path, config: ProtocolConfig) -> None:
    """Refuse to resume into a folder generated with a different configuration."""
    path = out / CONFIG
    if not path.exists():
        return
    try:
        previous = json.loads(path.read_text())["config"]
    except (ValueError, KeyError):
        return
    if previous != config.to_dict():
        raise InvalidParameterError(
            f"{out} holds outputs of a different configuration ({CONFIG}); "
            "use a new output folder or the same options to resume"
        )


def _task_key(task: Task) -> list[Any]:
    """A task's identity in the resume log (its index shifts when images are added or removed)."""
    return [task.source_id, task.k, task.shape, task.mode, str(task.seed)]


def _log_line(task: Task, result: TaskResult) -> str:
    entry = {"task": _task_key(task), "rows": result.rows, "failed": result.failed, "files": result.files}
    return json.dumps(entry, sort_keys=True) + "\n"


def _intact(path: Path, size: int, crc: int) -> bool:
    try:
        if path.stat().st_size != size:  # cheap first: a power loss leaves 0-byte or short files
            return False
        return zlib.crc32(path.read_bytes()) == crc
    except OSError:
        return False


def _finished(out: Path, tasks: Sequence[Task], config: ProtocolConfig) -> dict[int, TaskResult]:
    """Tasks an earlier run completed without failures whose files are all intact on disk.

    Read from the resume logs (every file's size and CRC-32 recorded at write time are checked,
    so a file cut by a power loss or a kill, empty or short, is made again instead of being
    trusted) and from the ``metadata.jsonl`` of a finished run (every file must decode).
    """
    done = _finished_in_metadata(out, tasks, config)
    logs = [p for p in [out / PARTIAL, *_shard_logs(out)] if p.exists()]
    by_key = {json.dumps(_task_key(t)): t for t in tasks}
    lines = [line for path in logs for line in path.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        try:
            entry = json.loads(line)
            task = by_key.get(json.dumps(entry["task"]))
            rows, files = entry["rows"], entry["files"]
        except (ValueError, KeyError, TypeError):  # a line cut by an interruption, or an older format
            continue
        if task is None or entry.get("failed"):
            continue
        named = {name for r in rows for name in (r["file_name"], r["mask_file_name"])}
        if named == set(files) and all(_intact(out / name, *files[name]) for name in files):
            done[task.index] = TaskResult(rows, [], files)
    return done


def _finished_in_metadata(out: Path, tasks: Sequence[Task], config: ProtocolConfig) -> dict[int, TaskResult]:
    """Tasks whose every output is a row of ``out``'s ``metadata.jsonl`` with files that decode."""
    try:
        by_name = {row["file_name"]: row for row in read_metadata(out)}
    except (OSError, ValueError, KeyError, TypeError):  # no finished run, or a damaged record
        return {}
    label, bins = "mix" if config.mix else config.method, _bin_indices(config)
    done: dict[int, TaskResult] = {}
    for task in tasks:
        names = [output_names(task, label, b) for b in bins]
        rows = [by_name.get(image) for image, _ in names]
        if any(row is None or row.get("mask_file_name") != mask for row, (_, mask) in zip(rows, names)):
            continue
        if verify_outputs(out, rows):
            continue
        files = {}
        for image, mask in names:
            for name in (image, mask):
                data = (out / name).read_bytes()
                files[name] = [len(data), zlib.crc32(data)]
        done[task.index] = TaskResult(rows, [], files)
    return done


def verify_outputs(output_dir: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], str]]:
    """Check that each row's image and mask exist, are files no other row names, and decode.

    Returns ``(row, problem)`` for every row that fails (empty when all is well). Decoding means
    reading the PNG header (the image and mask sizes must agree) and every chunk's checksum.
    """
    from PIL import Image

    root = Path(output_dir)
    problems = []
    owners: dict[str, int] = {}
    for row in rows:
        for name in (row["file_name"], row["mask_file_name"]):
            owners[name] = owners.get(name, 0) + 1
    for row in rows:
        image_name, mask_name = row["file_name"], row["mask_file_name"]
        if image_name == mask_name or owners[image_name] > 1 or owners[mask_name] > 1:
            problems.append((row, f"{image_name} / {mask_name}: the file is named by more than one row"))
            continue
        sizes = []
        for name in (image_name, mask_name):
            try:
                with Image.open(root / name) as img:
                    sizes.append(img.size)
                    img.verify()
            except Exception as exc:  # Pillow raises many unrelated types for damaged files
                problems.append((row, f"{name}: written file does not decode ({exc})"))
                break
        else:
            if sizes[0] != sizes[1]:
                problems.append((row, f"{mask_name}: mask is {sizes[1]} but its image is {sizes[0]}"))
    return problems


def _execute(
    tasks: list[Task], job: Job, run: RunOptions, total: int, initial: int
) -> Iterator[tuple[int, TaskResult]]:
    from tqdm.auto import tqdm

    workers = run.workers
    bar = tqdm(total=total, initial=initial, unit="task", disable=not run.progress, desc="synth")
    try:
        if run.device is not None:
            for item in DeviceRunner(
                job, run.device, run.batch_size, encoders=workers, prep_threads=run.prep_threads
            ).run_all(tasks):
                yield item
                bar.update(1)
        elif workers == 1 or len(tasks) <= 1:
            runner = TaskRunner(job)
            for task in tasks:
                yield task.index, runner.run(task)
                bar.update(1)
        else:
            ctx = mp.get_context("spawn" if os.name == "nt" else "forkserver")
            with ctx.Pool(workers, initializer=_start_worker, initargs=(job,)) as pool:
                for item in pool.imap_unordered(_run_in_worker, tasks, chunksize=1):
                    yield item
                    bar.update(1)
    finally:
        bar.close()


def read_metadata(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a generated folder's ``metadata.jsonl``, as written; nothing checked (a build
    checks that each row names its own present files: ``hub_tools.build.read_rows_with_their_files``)."""
    path = Path(output_dir) / METADATA
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
