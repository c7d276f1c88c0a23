"""The paper's dataset protocol as one call: every image x K anomalies x shapes x modes x size bins.

Output is an ``imagefolder`` layout that ``datasets.load_dataset("imagefolder", data_dir=OUT)``
reads: ``images/``, ``masks/`` and ``metadata.jsonl`` (one object per output: ``file_name``,
``mask_file_name``, ``source_id`` and the schema columns), plus ``config.json`` (the generation
config and tool version) and ``failures.jsonl`` when some output could not be made.

Determinism: each task (image, k, shape, mode) gets a seed derived from the run seed and the task's
identity (not from its position in a queue), so the same inputs and seed give the same files for any
number of workers. One task renders the same drawn anomaly in every requested bin, as in the paper
("resizing it for the five size ranges"). Resuming: finished outputs are logged to
``metadata.partial.jsonl`` as they complete; a rerun skips them.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .anomaly import Anomaly, synthesize
from .record import metadata_row as record_row
from .version import tool_version
from .errors import InvalidParameterError, SynthError
from .image import DEFAULT_PNG_LEVEL, encode_png, load_image, write_atomic
from .registry import get_method, method_names
from .sizebins import DEFAULT_BINS, SizeBin

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIX = "_mask"  # "<name>_mask.png" beside an image is its region mask
METADATA = "metadata.jsonl"
PARTIAL = "metadata.partial.jsonl"
FAILURES = "failures.jsonl"
CONFIG = "config.json"


@dataclass(frozen=True)
class ProtocolConfig:
    """Everything that determines a generated dataset (written to ``config.json``)."""

    method: str = "synagen"
    mix: Mapping[str, float] | None = None
    per_image: int = 3
    shapes: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None
    bins: tuple[str, ...] = tuple(b.name for b in DEFAULT_BINS)
    seed: int = 0
    method_options: Mapping[str, Any] = field(default_factory=dict)
    png_compression: int = DEFAULT_PNG_LEVEL

    def size_bins(self) -> tuple[SizeBin, ...]:
        return tuple(SizeBin.parse(b) for b in self.bins)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mix"] = dict(self.mix) if self.mix else None
        data["method_options"] = dict(self.method_options)
        for key in ("shapes", "modes", "bins"):
            data[key] = None if data[key] is None else list(data[key])
        return data


@dataclass(frozen=True)
class Task:
    index: int
    source_id: str
    k: int
    shape: str | None
    mode: str | None
    seed: int
    partner_id: str | None


def list_images(input_dir: str | os.PathLike, exclude: Sequence[str | os.PathLike | None] = ()) -> list[str]:
    """Image files under ``input_dir`` (recursive, sorted), as paths relative to it.

    Left out: ``<name>_mask.*`` region masks, hidden folders, and anything under the folders in
    ``exclude`` (e.g. a region-mask or output folder that lies inside ``input_dir``).
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise InvalidParameterError(f"input folder {root} does not exist or is not a folder")
    skipped = [Path(e).resolve() for e in exclude if e is not None]
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.stem.endswith(MASK_SUFFIX):
            if any(part.startswith(".") for part in path.relative_to(root).parts):
                continue
            resolved = path.resolve()
            if any(resolved.is_relative_to(folder) for folder in skipped):
                continue
            found.append(path.relative_to(root).as_posix())
    return sorted(found)


