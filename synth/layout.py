"""What the project writes to disk, and how to recognise it so that it is never read back as input.

Two layouts exist:

* a **generated folder** (``anomalyforge synth``, ``run_protocol``): ``config.json`` (written
  before any output), ``inputs.json`` (the absolute path of the input folder, so that
  ``anomalyforge hub build`` finds the anomaly-free images again), ``images/``, ``masks/``,
  ``metadata.partial.jsonl`` while running, and ``metadata.jsonl`` once finished; ``sources/``
  holds materialised example inputs.
* a **build folder** (``anomalyforge hub build``): ``generated/`` (a generated folder),
  ``data/`` (parquet shards, ``data/.partial/`` while running), ``card/`` and ``build.json``.

``generated_parts(folder)`` names the sub-folders of either layout that hold outputs; folder
listings skip them, whatever state (finished, interrupted) the layout is in.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

METADATA = "metadata.jsonl"
PARTIAL = "metadata.partial.jsonl"
FAILURES = "failures.jsonl"
CONFIG = "config.json"
#: where a generated folder's input images were read from: ``{"input_dir": ABSOLUTE_PATH}``
INPUTS = "inputs.json"
#: the record a generated folder's ``config.json`` carries in its ``tool`` field
TOOL = "anomalyforge"

#: output sub-folders of a generated folder (``sources/`` holds inputs, so it is not listed)
GENERATED_OUTPUTS = ("images", "masks")
#: output sub-folders of a build folder
BUILD_OUTPUTS = ("generated", "data", "card")
BUILD_RECORD = "build.json"


@dataclass(frozen=True)
class Layout:
    """A folder written by the project: which kind, whether it finished, and its output parts."""

    kind: Literal["generated", "build"]
    complete: bool
    outputs: tuple[Path, ...]


def _is_tool_record(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("tool") == TOOL
    except (OSError, ValueError, AttributeError):
        return False


def _generated(root: Path) -> Layout | None:
    metadata = (root / METADATA).is_file()
    if metadata or (root / PARTIAL).is_file() or _is_tool_record(root / CONFIG):
        return Layout("generated", metadata, tuple(root / p for p in GENERATED_OUTPUTS))
    return None


def _build(root: Path) -> Layout | None:
    if (root / BUILD_RECORD).is_file() and _is_tool_record(root / BUILD_RECORD):
        return Layout("build", True, tuple(root / p for p in BUILD_OUTPUTS))
    generated = root / "generated"
    if (generated.is_dir() and _generated(generated) is not None) or (root / "data" / ".partial").is_dir():
        return Layout("build", False, tuple(root / p for p in BUILD_OUTPUTS))
    return None


def folder_layout(folder: str | os.PathLike) -> Layout | None:
    """The project layout ``folder`` holds, or ``None`` for an ordinary folder.

    A generated folder is recognised by its ``config.json`` record (written before any output) or
    its metadata files; it is ``complete`` once ``metadata.jsonl`` exists (a run removes it when it
    starts and writes it last). A build folder is recognised by ``build.json`` (complete), or while
    in progress by a ``generated/`` generated folder or ``data/.partial/``. A finished build wins
    over a generated folder, which wins over a build in progress.
    """
    root = Path(folder)
    build = _build(root)
    if build is not None and build.complete:
        return build
    return _generated(root) or build


def generated_parts(folder: str | os.PathLike) -> tuple[Path, ...]:
    """Sub-folders of ``folder`` that hold the project's outputs (empty for an ordinary folder).

    A folder can hold both layouts (a generated folder used as the input of a build inside it);
    the outputs of both are listed.
    """
    root = Path(folder)
    parts: list[Path] = []
    for layout in (_generated(root), _build(root)):
        if layout is not None:
            parts += layout.outputs
    return tuple(parts)
