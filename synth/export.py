"""Export anomalies made in memory (e.g. in the Space) in the folder protocol's ``imagefolder`` layout.

``export_zip`` writes one zip holding exactly what ``synth.protocol.run_protocol`` writes to a
folder -- ``images/*.png``, ``masks/*.png`` and ``metadata.jsonl`` (one object per anomaly:
``file_name``, ``mask_file_name``, ``source_id`` and the schema columns) -- plus ``config.json``
with what produced it, so that an unzipped download loads with
``datasets.load_dataset("imagefolder", data_dir=...)`` and feeds ``anomalyforge hub build``.

``export_parquet`` writes the same rows as one parquet file whose ``image``/``mask`` columns are
``datasets`` ``Image`` features (the PNG bytes inline), readable with
``datasets.load_dataset("parquet", data_files=...)``.

Images are written in their own dtype and layout (16-bit stays 16-bit, alpha is kept).
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from .anomaly import Anomaly
from .errors import InvalidParameterError
from .atomic import write_atomic
from .image import DEFAULT_PNG_LEVEL, encode_png
from .protocol import CONFIG, METADATA
from .record import RECORD_COLUMNS, metadata_row


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "image"


def export_names(anomalies: Sequence[Anomaly], source_ids: Sequence[str]) -> list[tuple[str, str]]:
    """``(file_name, mask_file_name)`` of each anomaly, unique and stable for the same inputs.

    ``images/<source stem>_<index>_<shape>_<mode>.png`` and the same name under ``masks/``;
    ``index`` is the anomaly's position in the export, so names never collide.
    """
    names = []
    width = max(3, len(str(len(anomalies))))
    for i, (anomaly, source_id) in enumerate(zip(anomalies, source_ids)):
        stem = _safe(Path(source_id).with_suffix("").as_posix().replace("/", "__"))
        rec = anomaly.record
        name = f"{stem}_{i:0{width}d}_{_safe(str(rec['shape']))}_{_safe(str(rec['mode']))}.png"
        names.append((f"images/{name}", f"masks/{name}"))
    return names


def _check(anomalies: Sequence[Anomaly], source_ids: Sequence[str] | str) -> list[str]:
    if not anomalies:
        raise InvalidParameterError("nothing to export: the list of anomalies is empty")
    ids = [source_ids] * len(anomalies) if isinstance(source_ids, str) else list(source_ids)
    if len(ids) != len(anomalies):
        raise InvalidParameterError(
            f"got {len(ids)} source ids for {len(anomalies)} anomalies; pass one per anomaly or a single id"
        )
    return ids


def export_rows(anomalies: Sequence[Anomaly], source_ids: Sequence[str] | str) -> list[dict[str, Any]]:
    """The ``metadata.jsonl`` rows an export writes (same columns as the folder protocol)."""
    ids = _check(anomalies, source_ids)
    return [metadata_row(a.record, f, m, s) for a, (f, m), s in zip(anomalies, export_names(anomalies, ids), ids)]


def export_zip(
    anomalies: Sequence[Anomaly],
    path: str | os.PathLike,
    source_ids: Sequence[str] | str,
    *,
    config: Mapping[str, Any] | None = None,
    png_compression: int = DEFAULT_PNG_LEVEL,
) -> Path:
    """Write ``anomalies`` to the zip ``path`` in the ``imagefolder`` layout; return the path.

    ``source_ids`` names the anomaly-free image of each anomaly (one string for all, or one per
    anomaly), as the ``source_id`` column. ``config`` (JSON types) is stored as ``config.json``.
    Entries are written with a fixed timestamp, so the same anomalies give the same zip bytes.
    """
    ids = _check(anomalies, source_ids)
    rows = export_rows(anomalies, ids)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        # PNGs are already compressed; storing them keeps the zip fast to write.
        for anomaly, row in zip(anomalies, rows):
            _add(zf, row["file_name"], encode_png(anomaly.image, png_compression))
            _add(zf, row["mask_file_name"], encode_png(anomaly.mask_u8, png_compression))
        _add(zf, METADATA, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode(), deflate=True)
        if config is not None:
            _add(zf, CONFIG, json.dumps(dict(config), indent=2, sort_keys=True).encode(), deflate=True)
    path = Path(path)
    write_atomic(path, buf.getvalue())
    return path


def _add(zf: zipfile.ZipFile, name: str, data: bytes, deflate: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def _value(dtype: str) -> dict[str, Any]:
    return {"dtype": dtype, "_type": "Value"}


#: ``datasets`` feature JSON (stored in the file's schema metadata) of each record column kind;
#: labels are plain strings here (a download of a few anomalies has no published vocabulary)
_KIND_FEATURES: dict[str, dict[str, Any]] = {
    "label": _value("string"),
    "string": _value("string"),
    "float32": _value("float32"),
    "int64": _value("int64"),
    "bbox": {"feature": _value("int32"), "length": 4, "_type": "List"},
}


def _arrow_column(kind: str, values: list[Any]) -> Any:
    import pyarrow as pa

    if kind in ("label", "string"):
        return pa.array([str(v) for v in values], pa.string())
    if kind == "float32":
        return pa.array([float(v) for v in values], pa.float32())
    if kind == "int64":
        return pa.array([int(v) for v in values], pa.int64())
    return pa.array([[int(x) for x in v] for v in values], pa.list_(pa.int32(), 4))  # bbox


def export_parquet(
    anomalies: Sequence[Anomaly],
    path: str | os.PathLike,
    source_ids: Sequence[str] | str,
    *,
    png_compression: int = DEFAULT_PNG_LEVEL,
) -> Path:
    """Write ``anomalies`` as one parquet file (one row each, PNG bytes inline); return the path.

    Columns: ``image``, ``mask`` (``datasets`` ``Image`` features), ``source_id``, ``file_name``
    (the image's path in ``export_zip``'s layout) and the record columns in
    ``synth.record.RECORD_COLUMNS`` order (labels as strings; ``bbox`` int32 x 4).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = _check(anomalies, source_ids)
    rows = export_rows(anomalies, ids)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns: dict[str, pa.Array] = {
        "image": pa.array(
            [{"bytes": encode_png(a.image, png_compression), "path": Path(r["file_name"]).name}
             for a, r in zip(anomalies, rows)], type=image_type),
        "mask": pa.array(
            [{"bytes": encode_png(a.mask_u8, png_compression), "path": Path(r["mask_file_name"]).name}
             for a, r in zip(anomalies, rows)], type=image_type),
        "source_id": pa.array([r["source_id"] for r in rows], pa.string()),
        "file_name": pa.array([r["file_name"] for r in rows], pa.string()),
    }
    features: dict[str, Any] = {"image": {"_type": "Image"}, "mask": {"_type": "Image", "mode": "L"},
                                "source_id": _value("string"), "file_name": _value("string")}
    for column in RECORD_COLUMNS:
        columns[column.name] = _arrow_column(column.kind, [r[column.name] for r in rows])
        features[column.name] = _KIND_FEATURES[column.kind]
    table = pa.table(columns).replace_schema_metadata(
        {"huggingface": json.dumps({"info": {"features": features}})}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    path = Path(path)
    write_atomic(path, sink.getvalue().to_pybytes())
    return path
