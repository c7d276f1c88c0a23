"""Checked command-line values: argparse ``type=`` functions for numbers, and output checks.

A count of 0 or a negative size is refused while the command line is parsed, before any work, with
argparse's usual one-line message and exit status 2: ``argument --shard-mb: must be an integer
>= 1, got '0'``. ``writable_folder`` / ``new_path`` check where a command will write before it
starts its work.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import InvalidParameterError


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in ``[low, high]`` (``None``: unbounded on that side)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer{_range(low, high)}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer{_range(low, high)}, got {text!r}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def parse(text: str) -> float:
        what = f"must be a number{_range(low, high, low_open)}, got {text!r}"
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(what) from None
        too_low = low is not None and (value <= low if low_open else value < low)
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(what)
        return value

    parse.__name__ = "number"
    return parse


def _range(low: float | None, high: float | None, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" <= {high:g}"
    return ""


#: the common cases
positive = integer(1)
non_negative = integer(0)
#: seeds: what ``numpy.random.default_rng`` and the task-seed hash accept
seed = integer(0, 2**63 - 1)


def writable_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` as a folder this process can write into, made when missing; checked before a long
    run so that it does not fail at its end. Raises ``InvalidParameterError`` naming ``what`` and
    the reason: a file in the way, a read-only file system, no permission, a kernel pseudo-file
    system such as ``/proc``."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InvalidParameterError(f"{what} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # a real file written and removed: access() says yes to root on read-only mounts and /proc
        descriptor, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as exc:
        raise InvalidParameterError(f"{what} {folder} is not writable ({exc.strerror or exc})") from None
    return folder


def new_path(path: str | os.PathLike, what: str) -> Path:
    """``path`` where a command will create a folder, refused up front when something is already
    there (it would be overwritten or mixed with what is there) or its parent is not writable."""
    target = Path(path)
    if target.exists() or target.is_symlink():
        kind = "folder" if target.is_dir() else "file"
        raise InvalidParameterError(f"{what} {target} exists (a {kind}); give a path that does not exist yet")
    writable_folder(target.parent if str(target.parent) else ".", f"the folder of {what}")
    return target
