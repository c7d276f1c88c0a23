"""The published dataset's ``Features`` (see the schema contract), declared once and reused.

Every split of the ``default`` config shares these features: ``test`` holds the synthetic
anomalies, ``good`` the anomaly-free sources (all-zero ``mask``, null method/shape/mode/size_bin),
so that ``datasets.load_dataset`` reads both as one ``DatasetDict``.
"""

from __future__ import annotations

from typing import Sequence

from datasets import ClassLabel, Features, Image, List, Value

from synth.sizebins import DEFAULT_BINS, SizeBin
from synth.vocabulary import METHOD_NAMES, MODE_NAMES, SHAPE_NAMES

#: split names of the published dataset
TEST_SPLIT = "test"
GOOD_SPLIT = "good"
SPLITS = (TEST_SPLIT, GOOD_SPLIT)

#: columns that carry one label of a closed vocabulary
LABEL_COLUMNS = ("method", "shape", "mode", "size_bin")


def size_bin_names(bins: Sequence[SizeBin] = DEFAULT_BINS, extra: Sequence[str] = ()) -> list[str]:
    """ClassLabel names of ``size_bin``: ``"<LOW%"``, the bins low to high, ``">=HIGH%"``, extras.

    The two out-of-range names match ``synth.anomaly.size_bin_name`` for measured areas below the
    lowest or above the highest bin. ``extra`` names (bins requested outside the configured set)
    are appended in sorted order so the indices of the configured bins never move.
    """
    ordered = sorted(bins, key=lambda b: (b.low, b.high))
    if not ordered:
        raise ValueError("at least one size bin is needed")
    lowest, highest = ordered[0], ordered[-1]
    names = [f"<{lowest.name.split('-')[0]}%"] + [b.name for b in ordered]
    names.append(f">={highest.name.split('-')[1]}")
    for name in sorted(set(extra) - set(names)):
        names.append(name)
    return names


def dataset_features(
    bins: Sequence[SizeBin] = DEFAULT_BINS,
    include_diff: bool = False,
    extra_size_bins: Sequence[str] = (),
) -> Features:
    """The ``Features`` of every split (column order is the order written to parquet)."""
    columns: dict = {
        "image": Image(),
        "mask": Image(mode="L"),
    }
    if include_diff:
        columns["diff"] = Image(mode="L")
    columns.update(
        {
            "source_id": Value("string"),
            "method": ClassLabel(names=list(METHOD_NAMES)),
            "shape": ClassLabel(names=list(SHAPE_NAMES)),
            "mode": ClassLabel(names=list(MODE_NAMES)),
            "size_bin": ClassLabel(names=size_bin_names(bins, extra_size_bins)),
            "area_fraction": Value("float32"),
            "brightness_delta": Value("float32"),
            "background_brightness": Value("float32"),
            "bbox": List(Value("int32"), length=4),
            "angle": Value("float32"),
            "seed": Value("int64"),
            "params": Value("string"),
        }
    )
    return Features(columns)


#: columns every published dataset must have (the contract; more may be added)
REQUIRED_COLUMNS = (
    "image",
    "mask",
    "source_id",
    "method",
    "shape",
    "mode",
    "size_bin",
    "area_fraction",
    "brightness_delta",
    "background_brightness",
    "bbox",
    "seed",
    "params",
)
