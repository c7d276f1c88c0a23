"""What the project writes to disk, and how to recognise it so that it is never read back as input.

The project recognises its own folders by their marker files only, never by folder names that
users also use (``images/``, ``masks/``, ``data/``; a plain Hugging Face imagefolder has a
``metadata.jsonl`` too):

* a **generated folder** (``anomalyforge synth``, ``run_protocol``) is marked by ``config.json``
  with ``"tool": "anomalyforge"`` (written before any output) or by its resume log
  ``metadata.partial.jsonl``; it is complete once ``metadata.jsonl`` is written (last). Its
  outputs are the files under ``images/`` and ``masks/`` named as the protocol names outputs
  (``is_output_name``), so a user's own images in a folder of the same name stay inputs (the
  output folder may be the input folder). ``inputs.json`` holds the absolute path of the input
  folder (so that ``anomalyforge hub build`` finds the anomaly-free images again); ``sources/``
  holds materialised example inputs.
* a **build folder** (``anomalyforge hub build``) is marked by ``build.json`` with the same
  ``tool`` record (complete), or while in progress by a generated ``generated/`` folder or
  ``data/.partial/``; all of it is output: ``generated/``, ``data/``, ``card/``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .image import IMAGE_SUFFIXES

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
    if (root / PARTIAL).is_file() or _is_tool_record(root / CONFIG):
        return Layout("generated", (root / METADATA).is_file(), ())
    return None


#: ``synth.protocol.output_names``: the encoded source path (ending in its image suffix, or in a
#: hash when shortened), ``_k<k>_``, the shape or method, mode and bin parts, ``.png``
_OUTPUT_NAME = re.compile(
    r"^[A-Za-z0-9._~-]*(?:(?i:" + "|".join(re.escape(s) for s in IMAGE_SUFFIXES) + r")|~h[0-9a-f]{16}~)"
    r"_k[0-9]+_[A-Za-z0-9_]+\.png$"
)


def is_output_name(name: str) -> bool:
    """True when ``name`` is a file name the folder protocol gives an output (image or mask)."""
    return _OUTPUT_NAME.match(name) is not None


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
    its resume log, never by ``metadata.jsonl`` alone (any imagefolder has one); it is ``complete`` once ``metadata.jsonl`` exists (a run removes it when it
    starts and writes it last). A build folder is recognised by ``build.json`` (complete), or while
    in progress by a ``generated/`` generated folder or ``data/.partial/``. A finished build wins
    over a generated folder, which wins over a build in progress.
    """
    root = Path(folder)
    build = _build(root)
    if build is not None and build.complete:
        return build
    return _generated(root) or build


def output_folders(folder: str | os.PathLike) -> tuple[Path, ...]:
    """Sub-folders of ``folder`` that hold only the project's outputs: those of a build folder.

    Empty for an ordinary folder and for a generated folder, whose ``images/`` and ``masks/``
    may also hold a user's own images when the output folder is the input folder
    (``is_generated_output`` tells its outputs apart).
    """
    layout = _build(Path(folder))
    return () if layout is None else layout.outputs


def is_generated_output(path: str | os.PathLike) -> bool:
    """True when the file ``path`` is an output of the generated folder it lies in
    (``<generated folder>/images/<output name>`` or ``.../masks/<output name>``)."""
    path = Path(path)
    return (path.parent.name in GENERATED_OUTPUTS and is_output_name(path.name)
            and _generated(path.parent.parent) is not None)
