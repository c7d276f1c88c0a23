"""Every file the project writes goes through here: complete or absent, never half written.

A file is written to a temporary name in its own folder (``.<name>.<pid>.tmp``: hidden, so never
listed as an input), flushed to disk (``fsync``) and renamed over its final name (``os.replace``,
atomic on one file system). A write that fails (a full disk, an exception of the writer) removes
its temporary; one cut short by a kill leaves it behind, and ``remove_temporaries`` -- run by the
next process that claims the folder (``synth.run_lock.claimed_folder``) -- removes it.

A folder another library writes in one go (``datasets``' ``save_to_disk``) is written the same way
(``atomic_folder``): into ``.<name>.<pid>.partial`` beside it, renamed into place once complete. A
failure removes that folder; one left by a kill is removed by the next ``atomic_folder`` for the
same name once its process is gone.

Bulk outputs whose every byte a resume checks anyway (the protocol's PNGs, logged with their size
and CRC-32) skip the per-file ``fsync`` (``durable=False``, about 5 ms a file on a virtual disk);
``flush_to_disk`` then makes them durable at once before the folder's completion marker.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

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


def save_figure_atomic(figure: Any, path: str | os.PathLike, **savefig_options: Any) -> Path:
    """``figure.savefig`` (matplotlib) through a temporary, so the image file is whole or absent.

    The format is taken from ``path``'s suffix (``.png``, ``.svg``, ...): the temporary's name ends
    in ``.tmp``, from which matplotlib could not tell it.
    """
    final = Path(path)
    with atomic_path(final) as tmp:
        figure.savefig(tmp, format=final.suffix[1:], **savefig_options)
    return final


def partial_folder_name(path: Path) -> Path:
    """Where ``atomic_folder`` writes ``path`` before renaming it (same parent, this process)."""
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder to write the folder ``path`` into; on success it becomes ``path``.

    ``path`` must not exist (``FileExistsError`` when it appears meanwhile). When the block raises,
    the temporary folder is removed and ``path`` stays absent. The files are put on disk
    (``flush_to_disk``) before the rename. Partial folders of processes that no longer run (a kill)
    for the same ``path`` are removed first.
    """
    final = Path(path).absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_folders(final)
    tmp = partial_folder_name(final)
    shutil.rmtree(tmp, ignore_errors=True)  # this pid's own, from a process that died before it
    tmp.mkdir(parents=True)
    try:
        yield tmp
        flush_to_disk()
        if final.exists() or final.is_symlink():
            raise FileExistsError(f"{final} appeared while it was being written; its new content was not put there")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_abandoned_folders(path: Path) -> list[Path]:
    """Remove the partial folders of ``path`` (``.<name>.<pid>.partial``) whose process is gone; return them."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.partial$")
    with os.scandir(path.parent) as entries:
        found = {Path(e.path): int(m.group(1)) for e in entries if (m := pattern.match(e.name))}
    removed = [folder for folder, pid in found.items() if not _running(pid)]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists (a reused pid counts: its folder is then kept, never lost)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
