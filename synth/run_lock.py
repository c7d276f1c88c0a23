"""A run owns its output folder: two runs never write into one folder at the same time.

``claimed_folder(folder)`` holds an exclusive lock on ``folder/.anomalyforge.lock`` for the whole
run (``fcntl.flock``; the file records pid, host and start time for the error message). A second
run into the folder stops at once with ``FolderInUseError``: "output folder X is in use by pid N
on HOST (started ...)". The operating system drops the lock when its process ends, however it
ends, so a folder left by a killed run (SIGKILL, power loss) is claimed again without any
clean-up by hand. The processes of one launch that share a folder by design (``accelerate
launch``: one shard each) claim it ``shared``; a run without shards then needs it alone.

Claiming a folder also removes the temporaries interrupted writes left in it
(``synth.atomic.remove_temporaries``): only its owner may, since no one else writes there.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from .atomic import remove_temporaries
from .errors import SynthError

try:
    import fcntl
except ImportError:  # Windows: msvcrt's byte-range lock gives the exclusive claim
    fcntl = None
    import msvcrt

LOCK_NAME = ".anomalyforge.lock"
#: how long a refused run waits for the holder's record to appear (the holder writes it right
#: after taking the lock)
_RECORD_WAIT_S = 1.0


class OutputFolderError(SynthError):
    """The output folder cannot be used: not creatable, not writable, or held by another run."""


class FolderInUseError(OutputFolderError):
    """Another run is writing into the output folder."""


def _try_lock(fd: int, shared: bool) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # BlockingIOError on POSIX, PermissionError on Windows
        return False
    return True


def _holder(path: Path) -> str:
    """Who holds the lock, in words, from the record the holder wrote."""
    deadline = time.monotonic() + _RECORD_WAIT_S
    while True:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            return f"pid {record['pid']} on {record['host']} (started {record['started']})"
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() > deadline:
                return "another run"
            time.sleep(0.02)


def _record() -> bytes:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode()


def _open_locked(path: Path, shared: bool) -> int:
    """An open descriptor of the lock file at ``path``, locked; ``FolderInUseError`` when held."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd, shared):
            os.close(fd)
            raise FolderInUseError(
                f"output folder {path.parent} is in use by {_holder(path)}; wait for that run to end "
                "or choose another output folder"
            )
        try:  # the previous owner may have removed the file between our open and our lock
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def claimed_folder(folder: str | os.PathLike, parts: Sequence[str] = (), *, shared: bool = False,
                   recursive: bool = False) -> Iterator[Path]:
    """Own ``folder`` (created when missing) until the block ends; yield it.

    Raises ``FolderInUseError`` when another run holds it. On entry, the temporaries of
    interrupted writes are removed from ``folder`` and its sub-folders ``parts`` (with
    ``recursive``, from everything below ``folder``). ``shared``: claimed together with the other
    processes of one launch, each writing its own files.
    """
    root = Path(folder)
    path = root / LOCK_NAME
    created = _missing_folders(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = _open_locked(path, shared)
    except FolderInUseError:
        raise
    except OSError as exc:  # a file in the way, no permission, a read-only file system
        raise OutputFolderError(f"cannot write into output folder {root}: {exc.strerror or exc}") from None
    try:
        record = _record()  # written whole, then cut to its length: never empty for a reader
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, record)
        os.ftruncate(fd, len(record))
        if not shared:
            remove_temporaries([root, *(root / p for p in parts)], recursive=recursive)
        yield root
    finally:
        if not shared:  # removed while still locked, so no one can lock the removed file
            _remove(path)
            _remove_if_empty(created)  # a run that stopped before writing leaves no empty folder
        os.close(fd)


def _missing_folders(root: Path) -> list[Path]:
    """``root`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for folder in (root, *root.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    return missing


def _remove_if_empty(folders: Sequence[Path]) -> None:
    """Remove the folders this run created (deepest first) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (the run wrote something), or gone
            return


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except PermissionError:  # Windows keeps open files; the next run locks the file as it is
        pass
