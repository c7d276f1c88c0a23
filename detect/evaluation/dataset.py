"""Reading a published anomaly dataset through its schema (docs: dataset-schema.md).

``load_evaluation_splits(path_or_repo, revision)`` returns the ``test`` split (synthetic anomalies:
``image``, ``mask`` and metadata columns) and the ``good`` split (anomaly-free sources: ``image``,
optionally ``source_id``). Accepted sources:

* a Hub repo id ``org/name`` (with ``revision`` = tag, branch or commit), via ``datasets.load_dataset``;
* a local build folder (parquet files ``data/test-*.parquet`` / ``data/good-*.parquet`` or anything
  else ``datasets.load_dataset(folder)`` understands);
* a folder written by ``DatasetDict.save_to_disk``.

Label columns may be ``ClassLabel`` (integers on disk) or plain strings; ``metadata_frame`` always
gives strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hub_tools.loading import load_dataset
from hub_tools.schema import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, decode_label

from detect.errors import DatasetLayoutError
from detect.images import pil_to_array

TEST_SPLIT = "test"
GOOD_SPLIT = "good"
#: metadata columns copied into ``scores.parquet`` when present (the schema's, minus images)
METADATA_COLUMNS = tuple(c for c in REQUIRED_COLUMNS if c not in ("image", "mask")) + OPTIONAL_COLUMNS


def load_dataset_dict(path_or_repo: str, revision: str | None = None):
    """A ``DatasetDict`` from a repo id, a local build folder or a ``save_to_disk`` folder."""
    import datasets

    local = Path(path_or_repo)
    if local.is_dir() and ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
        loaded = datasets.load_from_disk(str(local))
        if isinstance(loaded, datasets.Dataset):
            raise DatasetLayoutError(f"{local} holds a single Dataset; save a DatasetDict with splits test and good")
        return loaded
    if not local.exists() and "/" not in path_or_repo:
        raise DatasetLayoutError(
            f"{path_or_repo!r} is neither a local folder nor a Hub repo id (ORG/NAME)"
        )
    try:
        return load_dataset(str(path_or_repo), revision=revision)
    except OSError as exc:  # not found, no network, no access: the user must fix the name or revision
        raise DatasetLayoutError(
            f"cannot load dataset {path_or_repo!r} (revision {revision!r}): {type(exc).__name__}: {exc}"
        ) from None


def load_evaluation_splits(path_or_repo: str, revision: str | None = None):
    """``(test, good)`` ``datasets.Dataset`` splits, checked against the schema."""
    dd = load_dataset_dict(path_or_repo, revision)
    missing = [s for s in (TEST_SPLIT, GOOD_SPLIT) if s not in dd]
    if missing:
        raise DatasetLayoutError(
            f"dataset {path_or_repo} has splits {sorted(dd)}, missing {missing}; the evaluation needs "
            "'test' (synthetic anomalies) and 'good' (anomaly-free sources for the false-positive budget)"
        )
    test, good = dd[TEST_SPLIT], dd[GOOD_SPLIT]
    for split, name, needed in ((test, TEST_SPLIT, ("image", "mask")), (good, GOOD_SPLIT, ("image",))):
        absent = [c for c in needed if c not in split.column_names]
        if absent:
            raise DatasetLayoutError(f"split {name!r} of {path_or_repo} lacks column(s) {absent}")
    return test, good


def metadata_frame(split):
    """The split's metadata columns (no images) as a pandas DataFrame, labels as strings."""
    import pandas as pd
    from datasets import ClassLabel

    columns = [c for c in METADATA_COLUMNS if c in split.column_names]
    frame = split.select_columns(columns).to_pandas() if columns else pd.DataFrame(index=range(len(split)))
    for column in frame.columns:
        feature = split.features.get(column)
        if isinstance(feature, ClassLabel):
            frame[column] = [decode_label(feature, v) for v in frame[column]]
    return frame


def decode(value: Any) -> np.ndarray:
    """A dataset image cell (PIL image, dict with bytes/path, or array) as a numpy array.

    uint8 gray/RGB(A) stay as stored, 16-bit images stay uint16, palette and other modes RGB
    (``synth.decode_image``: a corrupt file or one above its pixel limit is an ``InvalidImageError``
    naming it, read from the header before any pixel is decoded).
    """
    from PIL import Image

    from synth.image import decode_image, load_image

    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return decode_image(value["bytes"], name=str(value.get("path") or "image"))
        if value.get("path"):
            return load_image(value["path"])
    if isinstance(value, Image.Image):
        return pil_to_array(value)
    raise DatasetLayoutError(f"cannot read an image from a cell of type {type(value).__name__}")