def task_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from the run seed and a task's identity (stable across Python versions)."""
    text = "\0".join([str(int(seed)), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def _method_axes(config: ProtocolConfig) -> tuple[list[str | None], list[str | None], bool]:
    """Shapes, modes and whether bins apply, for the configured method (or mix)."""
    if config.mix:
        return list(config.shapes or [None]), list(config.modes or [None]), True
    method = get_method(config.method, **dict(config.method_options))
    if config.method == "synagen":
        from .synagen.modes import DEFAULT_MODES

        shapes = list(config.shapes or method.shapes)
        modes = list(config.modes or DEFAULT_MODES)
    else:
        shapes = list(config.shapes or [None])
        modes = list(config.modes or [None])
    for s in shapes:
        if s is not None and s not in method.shapes:
            raise InvalidParameterError(f"unknown shape {s!r} for {config.method}; choose from {', '.join(method.shapes)}")
    for m in modes:
        if m is not None and m not in method.modes:
            raise InvalidParameterError(f"unknown mode {m!r} for {config.method}; choose from {', '.join(method.modes)}")
    return shapes, modes, method.targets_size


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


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def output_names(task: Task, method: str, bin_index: int | None) -> tuple[str, str]:
    """(file_name, mask_file_name) of one output, relative to the output folder."""
    stem = _safe(str(Path(task.source_id).with_suffix("")).replace("/", "__"))
    parts = [stem, f"k{task.k}", method if task.shape is None else task.shape]
    if task.mode is not None:
        parts.append(task.mode)
    if bin_index is not None:
        parts.append(f"b{bin_index}")
    name = "_".join(_safe(p) for p in parts) + ".png"
    return f"images/{name}", f"masks/{name}"


# ------------------------------------------------------------------------------------- worker
@dataclass(frozen=True)
class _Job:
    input_dir: str
    output_dir: str
    config: ProtocolConfig
    region_dir: str | None
    texture_paths: tuple[str, ...]


_JOB: _Job | None = None


def _init_worker(job: _Job) -> None:
    global _JOB
    _JOB = job
    if mp.current_process().name != "MainProcess":
        import cv2

        cv2.setNumThreads(1)  # N worker processes already use N cores
    _load.cache_clear()
    _png_base.cache_clear()


@lru_cache(maxsize=4)
def _load(path: str) -> np.ndarray:
    return load_image(path)


def _region_for(job: _Job, source_id: str) -> np.ndarray | None:
    rel = Path(source_id)
    candidates = []
    if job.region_dir:
        base = Path(job.region_dir) / rel
        candidates += [base, base.with_suffix(".png"), base.with_name(rel.stem + MASK_SUFFIX + ".png")]
    beside = Path(job.input_dir) / rel
    candidates.append(beside.with_name(rel.stem + MASK_SUFFIX + ".png"))
    for path in candidates:
        if path.is_file():
            return _load(str(path))
    return None


@lru_cache(maxsize=2)
def _png_base(path: str, level: int):
    """PNG bands of a source image: outputs re-encode only the bands their anomaly touched."""
    from .png import Base

    return Base.of(_load(path), level)


@lru_cache(maxsize=2)
def _mask_base(height: int, width: int, level: int):
    from .png import Base

    return Base.of(np.zeros((height, width), np.uint8), level)


@lru_cache(maxsize=1)
def _textures(paths: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    return tuple(load_image(p) for p in paths)


def _method_obj(config: ProtocolConfig):
    if config.mix:
        return get_method("hybrid", weights=dict(config.mix), **dict(config.method_options))
    return get_method(config.method, **dict(config.method_options))


def run_task(task: Task, job: _Job | None = None) -> list[dict[str, Any]]:
    """Render and write every output of one task; return their metadata rows (or failure rows)."""
    job = job or _JOB
    assert job is not None
    config = job.config
    method = _method_obj(config)
    bins = config.size_bins()
    try:
        image = _load(str(Path(job.input_dir) / task.source_id))
        region = _region_for(job, task.source_id)
        needs_partner = method.needs_partner or bool(config.mix)
        partners = (_load(str(Path(job.input_dir) / task.partner_id)),) if (needs_partner and task.partner_id) else ()
        textures = _textures(job.texture_paths)
    except SynthError as exc:
        return [{"failed": True, "source_id": task.source_id, "k": task.k, "error": str(exc)}]
    rows = []
    targets = method.targets_size or bool(config.mix)
    bin_choices: list[int | None] = list(range(len(bins))) if targets else [None]
    for b in bin_choices:
        file_name, mask_name = output_names(task, config.method if not config.mix else "mix", b)
        try:
            anomaly = synthesize(
                image,
                method,
                seed=task.seed,
                shape=task.shape,
                mode=task.mode,
                size_bin=None if b is None else bins[b],
                region=region,
                partners=partners,
                textures=textures,
                bins=bins,
            )
        except SynthError as exc:
            rows.append({"failed": True, "file_name": file_name, "source_id": task.source_id, "error": str(exc)})
            continue
        out = Path(job.output_dir)
        level = config.png_compression
        if anomaly.image.dtype.kind == "f":  # written as 16-bit; no base for float sources
            image_png = encode_png(anomaly.image, level)
        else:
            image_png = encode_png(anomaly.image, level, _png_base(str(Path(job.input_dir) / task.source_id), level))
        write_atomic(out / file_name, image_png)
        write_atomic(out / mask_name, encode_png(anomaly.mask_u8, level, _mask_base(*anomaly.mask.shape, level)))
        rows.append(metadata_row(anomaly, file_name, mask_name, task.source_id))
    return rows


def metadata_row(anomaly: Anomaly, file_name: str, mask_name: str, source_id: str) -> dict[str, Any]:
    return record_row(anomaly.record, file_name, mask_name, source_id)


def _run_indexed(task: Task) -> tuple[int, list[dict[str, Any]]]:
    return task.index, run_task(task)


# ------------------------------------------------------------------------------------- driver
def run_protocol(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    method: str = "synagen",
    mix: Mapping[str, float] | None = None,
    per_image: int = 3,
    shapes: Sequence[str] | None = None,
    modes: Sequence[str] | None = None,
    bins: Sequence[SizeBin | str] = DEFAULT_BINS,
    seed: int = 0,
    workers: int = 1,
    region_masks: str | os.PathLike | None = None,
    textures: str | os.PathLike | None = None,
    method_options: Mapping[str, Any] | None = None,
    png_compression: int = DEFAULT_PNG_LEVEL,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Generate the dataset of ``input_dir`` into ``output_dir``; return the metadata rows.

    Raises ``SynthError`` subclasses for an impossible configuration before any work starts.
    Outputs that fail (e.g. a region too small for a bin) are listed in ``failures.jsonl``, the
    rest is still written; ``ProtocolFailures`` is raised at the end when there were any.
    """
    if method not in method_names() and not mix:
        raise InvalidParameterError(f"unknown method {method!r}; choose from {', '.join(method_names())}")
    if mix:
        for name, weight in mix.items():
            if name not in method_names():
                raise InvalidParameterError(f"unknown method {name!r} in mix; choose from {', '.join(method_names())}")
            if not weight > 0:
                raise InvalidParameterError(f"mix weight of {name!r} must be > 0, got {weight}")
    if workers < 1:
        raise InvalidParameterError(f"workers must be >= 1, got {workers}")
    bin_names = tuple(b.name if isinstance(b, SizeBin) else SizeBin.parse(b).name for b in bins)
    if not bin_names:
        raise InvalidParameterError("at least one size bin is needed")
    config = ProtocolConfig(
        method="mix" if mix else method,
        mix=dict(mix) if mix else None,
        per_image=int(per_image),
        shapes=tuple(shapes) if shapes else None,
        modes=tuple(modes) if modes else None,
        bins=bin_names,
        seed=int(seed),
        method_options=dict(method_options or {}),
        png_compression=int(png_compression),
    )
    # an output folder inside the input folder holds outputs, not inputs (but inputs may live
    # inside the output folder, as with the built-in examples)
    inputs_inside_output = Path(input_dir).resolve().is_relative_to(Path(output_dir).resolve())
    sources = list_images(input_dir, exclude=[region_masks, None if inputs_inside_output else output_dir])
    if not sources:
        raise InvalidParameterError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {input_dir}")
    texture_paths: tuple[str, ...] = ()
    if textures is not None:
        texture_paths = tuple(str(Path(textures) / t) for t in list_images(textures))
        if not texture_paths:
            raise InvalidParameterError(f"no texture images found in {textures}")
    tasks = plan(sources, config)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out, config)
    write_atomic(out / CONFIG, json.dumps(_config_record(config, input_dir), indent=2, sort_keys=True).encode())

    done = _finished(out)
    todo = [t for t in tasks if t.index not in done]
    job = _Job(str(input_dir), str(out), config, None if region_masks is None else str(region_masks), texture_paths)
    results: dict[int, list[dict[str, Any]]] = dict(done)
    with open(out / PARTIAL, "a", encoding="utf-8") as log:
        for index, rows in _execute(todo, job, workers, progress, len(tasks), len(tasks) - len(todo)):
            results[index] = rows
            log.write(json.dumps({"task": index, "rows": rows}, sort_keys=True) + "\n")
            log.flush()
    rows = [row for t in tasks for row in results[t.index]]
    good = [r for r in rows if not r.get("failed")]
    failed = [r for r in rows if r.get("failed")]
    write_atomic(out / METADATA, "".join(json.dumps(r, sort_keys=True) + "\n" for r in good).encode())
    if failed:
        write_atomic(out / FAILURES, "".join(json.dumps(r, sort_keys=True) + "\n" for r in failed).encode())
        # failed tasks are retried on the next run
        kept = [json.dumps({"task": t.index, "rows": results[t.index]}, sort_keys=True) + "\n"
                for t in tasks if not any(r.get("failed") for r in results[t.index])]
        write_atomic(out / PARTIAL, "".join(kept).encode())
        raise ProtocolFailures(failed, good)
    (out / FAILURES).unlink(missing_ok=True)
    return good


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


def _config_record(config: ProtocolConfig, input_dir: str | os.PathLike) -> dict[str, Any]:
    return {"tool": "anomalyforge", "tool_version": tool_version(), "config": config.to_dict()}


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


def _finished(out: Path) -> dict[int, list[dict[str, Any]]]:
    """Tasks completed by an earlier run whose files are all present."""
    path = out / PARTIAL
    done: dict[int, list[dict[str, Any]]] = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut by an interruption
            continue
        rows = entry.get("rows", [])
        if any(r.get("failed") for r in rows):
            continue
        if all((out / r["file_name"]).exists() and (out / r["mask_file_name"]).exists() for r in rows):
            done[int(entry["task"])] = rows
    return done


def _execute(
    tasks: list[Task], job: _Job, workers: int, progress: bool, total: int, initial: int
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, unit="task", disable=not progress, desc="synth")
    try:
        if workers == 1 or len(tasks) <= 1:
            _init_worker(job)
            for task in tasks:
                yield _run_indexed(task)
                bar.update(1)
        else:
            ctx = mp.get_context("spawn" if os.name == "nt" else "forkserver")
            with ctx.Pool(workers, initializer=_init_worker, initargs=(job,)) as pool:
                for item in pool.imap_unordered(_run_indexed, tasks, chunksize=1):
                    yield item
                    bar.update(1)
    finally:
        bar.close()


def read_metadata(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a generated folder's ``metadata.jsonl``."""
    path = Path(output_dir) / METADATA
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def iter_outputs(output_dir: str | os.PathLike) -> Iterable[tuple[dict[str, Any], Path, Path]]:
    """(row, image path, mask path) for every output of a generated folder, in order."""
    root = Path(output_dir)
    for row in read_metadata(root):
        yield row, root / row["file_name"], root / row["mask_file_name"]
