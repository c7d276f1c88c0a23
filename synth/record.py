"""The record of one anomaly: its metadata columns, declared once for every place that carries them.

``Anomaly.record``, each line of ``metadata.jsonl``, each row of a published dataset
(``hub_tools.schema`` builds its ``datasets.Features`` from ``RECORD_COLUMNS``), the app's tables
and the evaluation's reading all take their columns, order and types from here. This module needs
nothing but the standard library, so ``synth`` stays importable without ``datasets``.

A metadata row is ``FILE_COLUMNS`` (where the image and mask are, which source they came from)
followed by the record columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

#: storage kinds: ``label`` a name from a closed vocabulary (a ``ClassLabel`` when published),
#: ``bbox`` four int32 pixel coordinates, the others scalars of that type
Kind = Literal["label", "float32", "int64", "string", "bbox"]


@dataclass(frozen=True)
class Column:
    """One record column: its name, storage kind, meaning and whether the contract requires it."""

    name: str
    kind: Kind
    doc: str
    required: bool = True


RECORD_COLUMNS: tuple[Column, ...] = (
    Column("method", "label", "synthesis method (synth.vocabulary.METHOD_NAMES)"),
    Column("shape", "label", "mask shape (synth.vocabulary.SHAPE_NAMES); null for methods without shapes"),
    Column("mode", "label", "pixel manipulation (synth.vocabulary.MODE_NAMES); null for methods without modes"),
    Column("size_bin", "label", "size bin of the *measured* area: a bin name, '<LOW%' or '>=HIGH%'"),
    Column("area_fraction", "float32", "changed pixels / all pixels, in [0, 1]"),
    Column("brightness_delta", "float32", "signed relative change of mean luminance inside the mask"),
    Column("background_brightness", "float32", "mean luminance of the source image, in [0, 1]"),
    Column("bbox", "bbox", "[x0, y0, x1, y1] of the changed pixels, end-exclusive"),
    Column("angle", "float32", "rotation of the drawn shape in degrees", required=False),
    Column("seed", "int64", "seed that replays the anomaly"),
    Column("params", "string", "JSON of the drawn parameters"),
)
#: record column names, in order
RECORD_NAMES: tuple[str, ...] = tuple(c.name for c in RECORD_COLUMNS)
#: record columns holding a name of a closed vocabulary
LABEL_NAMES: tuple[str, ...] = tuple(c.name for c in RECORD_COLUMNS if c.kind == "label")
#: the columns of a metadata row before the record
FILE_COLUMNS: tuple[str, ...] = ("file_name", "mask_file_name", "source_id")


def make_record(**values: Any) -> dict[str, Any]:
    """A record: every column of ``RECORD_COLUMNS``, in order. ``ValueError`` names missing or
    unknown columns (a record that drifted from the schema is a bug, never a silent extra)."""
    missing = [n for n in RECORD_NAMES if n not in values]
    unknown = sorted(set(values) - set(RECORD_NAMES))
    if missing or unknown:
        raise ValueError(f"record columns missing {missing}, unknown {unknown}; the columns are {list(RECORD_NAMES)}")
    return {name: values[name] for name in RECORD_NAMES}


def source_record(background_brightness: float | None) -> dict[str, Any]:
    """The record of an anomaly-free source image: no labels, nothing changed."""
    return make_record(method=None, shape=None, mode=None, size_bin=None, area_fraction=0.0,
                       brightness_delta=0.0, background_brightness=background_brightness, bbox=None,
                       angle=None, seed=None, params=None)


def metadata_row(record: Mapping[str, Any], file_name: str, mask_file_name: str, source_id: str) -> dict[str, Any]:
    """One line of ``metadata.jsonl``: where the files are, their source, then the record."""
    row: dict[str, Any] = dict(zip(FILE_COLUMNS, (file_name, mask_file_name, source_id)))
    row.update((name, record[name]) for name in RECORD_NAMES)
    return row
