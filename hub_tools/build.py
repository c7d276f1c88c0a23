"""Build a publishable dataset folder from anomaly-free images.

``build_dataset(INPUT_DIR, BUILD_DIR, config=..., run=...)`` runs the generation protocol
(``synth.protocol.run_protocol``) into ``BUILD_DIR/generated`` -- or reads an existing imagefolder
written by it -- and streams the rows into parquet shards::

    BUILD_DIR/generated/...                     imagefolder of the protocol (images, masks, metadata)
    BUILD_DIR/data/test-00000-of-0000N.parquet  the anomalies (split ``test``)
    BUILD_DIR/data/good-00000-of-0000M.parquet  the anomaly-free sources (split ``good``)
    BUILD_DIR/card/examples/*.png               a few example images and masks for the card
    BUILD_DIR/build.json                        generation config, tool version, counts, checksums
    BUILD_DIR/README.md                         dataset card with ``configs:``

so that ``datasets.load_dataset(BUILD_DIR)`` returns the ``DatasetDict``.

Memory stays flat: rows are read from disk one at a time and written in row groups of bounded
size; shards close at a byte budget. Output is deterministic: the same inputs, configuration and
seed give byte-identical parquet shards (rows are ordered by file name, never by completion order,
and no timestamps go into the shards). A build killed at any point is finished by running it again:
finished shards are recorded in ``data/.partial/`` and skipped, and ``build.json`` -- the marker of
a complete build -- is removed when a build starts and written last, after the card and examples.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features
from PIL import Image as PILImage

from synth.atomic import atomic_path, write_atomic
from synth.errors import InvalidImageError
from synth.files import sha256_file
from synth.image import encode_png, load_image, read_file, to_float
from synth.layout import BUILD_RECORD, FAILURES, INPUTS, METADATA, folder_layout
from synth.config import GENERATION_KEYS, ProtocolConfig, RunOptions, parse_generation, resolve_generation
from synth.run_lock import claimed_folder
from synth.record import FILE_COLUMNS, LABEL_NAMES, source_record
from synth.sizebins import SizeBin
from synth.version import tool_version

from .errors import BuildError, ValidationError
from .schema import GOOD_SPLIT, SPLITS, TEST_SPLIT, dataset_features, encode_record, size_bin_names

#: bump when the layout of the shards changes (part of the resume fingerprint)
FORMAT_VERSION = 2
#: default upper bound of one parquet shard (raw image bytes), like the Hub's ~500 MB advice
DEFAULT_SHARD_BYTES = 500 * 1024 * 1024
#: a row group closes at this many rows or bytes, whichever comes first (bounds memory)
DEFAULT_GROUP_ROWS = 100
DEFAULT_GROUP_BYTES = 64 * 1024 * 1024
#: number of example image/mask pairs copied into card/examples
N_EXAMPLES = 4


@dataclass(frozen=True)
class BuildResult:
    """What ``build_dataset`` produced: the folder, rows per split and the build record."""

    build_dir: Path
    counts: dict[str, int]
    info: dict[str, Any]


# --------------------------------------------------------------------------- input
# the files of a generated folder and the build record (written last by ``build_dataset``: a
# folder with it holds a complete build) are named, and recognised, by ``synth.layout``


def is_imagefolder(path: Path) -> bool:
    """True when ``path`` is a finished output folder of the generation protocol."""
    layout = folder_layout(path)
    return layout is not None and layout.kind == "generated" and layout.complete


def check_input_layout(input_dir: Path, build_dir: Path) -> None:
    """Refuse inputs that are outputs of this project rather than images or a finished synth run.

    A build folder or an interrupted ``anomalyforge synth`` folder would otherwise be read as
    anomaly-free images (its ``images/`` and ``masks/`` becoming new sources), and a build folder
    inside the input folder would have its own example images read back on a rerun.
    """
    layout = folder_layout(input_dir)  # the project's one recogniser of what it wrote
    if layout is not None and layout.kind == "build":
        raise BuildError(
            f"{input_dir} is a build folder of `anomalyforge hub build`, not input images; pass the images "
            f"it was built from, or its generated/ folder with --sources"
        )
    if layout is not None and not layout.complete:
        raise BuildError(
            f"{input_dir} is an unfinished `anomalyforge synth` output (no {METADATA} yet): "
            "rerun the same synth command to finish it, then build from it"
        )
    if is_imagefolder(input_dir) and (input_dir / FAILURES).is_file():
        failed = sum(1 for line in (input_dir / FAILURES).read_text(encoding="utf-8").splitlines() if line.strip())
        raise BuildError(
            f"{input_dir} is an incomplete `anomalyforge synth` output: {failed} output(s) failed "
            f"(see {input_dir / FAILURES}); rerun the same synth command (failed outputs are retried) "
            "or generate with settings that fit the images"
        )
    if not is_imagefolder(input_dir) and build_dir.resolve().is_relative_to(input_dir.resolve()):
        raise BuildError(
            f"build folder {build_dir} lies inside the input folder {input_dir}: its images would be read "
            "back as inputs when the build is rerun; choose a build folder outside the input folder"
        )


def read_rows_with_their_files(folder: Path) -> list[dict[str, Any]]:
    """Rows of ``folder/metadata.jsonl``, one per anomaly, sorted by ``file_name``.

    Sorting makes the row order independent of worker completion order. Each row must name its
    own image and mask file, present in ``folder``: two rows naming one file (as colliding
    output names would write) or a missing file is a ``BuildError``, never a dropped row.
    """
    path = folder / METADATA
    rows: list[dict[str, Any]] = []
    with path.open("r", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BuildError(f"{path}:{number}: not valid JSON ({exc.msg}); rerun the generation") from None
            for column in FILE_COLUMNS:
                if not isinstance(row.get(column), str) or not row[column]:
                    raise BuildError(f"{path}:{number}: row has no {column}")
            rows.append(row)
    _check_files(folder, rows)
    return sorted(rows, key=lambda r: r["file_name"])


def _check_files(folder: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Every image and mask file is named by exactly one row, lies inside ``folder`` and exists."""
    users: dict[str, list[str]] = {}
    for row in rows:
        for column in ("file_name", "mask_file_name"):
            users.setdefault(row[column], []).append(f"{column} of {row['source_id']!r}")
    shared = {name: who for name, who in users.items() if len(who) > 1}
    if shared:
        name, who = min(shared.items())
        raise BuildError(
            f"{folder / METADATA}: {len(shared)} file(s) are named by more than one row, e.g. {name} "
            f"({'; '.join(who)}): the labels cannot be told apart; regenerate into a new folder"
        )
    root = folder.resolve()
    missing = [name for name in users if not (root / name).resolve().is_relative_to(root) or not (folder / name).is_file()]
    if missing:
        raise BuildError(
            f"{folder / METADATA}: {len(missing)} listed file(s) are missing or outside the folder, "
            f"first {sorted(missing)[0]}; rerun the generation to restore them"
        )


