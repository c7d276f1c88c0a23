"""Local dataset folders load their current contents, never a stale cache of an older build."""

from __future__ import annotations

import datasets
import pytest

from hub_tools.loading import load_dataset

CARD = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: test\n    path: data/test-*.parquet\n---\n"


def _write(folder, values):
    (folder / "data").mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict({"x": values}).to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))
    (folder / "README.md").write_text(CARD)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    return tmp_path / "cache"


def test_a_folder_rebuilt_in_place_loads_its_new_rows(tmp_path, cache):
    build = tmp_path / "one" / "build"
    _write(build, [1, 2])
    assert load_dataset(str(build))["test"]["x"] == [1, 2]
    _write(build, [3])
    assert load_dataset(str(build))["test"]["x"] == [3]


def test_two_folders_with_the_same_name_do_not_share_a_cache(tmp_path, cache):
    _write(tmp_path / "a" / "build", [1])
    _write(tmp_path / "b" / "build", [2])
    assert load_dataset(str(tmp_path / "a" / "build"))["test"]["x"] == [1]
    assert load_dataset(str(tmp_path / "b" / "build"))["test"]["x"] == [2]


def test_parquet_data_files_are_keyed_by_content_too(tmp_path, cache):
    _write(tmp_path / "s", [5, 6])
    files = {"test": [str(tmp_path / "s" / "data" / "test-00000-of-00001.parquet")]}
    assert load_dataset("parquet", data_files=files)["test"]["x"] == [5, 6]
    _write(tmp_path / "s", [7])
    assert load_dataset("parquet", data_files=files)["test"]["x"] == [7]
