"""Read anomaly datasets for the diversity and quality metrics, lazily (images decode on indexing).

Two sources, both in the published schema (dataset-schema.md):

* a dataset ``datasets.load_dataset`` can open: a Hub id ``ORG/NAME`` (with ``revision``) or a local
  dataset folder; the anomaly split has ``image``, ``mask``, optional ``diff``, ``source_id`` and
  metadata columns, the ``good`` split (or config) holds the sources with ``image`` and ``source_id``;
* a folder written by ``anomalyforge synth`` (``metadata.jsonl``, ``images/``, ``masks/``), read
  straight from its JSON lines; its sources are found under ``sources_dir`` by ``source_id``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from detect.errors import DatasetLayoutError, DatasetUnavailableError
from hub_tools.loading import load_dataset
from synth.image import IMAGE_SUFFIXES, pil_to_array
from hub_tools.schema import decode_label


@dataclass(frozen=True)
class AnomalyRows:
    """Lazily decoded anomaly rows of one split.

    ``images[i]``/``masks[i]``/``diffs[i]``/``originals[i]`` are numpy arrays (uint8/uint16 as
    stored); ``diffs`` is ``None`` without a ``diff`` column, ``originals`` is ``None`` when the
    anomaly-free sources were not found.
    """

    images: Sequence[np.ndarray]
    masks: Sequence[np.ndarray]
    diffs: Sequence[np.ndarray] | None
    originals: Sequence[np.ndarray] | None
    columns: dict[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def column(self, name: str) -> list[Any]:
        """Values of metadata column ``name`` (class labels as their names)."""
        if name not in self.columns:
            raise DatasetLayoutError(f"no column {name!r}; available: {', '.join(sorted(self.columns))}")
        return self.columns[name]


def load_anomaly_rows(
    source: str | Path,
    *,
    revision: str | None = None,
    split: str = "test",
    good_split: str = "good",
    sources_dir: str | Path | None = None,
) -> AnomalyRows:
    """Open an anomaly dataset (Hub id, local dataset folder, or synth output folder).

    Args:
        source: ``ORG/NAME``, a local dataset folder, or a folder with ``metadata.jsonl``.
        revision: version tag or commit of a Hub dataset.
        split: the split with the anomaly images.
        good_split: split (or config) with the anomaly-free sources.
        sources_dir: folder of the sources of a synth output folder (``source_id`` relative to it).
    """
    folder = Path(source)
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return _defect_test_files(folder / "test")
    if folder.is_dir() and (folder / "metadata.jsonl").is_file():
        return _rows_from_synth_folder(folder, sources_dir)
    if folder.is_dir() and (folder / "dataset_dict.json").is_file():
        return _rows_from_saved(folder, split, good_split)
    return _rows_from_datasets(str(source), revision, split, good_split)


# --------------------------------------------------------------------------- datasets library
class _Column(Sequence):
    """One image column of a ``datasets.Dataset`` as a sequence of numpy arrays."""

    def __init__(self, ds: Any, name: str) -> None:
        self.ds, self.name = ds.select_columns([name]), name

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):  # type: ignore[override]
        return _to_array(self.ds[int(i)][self.name])


class _Lookup(Sequence):
    """``items[index[key]]`` for each key of ``keys``: the source of every anomaly row."""

    def __init__(self, items: Sequence, index: dict[str, int], keys: Sequence[str]) -> None:
        self.items, self.index, self.keys = items, index, list(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i):  # type: ignore[override]
        return self.items[self.index[self.keys[int(i)]]]


def _rows_from_saved(folder: Path, split: str, good_split: str) -> AnomalyRows:
    """A ``DatasetDict.save_to_disk`` folder."""
    import datasets

    saved = datasets.load_from_disk(str(folder))
    if split not in saved:
        raise DatasetLayoutError(f"{folder} has no split {split!r} (splits: {', '.join(saved)})")
    return _rows_from_splits(saved[split], saved[good_split] if good_split in saved else None, str(folder), split, good_split)


def _rows_from_datasets(source: str, revision: str | None, split: str, good_split: str) -> AnomalyRows:
    try:
        ds = load_dataset(source, revision=revision, split=split)
    except (ConnectionError, FileNotFoundError, ValueError) as exc:
        at = f" at revision {revision}" if revision else ""
        raise DatasetUnavailableError(
            f"cannot open split {split!r} of dataset {source}{at}: {str(exc).rstrip('.')}. Check the id, revision and split, "
            "the network or HF_ENDPOINT, or pass a local folder"
        ) from exc
    good = None
    if "source_id" in ds.column_names:
        good = _load_good(source, revision, good_split)
    return _rows_from_splits(ds, good, source, split, good_split)


def _rows_from_splits(ds: Any, good: Any | None, source: str, split: str, good_split: str) -> AnomalyRows:
    import datasets

    for needed in ("image", "mask"):
        if needed not in ds.column_names:
            raise DatasetLayoutError(
                f"split {split!r} of {source} has no {needed!r} column (columns: {', '.join(ds.column_names)}); "
                "the diversity and quality metrics need image and mask (dataset-schema.md)"
            )
    columns: dict[str, list[Any]] = {}
    for name, feature in ds.features.items():
        if name in ("image", "mask", "diff") or not _is_scalar_feature(feature):
            continue
        values = ds[name]
        values = list(values) if not isinstance(values, list) else values
        if isinstance(feature, datasets.ClassLabel):
            values = [decode_label(feature, v) for v in values]
        columns[name] = values
    diffs = _Column(ds, "diff") if "diff" in ds.column_names else None
    originals = None
    if "source_id" in columns:
        if good is not None and {"image", "source_id"} <= set(good.column_names):
            index = {sid: i for i, sid in enumerate(good["source_id"])}
            missing = sorted(set(columns["source_id"]) - set(index))
            if missing:
                raise DatasetLayoutError(
                    f"{len(missing)} source_id values of split {split!r} are not in the {good_split!r} split "
                    f"(first: {missing[0]!r}); the anomaly-free sources must travel with the dataset"
                )
            originals = _Lookup(_Column(good, "image"), index, columns["source_id"])
    return AnomalyRows(_Column(ds, "image"), _Column(ds, "mask"), diffs, originals, columns)




def load_reference_images(source: str | Path, *, revision: str | None = None, split: str = "test") -> Sequence[np.ndarray]:
    """Images of a reference set (e.g. real anomalies for FID/KID), lazily decoded.

    ``source`` is a real-defect set in the MVTec AD or BTAD layout (``train/`` and ``test/``: the images
    under ``test/`` outside its anomaly-free ``test/good`` or ``test/ok``, never a training image), a plain folder of image files (searched recursively, sorted by path; files named
    ``*_mask.*`` and folders named ``ground_truth`` are skipped, as in MVTec AD), a synth output
    folder, or a dataset ``datasets.load_dataset`` opens (only its ``image`` column is read).
    """
    folder = Path(source)
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return _defect_test_files(folder / "test")
    if folder.is_dir() and (folder / "metadata.jsonl").is_file():
        with open(folder / "metadata.jsonl", encoding="utf-8") as fh:
            names = [json.loads(line)["file_name"] for line in fh if line.strip()]
        return _Files([folder / n for n in names])
    if folder.is_dir() and not (folder / "dataset_dict.json").is_file() and not any(folder.glob("**/*.parquet")):
        files = sorted(
            p for p in folder.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_mask") and "ground_truth" not in p.parts
        )
        if not files:
            raise DatasetLayoutError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return _Files(files)
    if folder.is_dir() and (folder / "dataset_dict.json").is_file():
        import datasets

        ds = datasets.load_from_disk(str(folder))[split]
    else:
        try:
            ds = load_dataset(str(source), revision=revision, split=split)
        except (ConnectionError, FileNotFoundError, ValueError) as exc:
            raise DatasetUnavailableError(f"cannot open split {split!r} of {source}: {str(exc).rstrip('.')}") from exc
    if "image" not in ds.column_names:
        raise DatasetLayoutError(f"split {split!r} of {source} has no 'image' column (columns: {', '.join(ds.column_names)})")
    return _Column(ds, "image")


def _load_good(source: str, revision: str | None, good_split: str) -> Any | None:
    """The anomaly-free split, or config of that name; ``None`` when the dataset has neither."""
    try:
        return load_dataset(source, revision=revision, split=good_split)
    except ValueError:  # unknown split name
        pass
    try:
        loaded = load_dataset(source, good_split, revision=revision)
    except (ValueError, FileNotFoundError):  # no such config
        return None
    return loaded[next(iter(loaded))] if hasattr(loaded, "keys") else loaded


def _is_scalar_feature(feature: Any) -> bool:
    import datasets

    return isinstance(feature, (datasets.Value, datasets.ClassLabel))


# --------------------------------------------------------------------------- synth output folder
class _Files(Sequence):
    """Image files as a sequence of numpy arrays."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # type: ignore[override]
        with Image.open(self.paths[int(i)]) as im:
            return _to_array(im)


