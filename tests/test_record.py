"""One record everywhere: an anomaly's columns are the same in memory, in metadata.jsonl, in the
published features and in the app's parquet download, and labels survive the trip through ClassLabel."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import skimage.data

from hub_tools.errors import BuildError
from hub_tools.schema import REQUIRED_COLUMNS, dataset_features, decode_labels, encode_record
from synth import synthesize
from synth.export import export_parquet, export_rows
from synth.record import FILE_COLUMNS, RECORD_NAMES, make_record


@pytest.fixture(scope="module")
def anomaly():
    return synthesize(skimage.data.brick()[:128, :128], "synagen", seed=3, shape="rough", mode="gray_noise",
                      size_bin="2.5-15%")


def test_every_carrier_has_the_record_columns_in_the_record_order(anomaly, tmp_path):
    assert tuple(anomaly.record) == RECORD_NAMES
    row = export_rows([anomaly], "brick.png")[0]
    assert tuple(row) == FILE_COLUMNS + RECORD_NAMES
    assert tuple(dataset_features()) == ("image", "mask", "source_id", "file_name", *RECORD_NAMES)
    table = pq.read_table(export_parquet([anomaly], tmp_path / "a.parquet", "brick.png"))
    assert tuple(table.column_names) == ("image", "mask", "source_id", "file_name", *RECORD_NAMES)
    assert set(REQUIRED_COLUMNS) <= set(dataset_features())


def test_labels_round_trip_through_the_published_class_labels(anomaly):
    features = dataset_features()
    stored = encode_record(anomaly.record, features, "test")
    assert all(isinstance(stored[c], int) for c in ("method", "shape", "mode", "size_bin"))
    assert decode_labels(stored, features) == {**anomaly.record, "bbox": list(anomaly.record["bbox"])}


@pytest.mark.parametrize("label", ["spiky", " rough", "1"])
def test_a_label_outside_the_vocabulary_is_refused_not_guessed(anomaly, label):
    # ClassLabel.str2int alone would strip " rough" and read "1" as an index
    with pytest.raises(BuildError, match="is not in the published vocabulary"):
        encode_record({**anomaly.record, "shape": label}, dataset_features(), "row 1")


def test_a_record_that_drifted_from_the_columns_is_refused(anomaly):
    with pytest.raises(ValueError, match=r"missing \['params'\], unknown \['extra'\]"):
        make_record(**{k: v for k, v in anomaly.record.items() if k != "params"}, extra=1)
