"""``datasets.load_dataset`` for local folders without stale caches.

datasets keys its Arrow cache of a local folder by the folder's *name* and its data-file patterns,
not by the files' contents: a build folder rebuilt in place, or another folder with the same name
elsewhere (every ``build/``), is silently served from the old cache. For local data this module
gives the cache a folder of its own, named by a fingerprint of the data files (absolute path,
size and modification time of each), so unchanged data is still read from the cache and changed
data never is. Remote (Hub) loads are untouched: they are pinned by commit already.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable


def _files_under(folder: Path) -> Iterable[Path]:
    for path in folder.rglob("*"):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            yield path


def _local_files(path: str, data_files: Any, data_dir: str | None) -> list[Path] | None:
    if data_dir is not None and Path(data_dir).is_dir():
        return list(_files_under(Path(data_dir)))
    if data_files is not None:
        flat: list[str] = []
        for value in (data_files.values() if isinstance(data_files, dict) else [data_files]):
            flat.extend([value] if isinstance(value, (str, os.PathLike)) else list(value))
        paths = [Path(p) for p in flat]
        return paths if paths and all(p.is_file() for p in paths) else None
    if Path(path).is_dir():
        return list(_files_under(Path(path)))
    return None


def fingerprint(files: Iterable[Path]) -> str:
    """Hex digest of the files' absolute paths, sizes and modification times."""
    digest = hashlib.sha256()
    for path in sorted(Path(f).resolve() for f in files):
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def load_dataset(path: str, *args: Any, data_files: Any = None, data_dir: str | None = None, **kwargs: Any):
    """``datasets.load_dataset`` with the same arguments; local data gets a content-keyed cache."""
    import datasets

    local = _local_files(str(path), data_files, data_dir)
    if local is not None and kwargs.get("cache_dir") is None:
        kwargs["cache_dir"] = str(Path(datasets.config.HF_DATASETS_CACHE) / "anomalyforge-local" / fingerprint(local))
    return datasets.load_dataset(str(path), *args, data_files=data_files, data_dir=data_dir, **kwargs)