def generation_record(config: ProtocolConfig, run: RunOptions) -> dict[str, Any]:
    """The generation as JSON for build.json and the card: the config, and the extra inputs' paths."""
    record = config.to_dict()
    for key in ("region_masks", "textures"):
        if getattr(run, key) is not None:
            record[key] = getattr(run, key)
    return record


def recorded_sources(generated: Path) -> Path:
    """The anomaly-free images a generated folder was made from, as its ``inputs.json`` records them
    or its ``sources/`` (the built-in examples, materialised inside the folder).

    ``BuildError`` naming ``--sources`` when the folder records none, or one that is gone.
    """
    try:
        recorded = Path(json.loads((generated / INPUTS).read_text(encoding="utf-8"))["input_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    if recorded is not None and recorded.is_dir():
        return recorded
    if (generated / "sources").is_dir():  # `anomalyforge synth skimage:...`, also after a move
        return generated / "sources"
    where = (f"it was made from {recorded}, which is no longer a folder" if recorded is not None
             else f"it does not record where its input images are ({INPUTS})")
    raise BuildError(
        f"{generated} holds generated anomalies and {where}; pass --sources DIR with the "
        "anomaly-free images it was made from (they become the good split)"
    )


def _run_generation(input_dir: Path, out_dir: Path, config: ProtocolConfig, run: RunOptions) -> None:
    from synth.errors import SynthError
    from synth.protocol import run_protocol

    try:
        run_protocol(input_dir, out_dir, config, run)
    except SynthError as exc:
        raise BuildError(f"generation failed: {exc}") from exc


# --------------------------------------------------------------------------- rows
def _png_size(data: bytes, what: str) -> tuple[int, int]:
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            return img.size
    except Exception as exc:  # PIL raises several unrelated types for broken files
        raise ValidationError(f"{what}: cannot read the image header ({exc})") from None


def _zero_mask(size: tuple[int, int]) -> bytes:
    """All-zero ``L`` PNG of ``size`` (width, height): the mask of an anomaly-free image."""
    return encode_png(np.zeros((size[1], size[0]), np.uint8), compression=9)


def _diff_png(source_path: Path, image_path: Path) -> bytes:
    """``max_c |image - source|`` as an ``L`` PNG, 0..255 (the optional ``diff`` column)."""
    source, _, _ = to_float(load_image(source_path))
    image, _, _ = to_float(load_image(image_path))
    if source.shape != image.shape:
        raise ValidationError(f"{image_path}: size/channels differ from its source {source_path}")
    diff = np.abs(image - source).max(axis=2)
    return encode_png(np.rint(diff * 255.0).astype(np.uint8))


class _Rows:
    """Turns metadata rows into column dicts of the published features (one row at a time)."""

    def __init__(self, generated: Path, sources: Path, features: Features, include_diff: bool) -> None:
        self.generated = generated
        self.sources = sources
        self.features = features
        self.include_diff = include_diff
        # the all-zero masks of the good split, one PNG per image size, made once per build
        self.zero_masks: dict[tuple[int, int], bytes] = {}

    def zero_mask(self, size: tuple[int, int]) -> bytes:
        if size not in self.zero_masks:
            self.zero_masks[size] = _zero_mask(size)
        return self.zero_masks[size]

    def test_row(self, meta: dict[str, Any]) -> dict[str, Any]:
        where = f"{self.generated / 'metadata.jsonl'} ({meta['file_name']})"
        image_path = self.generated / meta["file_name"]
        mask_path = self.generated / meta.get("mask_file_name", "")
        try:  # regular files of bounded size only: never a pipe or a device named like a PNG
            image = read_file(image_path)
            mask = read_file(mask_path)
        except InvalidImageError as exc:
            raise BuildError(f"{where}: {exc}") from None
        image_size = _png_size(image, str(image_path))
        mask_size = _png_size(mask, str(mask_path))
        if image_size != mask_size:
            raise ValidationError(
                f"{mask_path}: mask is {mask_size[0]}x{mask_size[1]} but its image is "
                f"{image_size[0]}x{image_size[1]}; regenerate this anomaly"
            )
        row = {
            "image": {"bytes": image, "path": meta["file_name"]},
            "mask": {"bytes": mask, "path": meta["mask_file_name"]},
        }
        if self.include_diff:
            row["diff"] = {"bytes": _diff_png(self.sources / meta["source_id"], image_path), "path": None}
        row["source_id"] = meta["source_id"]
        row["file_name"] = meta["file_name"]
        row.update(encode_record(meta, self.features, where))
        return row

    def good_row(self, source_id: str, background: float | None) -> dict[str, Any]:
        path = self.sources / source_id
        if not path.exists():
            raise BuildError(
                f"source image {source_id!r} not found under {self.sources}; "
                "pass the folder of the anomaly-free images the anomalies were made from"
            )
        try:
            image = read_file(path)
        except InvalidImageError as exc:
            raise BuildError(f"source image {source_id!r}: {exc}") from None
        size = _png_size(image, str(path))
        row = {
            "image": {"bytes": image, "path": source_id},
            "mask": {"bytes": self.zero_mask(size), "path": None},
        }
        if self.include_diff:
            row["diff"] = {"bytes": self.zero_mask(size), "path": None}
        row["source_id"] = source_id
        row["file_name"] = source_id
        row.update(encode_record(source_record(background), self.features, str(path)))
        return row


def _row_bytes(row: dict[str, Any]) -> int:
    return sum(len(v["bytes"]) for v in row.values() if isinstance(v, dict) and v.get("bytes"))


# --------------------------------------------------------------------------- shards
def _write_split(
    split: str,
    n_rows: int,
    make_row: Callable[[int], dict[str, Any]],
    data_dir: Path,
    schema: pa.Schema,
    fingerprint: str,
    shard_bytes: int,
    group_rows: int,
    group_bytes: int,
    progress: bool,
) -> list[dict[str, Any]]:
    """Write rows ``0..n_rows-1`` of a split into shards; return [{file, rows, bytes, sha256}].

    Finished shards are kept under ``data/.partial/`` with a state file; an interrupted build
    resumes after the last finished shard. Shards are renamed to ``SPLIT-0000i-of-0000N.parquet``
    once the split is complete (N is only known then).
    """
    from tqdm.auto import tqdm

    partial = data_dir / ".partial"
    partial.mkdir(parents=True, exist_ok=True)
    state_path = partial / f"{split}.json"
    done: list[dict[str, Any]] = []
    if state_path.is_file():
        state = json.loads(state_path.read_text())
        if state.get("fingerprint") == fingerprint:
            for shard in state["shards"]:
                path = partial / shard["file"]
                if not path.is_file() or sha256_file(path) != shard["sha256"]:
                    break
                done.append(shard)
    start = sum(s["rows"] for s in done)

    def save_state() -> None:
        write_atomic(state_path, json.dumps({"fingerprint": fingerprint, "shards": done}, indent=1).encode())

    save_state()
    bar = tqdm(total=n_rows, initial=start, desc=f"parquet {split}", unit="row", disable=not progress)
    index = start
    while index < n_rows:
        number = len(done)
        name = f"{split}-{number:05d}.parquet"
        final = partial / name
        first = index
        with atomic_path(final) as tmp_path:
            index = _write_shard(tmp_path, index, n_rows, make_row, schema, shard_bytes, group_rows,
                                 group_bytes, bar)
        done.append({"file": name, "first_row": first, "rows": index - first,
                     "bytes": final.stat().st_size, "sha256": sha256_file(final)})
        save_state()
    bar.close()

    # the split is complete: give the shards their final names
    total = len(done)
    out = []
    for number, shard in enumerate(done):
        final_name = f"{split}-{number:05d}-of-{total:05d}.parquet"
        os.replace(partial / shard["file"], data_dir / final_name)
        out.append({"file": f"data/{final_name}", "rows": shard["rows"], "bytes": shard["bytes"],
                    "sha256": shard["sha256"]})
    state_path.unlink()
    return out


def _write_shard(path: Path, index: int, n_rows: int, make_row: Callable[[int], dict[str, Any]],
                 schema: pa.Schema, shard_bytes: int, group_rows: int, group_bytes: int, bar: Any) -> int:
    """Write rows from ``index`` into one parquet file until it holds ``shard_bytes``; return the
    index of the next row."""
    columns = schema.names
    written, buffered = 0, 0
    buffer: list[dict[str, Any]] = []
    with pq.ParquetWriter(path, schema, compression="snappy", write_statistics=False) as writer:
        while index < n_rows and written < shard_bytes:
            row = make_row(index)
            size = _row_bytes(row)
            buffer.append(row)
            buffered += size
            written += size
            index += 1
            bar.update(1)
            if len(buffer) >= group_rows or buffered >= group_bytes or index == n_rows or written >= shard_bytes:
                table = pa.Table.from_pydict({c: [r[c] for r in buffer] for c in columns}, schema=schema)
                writer.write_table(table, row_group_size=len(buffer))
                buffer, buffered = [], 0
    return index


# --------------------------------------------------------------------------- counts
def label_counts(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Counts per method x shape x mode x size bin, sorted, as [{method, shape, mode, size_bin, count}]."""
    counter = Counter(tuple(r.get(name) for name in LABEL_NAMES) for r in rows)
    return [
        {**dict(zip(LABEL_NAMES, labels)), "count": n}
        for labels, n in sorted(counter.items(), key=lambda kv: tuple(str(x) for x in kv[0]))
    ]


def area_histogram(fractions: Sequence[float], edges_percent: Sequence[float]) -> list[dict[str, Any]]:
    """Histogram of changed-area percentages over ``edges_percent`` (plus open ends)."""
    edges = sorted(edges_percent)
    counts = [0] * (len(edges) + 1)
    for f in fractions:
        counts[int(np.searchsorted(edges, f * 100.0, side="right"))] += 1
    labels = [f"<{edges[0]:g}%"] + [f"{a:g}-{b:g}%" for a, b in zip(edges[:-1], edges[1:])] + [f">={edges[-1]:g}%"]
    return [{"range": lab, "count": c} for lab, c in zip(labels, counts)]


def _histogram_edges(bins: Sequence[SizeBin]) -> list[float]:
    # a log-spaced grid that covers the configured bins: fine enough to show the shape of the
    # size distribution inside each bin
    low = min(b.low for b in bins) * 100.0
    high = max(b.high for b in bins) * 100.0
    return [float(f"{v:.3g}") for v in np.geomspace(low, high, 13)]


# --------------------------------------------------------------------------- build
def build_dataset(
    input_dir: str | os.PathLike,
    build_dir: str | os.PathLike,
    *,
    config: ProtocolConfig | None = None,
    run: RunOptions | None = None,
    sources_dir: str | os.PathLike | None = None,
    include_diff: bool = False,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    group_rows: int = DEFAULT_GROUP_ROWS,
    group_bytes: int = DEFAULT_GROUP_BYTES,
    progress: bool = True,
    **generation: Any,
) -> BuildResult:
    """Generate anomalies for the images in ``input_dir`` and write a publishable dataset folder.

    ``input_dir``   anomaly-free images (region masks beside them as ``<name>_mask.png`` or in a
                    ``masks/`` folder), or an imagefolder written by ``anomalyforge synth``
                    (``metadata.jsonl`` + ``images/`` + ``masks/``); then ``sources_dir`` names the
                    anomaly-free images it was made from (they become the ``good`` split), by
                    default the folder its ``inputs.json`` records.
    ``build_dir``   output folder (see the module docstring); rerunning resumes.
    ``include_diff`` add the ``diff`` column (|synthetic - source|, max over channels, 0..255).
    ``config``, ``run``  the generation (``synth.config.ProtocolConfig``, ``RunOptions``), or
                    their fields as keyword ``generation`` options (method, mix, per_image, shapes,
                    modes, bins, seed, method_options; workers, region_masks, textures, ...),
                    parsed by ``synth.config.parse_generation``. ``progress`` applies without ``run``.

    Raises ``BuildError`` (bad input) or ``ValidationError`` (e.g. a mask whose size differs
    from its image). Returns the folder, rows per split and the content of ``build.json``.
    """
    input_dir = Path(input_dir)
    build_dir = Path(build_dir)
    if run is None:
        generation.setdefault("progress", progress)
    config, run = resolve_generation(config, run, generation)
    for name, value in (("shard_bytes", shard_bytes), ("group_rows", group_rows), ("group_bytes", group_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BuildError(f"{name} must be a whole number >= 1, got {value!r}")
    if not input_dir.is_dir():
        raise BuildError(f"input folder {input_dir} does not exist")
    check_input_layout(input_dir, build_dir)
    with claimed_folder(build_dir, ("data", "data/.partial", "card", "card/examples")):
        return _build_into(input_dir, build_dir, config, run, sources_dir, include_diff, shard_bytes,
                           group_rows, group_bytes)


def _build_into(input_dir: Path, build_dir: Path, config: ProtocolConfig, run: RunOptions,
                sources_dir: str | os.PathLike | None, include_diff: bool, shard_bytes: int, group_rows: int,
                group_bytes: int) -> BuildResult:
    """``build_dataset`` in the claimed ``build_dir``."""
    progress = run.progress
    generated, sources, config, run, input_kind = _generated(input_dir, build_dir, config, run, sources_dir)
    bins = config.size_bins()
    meta = read_rows_with_their_files(generated)
    if not meta:
        raise ValidationError(f"{generated / 'metadata.jsonl'} lists no anomalies: the test split would be empty")
    extra_bins = sorted({r["size_bin"] for r in meta if r.get("size_bin")} - set(size_bin_names(bins)))
    features = dataset_features(bins, include_diff=include_diff, extra_size_bins=extra_bins)
    schema = features.arrow_schema
    size_bins = features["size_bin"].names

    background: dict[str, float | None] = {}
    for r in meta:
        background.setdefault(r["source_id"], r.get("background_brightness"))
    good_ids = sorted(background)

    fingerprint = _fingerprint(meta, good_ids, features, include_diff, shard_bytes, group_rows, group_bytes)
    info_path = build_dir / BUILD_RECORD
    previous = _finished_build(build_dir, fingerprint)
    if previous is not None:
        return BuildResult(build_dir, dict(previous["counts"]), previous)
    # the completion marker goes first and comes back last: a folder killed anywhere in between
    # never claims to hold a complete build, and the next run finishes it
    info_path.unlink(missing_ok=True)
    data_dir = _emptied_data_dir(build_dir)

    rows = _Rows(generated, sources, features, include_diff)
    shards = {
        TEST_SPLIT: _write_split(TEST_SPLIT, len(meta), lambda i: rows.test_row(meta[i]), data_dir, schema,
                                 fingerprint, shard_bytes, group_rows, group_bytes, progress),
        GOOD_SPLIT: _write_split(GOOD_SPLIT, len(good_ids),
                                 lambda i: rows.good_row(good_ids[i], background[good_ids[i]]), data_dir,
                                 schema, fingerprint, shard_bytes, group_rows, group_bytes, progress),
    }
    shutil.rmtree(data_dir / ".partial", ignore_errors=True)

    examples = _write_examples(build_dir, generated, meta)
    counts = {TEST_SPLIT: len(meta), GOOD_SPLIT: len(good_ids)}
    info = {
        "tool": "anomalyforge",
        "tool_version": tool_version(),
        "format": FORMAT_VERSION,
        "fingerprint": fingerprint,
        "input": {"kind": input_kind, "name": input_dir.resolve().name},
        "generation": generation_record(config, run),
        "protocol": _protocol_record(generated),
        "include_diff": include_diff,
        "counts": counts,
        "images": {"sources": len(good_ids), "per_source_max": max(Counter(r["source_id"] for r in meta).values())},
        "label_counts": label_counts(meta),
        "size_bins": list(size_bins),
        "area_histogram": area_histogram([float(r.get("area_fraction") or 0.0) for r in meta], _histogram_edges(bins)),
        "examples": examples,
        "shards": shards,
        "features": features.to_dict(),
    }
    from .card import render_card

    write_atomic(build_dir / "README.md", render_card(info, version=None).encode("utf-8"))
    write_atomic(info_path, json.dumps(info, indent=1, sort_keys=True).encode())
    return BuildResult(build_dir, counts, info)


def _generated(input_dir: Path, build_dir: Path, config: ProtocolConfig, run: RunOptions,
               sources_dir: str | os.PathLike | None) -> tuple[Path, Path, ProtocolConfig, RunOptions, str]:
    """``(generated folder, sources folder, config, run, input kind)``: an imagefolder as it is,
    with the configuration its generator recorded; a folder of images generated into ``build_dir``."""
    if is_imagefolder(input_dir):
        generated = input_dir
        # the anomalies exist already: their generator's record (config.json) is the configuration;
        # generation options given here do not apply
        recorded = (_protocol_record(generated) or {}).get("config") or {}
        config, _ = parse_generation({k: v for k, v in recorded.items() if k in GENERATION_KEYS})
        run = RunOptions(progress=run.progress)
        if sources_dir is None:
            sources_dir = recorded_sources(generated)
        sources = Path(sources_dir)
        input_kind = "imagefolder"
    else:
        generated = build_dir / "generated"
        sources = Path(sources_dir) if sources_dir is not None else input_dir
        _run_generation(input_dir, generated, config, run)
        input_kind = "images"
    if not sources.is_dir():
        raise BuildError(f"--sources {sources} is not a folder: pass the folder of the anomaly-free images")
    return generated, sources, config, run, input_kind


def _fingerprint(meta: list[dict[str, Any]], good_ids: list[str], features, include_diff: bool, shard_bytes: int,
                 group_rows: int, group_bytes: int) -> str:
    """What the shards depend on, hashed row by row (no second copy of the metadata in memory)."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT_VERSION, "good": good_ids, "features": features.to_dict(),
                              "include_diff": include_diff, "shard_bytes": shard_bytes,
                              "group_rows": group_rows, "group_bytes": group_bytes}, sort_keys=True).encode())
    for r in meta:
        digest.update(json.dumps(r, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _emptied_data_dir(build_dir: Path) -> Path:
    """``build_dir/data`` without final shards: a previous, different build leaves them behind,
    and they would match the card's globs."""
    data_dir = build_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for old in data_dir.glob("*.parquet"):
        old.unlink()
    return data_dir


def _finished_build(build_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The ``build.json`` content when ``build_dir`` already holds this build, complete and intact."""
    try:
        previous = json.loads((build_dir / BUILD_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if previous.get("fingerprint") != fingerprint or not (build_dir / "README.md").is_file():
        return None
    for split in SPLITS:
        for shard in previous.get("shards", {}).get(split, []):
            path = build_dir / shard["file"]
            if not path.is_file() or sha256_file(path) != shard["sha256"]:
                return None
    for example in previous.get("examples", []):
        if not all((build_dir / example[key]).is_file() for key in ("image", "mask")):
            return None
    return previous


def _protocol_record(generated: Path) -> dict[str, Any] | None:
    """The generator's own record of its configuration (``config.json``), when it wrote one."""
    path = generated / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_examples(build_dir: Path, generated: Path, meta: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Copy up to ``N_EXAMPLES`` image/mask pairs (one per method x shape first) to card/examples."""
    folder = build_dir / "card" / "examples"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    chosen: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for r in meta:
        key = (r.get("method"), r.get("shape"))
        if key not in seen:
            seen.add(key)
            chosen.append(r)
    for r in meta:
        if len(chosen) >= N_EXAMPLES:
            break
        if r not in chosen:
            chosen.append(r)
    out = []
    for number, r in enumerate(chosen[:N_EXAMPLES]):
        image = f"card/examples/{number:02d}-image.png"
        mask = f"card/examples/{number:02d}-mask.png"
        write_atomic(build_dir / image, (generated / r["file_name"]).read_bytes())
        write_atomic(build_dir / mask, (generated / r["mask_file_name"]).read_bytes())
        out.append({"image": image, "mask": mask, "method": r.get("method"), "shape": r.get("shape"),
                    "mode": r.get("mode"), "size_bin": r.get("size_bin")})
    return out


# --------------------------------------------------------------------------- validation
def _shards_of(build_dir: Path, split: str) -> list[Path]:
    return sorted((build_dir / "data").glob(f"{split}-*.parquet"))


def validate_build(build_dir: str | os.PathLike, progress: bool = False) -> dict[str, Any]:
    """Check that a build folder holds a publishable dataset; return its ``build.json`` content.

    Checks: build.json and README.md present; every split has shards and rows; the parquet
    features carry the contract columns with their types; every mask has its image's size and
    holds only 0/255; rows and checksums match build.json. Raises ``ValidationError`` naming the
    first problem.
    """
    build_dir = Path(build_dir)
    info_path = build_dir / "build.json"
    if not info_path.is_file():
        raise ValidationError(f"{build_dir} is not a build folder (no build.json); run `anomalyforge hub build` first")
    info = json.loads(info_path.read_text())
    if not (build_dir / "README.md").is_file():
        raise ValidationError(f"{build_dir}/README.md is missing; rerun the build")
    reference = dataset_features(include_diff=bool(info.get("include_diff")))
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for split in SPLITS:
            _validate_split(build_dir, split, info, reference, pool, progress)
    for example in info.get("examples", []):
        for key in ("image", "mask"):
            if not (build_dir / example[key]).is_file():
                raise ValidationError(f"example file {example[key]} is missing; rerun the build")
    return info


def _validate_split(build_dir: Path, split: str, info: dict[str, Any], reference: Any,
                    pool: ThreadPoolExecutor, progress: bool) -> None:
    from tqdm.auto import tqdm

    shards = _shards_of(build_dir, split)
    if not shards:
        raise ValidationError(f"split {split!r} has no parquet shards in {build_dir / 'data'}")
    rows = 0
    seen: dict[str, str] = {}  # file path stored with a row's image or mask -> the shard holding it
    for shard in shards:
        pf = pq.ParquetFile(shard)
        try:
            features = Features.from_arrow_schema(pf.schema_arrow)
        except Exception as exc:  # schema metadata is not datasets' JSON
            raise ValidationError(f"{shard}: parquet schema carries no dataset features ({exc})") from None
        for column, feature in reference.items():
            if column == "size_bin":
                ok = column in features and type(features[column]).__name__ == "ClassLabel"
            elif column in ("method", "shape", "mode"):
                # append-only vocabularies: the published names must start with ours
                names = getattr(features.get(column), "names", None)
                ok = names is not None and list(feature.names) == names[: len(feature.names)]
            else:
                ok = column in features and features[column] == feature
            if not ok:
                raise ValidationError(
                    f"{shard}: column {column!r} is {features.get(column)!r}, the schema needs {feature!r}"
                )
        rows += pf.metadata.num_rows
        bar = tqdm(total=pf.metadata.num_rows, desc=f"validate {shard.name}", disable=not progress)
        for group in range(pf.num_row_groups):
            table = pf.read_row_group(group, columns=["image", "mask", "source_id"])
            pairs = [(image, mask, f"{shard.name} ({source_id})")
                     for image, mask, source_id in zip(*(table.column(c).to_pylist() for c in table.column_names))]
            for image, mask, where in pairs:
                _check_unique(seen, image, where)
                _check_unique(seen, mask, where)
            # PNG decoding releases the GIL: threads use every core; map() re-raises the
            # first failing row in row order
            for _ in pool.map(lambda args: _check_pair(*args), pairs):
                bar.update(1)
        bar.close()
    if rows == 0:
        raise ValidationError(f"split {split!r} is empty: a published dataset needs rows in {', '.join(SPLITS)}")
    expected = info.get("counts", {}).get(split)
    if expected != rows:
        raise ValidationError(f"split {split!r} has {rows} rows but build.json says {expected}; rerun the build")
    recorded = {s["file"]: s["sha256"] for s in info.get("shards", {}).get(split, [])}
    present = {f"data/{p.name}" for p in shards}
    if set(recorded) != present:
        raise ValidationError(
            f"split {split!r}: shards {sorted(present)} differ from build.json {sorted(recorded)}; rerun the build"
        )
    for name, digest in recorded.items():
        if sha256_file(build_dir / name) != digest:
            raise ValidationError(f"{name} changed after the build (checksum differs); rerun the build")


def _check_unique(seen: dict[str, str], value: dict | None, where: str) -> None:
    """Refuse a second row carrying the same image or mask file (generated masks of good rows have none)."""
    path = (value or {}).get("path")
    if path is None:
        return
    if path in seen:
        raise ValidationError(
            f"{where}: file {path} is also used by {seen[path]}: every row needs its own image and mask; "
            "rebuild from a generation without colliding file names"
        )
    seen[path] = where


def _check_pair(image: dict | None, mask: dict | None, where: str) -> None:
    if not image or not image.get("bytes"):
        raise ValidationError(f"{where}: image is missing")
    if not mask or not mask.get("bytes"):
        raise ValidationError(f"{where}: mask is missing")
    image_size = _png_size(image["bytes"], where)
    try:
        with PILImage.open(io.BytesIO(mask["bytes"])) as m:
            mask_size, mask_mode = m.size, m.mode
            pixels = np.asarray(m.convert("L")) if mask_mode in ("L", "1", "P") else None
    except Exception as exc:  # PIL raises several unrelated types for broken files
        raise ValidationError(f"{where}: mask cannot be decoded ({exc})") from None
    if mask_size != image_size:
        raise ValidationError(
            f"{where}: mask is {mask_size[0]}x{mask_size[1]} but the image is {image_size[0]}x{image_size[1]}"
        )
    if pixels is None:
        raise ValidationError(f"{where}: mask has mode {mask_mode}; masks are single-channel 0/255")
    # (x + 1) & 0xFE is 0 exactly for 0 and 255 (uint8 wraps): one pass, no sort
    if np.any((pixels + np.uint8(1)) & np.uint8(0xFE)):
        raise ValidationError(f"{where}: mask holds values other than 0 and 255")