def _rows_from_synth_folder(folder: Path, sources_dir: str | Path | None) -> AnomalyRows:
    records = []
    with open(folder / "metadata.jsonl", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetLayoutError(f"{folder / 'metadata.jsonl'} line {line_no} is not JSON: {exc}") from exc
    if not records:
        raise DatasetLayoutError(f"{folder / 'metadata.jsonl'} lists no images")
    for key in ("file_name", "mask_file_name"):
        if any(key not in r for r in records):
            raise DatasetLayoutError(f"{folder / 'metadata.jsonl'}: every line needs {key!r}")
    images = _Files([folder / r["file_name"] for r in records])
    masks = _Files([folder / r["mask_file_name"] for r in records])
    diffs = _Files([folder / r["diff_file_name"] for r in records]) if all("diff_file_name" in r for r in records) else None
    originals = None
    if sources_dir is not None:
        root = Path(sources_dir)
        paths = [root / str(r.get("source_id", "")) for r in records]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DatasetLayoutError(
                f"{len(missing)} sources not found under {root} (first: {missing[0]}); pass the INPUT_DIR "
                "given to `anomalyforge synth`"
            )
        originals = _Files(paths)
    skip = {"file_name", "mask_file_name", "diff_file_name"}
    names = [k for k in records[0] if k not in skip and not isinstance(records[0][k], (list, dict))]
    columns = {k: [r.get(k) for r in records] for k in names}
    return AnomalyRows(images, masks, diffs, originals, columns)


def _to_array(value: Any) -> np.ndarray:
    if isinstance(value, Image.Image):
        return pil_to_array(value)
    if isinstance(value, dict) and "path" in value:  # undecoded Image feature
        with Image.open(value["path"]) as im:
            return _to_array(im)
    return np.asarray(value)


def _defect_test_files(test: Path) -> _Files:
    """The defective test images of an MVTec AD / BTAD ``test`` folder (``good``/``ok`` left out)."""
    anomaly_free = {test / "good", test / "ok"}
    files = sorted(p for p in test.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.parent not in anomaly_free)
    if not files:
        raise DatasetLayoutError(f"{test} holds no defective test images")
    return _Files(files)
