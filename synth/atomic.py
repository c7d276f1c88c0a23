"""Every file the project writes goes through here: complete or absent, never half written.

A file is written to a temporary name in its own folder (``.<name>.<pid>.tmp``: hidden, so never
listed as an input), flushed to disk (``fsync``) and renamed over its final name (``os.replace``,
atomic on one file system). A write that fails (a full disk, an exception of the writer) removes
its temporary; one cut short by a kill leaves it behind, and ``remove_temporaries`` -- run by the
next process that claims the folder (``synth.run_lock.claimed_folder``) -- removes it.

Bulk outputs whose every byte a resume checks anyway (the protocol's PNGs, logged with their size
and CRC-32) skip the per-file ``fsync`` (``durable=False``, about 5 ms a file on a virtual disk);
``flush_to_disk`` then makes them durable at once before the folder's completion marker.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

#: the temporary names ``atomic_path`` makes, and only those (``remove_temporaries`` matches them)
_TEMPORARY = re.compile(r"^\..+\.\d+\.tmp$")


def temporary_name(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place (same folder, this process)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through; on success it replaces ``path``.

    For writers that want a path (parquet, matplotlib, torch, pandas). The folder is created when
    missing; when the block raises, the temporary is removed and ``path`` is left as it was.
    ``durable``: the content is on disk before the rename (else see ``flush_to_disk``).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    except OSError as exc:  # a full disk, a file-size limit: say which file could not be written
        tmp.unlink(missing_ok=True)
        if exc.filename is None:
            raise OSError(exc.errno, f"cannot write {final}: {exc.strerror}") from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` so that ``path`` is either absent (or its old content) or complete."""
    with atomic_path(path, durable=durable) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """``write_atomic`` of UTF-8 text."""
    write_atomic(path, text.encode("utf-8"))


def flush_to_disk() -> None:
    """Put everything written so far on disk: the one sync before a completion marker."""
    if hasattr(os, "sync"):
        os.sync()


def remove_temporaries(folders: Iterable[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """Remove the temporaries that interrupted writes left in ``folders``; return them.

    Only names ``atomic_path`` makes are touched, directly in each folder or, with ``recursive``,
    anywhere below it. Call it only while owning the folders (no other process writes there).
    """
    removed = []
    for folder in map(Path, folders):
        for here, dirs, files in os.walk(folder):
            if not recursive:
                dirs.clear()
            for name in files:
                if _TEMPORARY.match(name):
                    (Path(here) / name).unlink(missing_ok=True)
                    removed.append(Path(here) / name)
    return removed
