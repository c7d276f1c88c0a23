"""The bounded work area: per-session folders, their timed expiry and the disk budget."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import uuid
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from synth.image import save_png


class WorkArea:
    """Per-session folders for the files a click writes, with bounded disk use.

    Layout: ``root/<session>/<tab>-<id>/``. A click replaces the previous folder of the same tab
    and session (the page shows only the newest results) unless that click is still writing in it
    (two events of one page can run at once; the next click removes it), a closed tab removes its session's
    folders (``Blocks.unload``), sessions untouched for ``ttl_s`` are removed by a timer that
    checks every ``expiry_period(ttl_s)`` seconds (also for a client that never clicks again or
    never closes its page), and while all folders together exceed ``budget`` bytes the least
    recently used sessions are removed first. ``root/examples`` holds the example textures and
    is never removed.
    """

    def __init__(self, root: Path, budget: int, ttl_s: int) -> None:
        self.root, self.budget, self.ttl_s = Path(root), int(budget), int(ttl_s)
        self._lock = threading.Lock()
        self._writing: set[Path] = set()  # folders of the clicks still running
        _start_expiry_timer(self)

    @contextmanager
    def folder(self, session: str | None, tab: str) -> Iterator[Path]:
        """A fresh empty folder for one click of ``tab`` in ``session``, written in the ``with``
        block; the session's older folders of ``tab`` go, but for those still being written."""
        session_dir = self.root / session_name(session)
        with self._lock:
            for old in session_dir.glob(f"{tab}-*"):
                if old not in self._writing:
                    shutil.rmtree(old, ignore_errors=True)
            self._expire(keep=session_dir)
            folder = session_dir / f"{tab}-{uuid.uuid4().hex[:12]}"
            folder.mkdir(parents=True)
            os.utime(session_dir)
            self._writing.add(folder)
        try:
            yield folder
        finally:
            with self._lock:
                self._writing.discard(folder)

    def release(self, session: str | None) -> None:
        """Remove every file of ``session`` (its browser tab closed)."""
        with self._lock:
            shutil.rmtree(self.root / session_name(session), ignore_errors=True)

    def expire(self) -> None:
        """Remove the sessions untouched for ``ttl_s`` now (the budget is kept by the clicks,
        which are what adds files)."""
        with self._lock:
            self._drop_expired(keep=None)

    def usage(self) -> int:
        """Bytes under the root, example textures included."""
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())

    def _expire(self, keep: Path) -> None:
        """Drop expired sessions, then the least recently used ones while over the budget (never ``keep``)."""
        sessions = self._drop_expired(keep)
        total = self.usage()
        for _, path in sorted(sessions):
            if total <= self.budget:
                break
            if path == keep or self._busy(path):
                continue
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            shutil.rmtree(path, ignore_errors=True)
            total -= size

    def _drop_expired(self, keep: Path | None) -> list[tuple[float, Path]]:
        """Remove the sessions (but ``keep`` and those being written) untouched for ``ttl_s``; return ``(mtime, path)`` of the rest."""
        now = time.time()
        sessions = []
        for path in self.root.glob("s-*"):
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue  # removed meanwhile
            if path != keep and not self._busy(path) and now - mtime > self.ttl_s:
                shutil.rmtree(path, ignore_errors=True)
            else:
                sessions.append((mtime, path))
        return sessions

    def _busy(self, session_dir: Path) -> bool:
        """Whether a click of this session is writing now (its files are not removed under it)."""
        return any(folder.parent == session_dir for folder in self._writing)


def expiry_period(ttl_s: int) -> int:
    """Seconds between two expiry checks: a session's files outlive ``ttl_s`` by at most this."""
    return min(60, max(1, ttl_s // 4))


def _start_expiry_timer(work: WorkArea) -> None:
    """Run ``work.expire()`` every ``expiry_period`` seconds in a daemon thread, for as long as
    ``work`` is in use (the thread holds it weakly and ends once it is gone)."""
    ref, period = weakref.ref(work), expiry_period(work.ttl_s)

    def loop() -> None:
        while True:
            time.sleep(period)
            area = ref()
            if area is None:
                return
            area.expire()
            del area

    threading.Thread(target=loop, name="work-area-expiry", daemon=True).start()


def session_name(session: str | None) -> str:
    # gradio's session hashes are short alphanumerics; anything else is hashed to stay a plain name
    text = session or "anonymous"
    return "s-" + (text if text.isalnum() and len(text) <= 64 else hashlib.sha256(text.encode()).hexdigest()[:24])


def save_view(folder: Path, name: str, image: np.ndarray) -> str:
    path = folder / name
    save_png(path, image)
    return str(path)


