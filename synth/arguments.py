"""Checked numbers for command-line options: argparse ``type=`` functions of every command.

A count of 0 or a negative size is refused while the command line is parsed, before any work, with
argparse's usual one-line message and exit status 2: ``argument --shard-mb: must be an integer
>= 1, got '0'``.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable


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
