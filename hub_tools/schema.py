"""The published dataset's ``Features`` (see the schema contract), derived from ``synth.record``.

Every split of the ``default`` config shares these features: ``test`` holds the synthetic
anomalies, ``good`` the anomaly-free sources (all-zero ``mask``, null method/shape/mode/size_bin),
so that ``datasets.load_dataset`` reads both as one ``DatasetDict``. The record columns, their
order and their kinds come from ``synth.record.RECORD_COLUMNS``; label columns become
``ClassLabel``s, and ``encode_record``/``decode_labels`` convert between names and their indices
through ``ClassLabel.str2int``/``int2str``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from synth.record import LABEL_NAMES, RECORD_COLUMNS, Column
from synth.sizebins import DEFAULT_BINS, SizeBin, require_bins
from synth.vocabulary import METHOD_NAMES, MODE_NAMES, SHAPE_NAMES

from .errors import BuildError

if TYPE_CHECKING:  # datasets is imported by the functions that build or read features (slow to import)
    from datasets import ClassLabel, Features

#: split names of the published dataset
TEST_SPLIT = "test"
GOOD_SPLIT = "good"
SPLITS = (TEST_SPLIT, GOOD_SPLIT)

#: columns that carry one label of a closed vocabulary
LABEL_COLUMNS = LABEL_NAMES
#: the append-only vocabularies of the label columns other than ``size_bin`` (which depends on the bins)
VOCABULARIES: dict[str, Sequence[str]] = {"method": METHOD_NAMES, "shape": SHAPE_NAMES, "mode": MODE_NAMES}


def size_bin_names(bins: Sequence[SizeBin] = DEFAULT_BINS, extra: Sequence[str] = ()) -> list[str]:
    """ClassLabel names of ``size_bin``: ``"<LOW%"``, the bins low to high, ``">=HIGH%"``, extras.

    The two out-of-range names match ``synth.anomaly.size_bin_name`` for measured areas below the
    lowest or above the highest bin. ``extra`` names (bins requested outside the configured set)
    are appended in sorted order so the indices of the configured bins never move.
    """
    ordered = sorted(require_bins(bins), key=lambda b: (b.low, b.high))
    lowest, highest = ordered[0], ordered[-1]
    names = [f"<{lowest.name.split('-')[0]}%"] + [b.name for b in ordered]
    names.append(f">={highest.name.split('-')[1]}")
    for name in sorted(set(extra) - set(names)):
        names.append(name)
    return names


def _feature(column: Column, size_bins: list[str]) -> Any:
    from datasets import ClassLabel, List, Value

    if column.kind == "label":
        return ClassLabel(names=size_bins if column.name == "size_bin" else list(VOCABULARIES[column.name]))
    if column.kind == "bbox":
        return List(Value("int32"), length=4)
    return Value(column.kind)


def dataset_features(
    bins: Sequence[SizeBin] = DEFAULT_BINS,
    include_diff: bool = False,
    extra_size_bins: Sequence[str] = (),
) -> Features:
    """The ``Features`` of every split (column order is the order written to parquet)."""
    from datasets import Features, Image, Value

    columns: dict = {
        "image": Image(),
        "mask": Image(mode="L"),
    }
    if include_diff:
        columns["diff"] = Image(mode="L")
    columns["source_id"] = Value("string")
    # maps a row back to its file: the image in the generated folder (test) or the source (good)
    columns["file_name"] = Value("string")
    size_bins = size_bin_names(bins, extra_size_bins)
    columns.update((column.name, _feature(column, size_bins)) for column in RECORD_COLUMNS)
    return Features(columns)


def encode_record(record: Mapping[str, Any], features: Features, where: str) -> dict[str, Any]:
    """The record columns of one row as stored: label names as ``ClassLabel`` indices, ``bbox`` as
    ints; a missing column is null. ``BuildError`` for a name outside a label's vocabulary."""
    out: dict[str, Any] = {}
    for column in RECORD_COLUMNS:
        value = record.get(column.name)
        if value is not None and column.kind == "label":
            feature = features[column.name]
            # exact names only: str2int would also take " rough" or "3" (an index) for a label
            if not isinstance(value, str) or value not in feature.names:
                raise BuildError(
                    f"{where}: {column.name} {value!r} is not in the published vocabulary "
                    f"({', '.join(feature.names)}); add it to synth.vocabulary first"
                )
            value = feature.str2int(value)
        elif value is not None and column.kind == "bbox":
            value = [int(v) for v in value]
        out[column.name] = value
    return out


def decode_label(feature: ClassLabel, value: Any) -> Any:
    """The name of a stored ``ClassLabel`` index; ``None`` for null, NaN (pandas' null) or -1; a
    name (a dataset with plain string labels) is returned as it is."""
    if value is None or isinstance(value, str):
        return value
    if value != value or int(value) < 0:  # NaN != NaN
        return None
    return feature.int2str(int(value))


def decode_labels(row: Mapping[str, Any], features: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with the value of each ``ClassLabel`` column replaced by its name (``decode_label``)."""
    from datasets import ClassLabel

    return {name: decode_label(features[name], value) if isinstance(features.get(name), ClassLabel) else value
            for name, value in row.items()}


#: columns every published dataset must have (the contract; more may be added)
REQUIRED_COLUMNS = ("image", "mask", "source_id") + tuple(c.name for c in RECORD_COLUMNS if c.required)
#: record columns a published dataset may lack (written by this version, absent from older ones)
OPTIONAL_COLUMNS = tuple(c.name for c in RECORD_COLUMNS if not c.required)
