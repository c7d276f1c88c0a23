"""The Space's limits and ``SpaceConfig``, its settings read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping


#: largest upload gradio accepts (``launch(max_file_size=...)``); bigger files are refused on upload
MAX_FILE_SIZE = "20mb"
MAX_FILE_BYTES = 20 * 1024 * 1024
#: largest image in pixels (4096 x 4096); checked from the header before any pixel is decoded
MAX_UPLOAD_PIXELS = 4096 * 4096
#: smallest side in pixels: the smallest size bin (0.02 %) needs whole pixels, detectors need 32
MIN_SIDE = 32
#: anomalies per Generate click
MAX_COUNT = 16
#: images per Detect click (fit + test)
MAX_DETECT_IMAGES = 40
#: longer side of the previews shown in the browser (downloads keep full size)
PREVIEW_SIDE = 768
#: the parquet download repeats the zip's images; above this zip size only the zip is offered
PARQUET_MAX_BYTES = 64 * 1024 * 1024

RANDOM = "random"
DETECTORS = ("patchcore", "padim")
#: an uploaded detector: ONNX only (loading it runs no code), at most this big, scored within this time per run
MODEL_SUFFIX = ".onnx"
MAX_MODEL_BYTES = 20 * 1024 * 1024
MODEL_TIME_LIMIT_S = 120


@dataclass(frozen=True)
class SpaceConfig:
    """Settings of one running app. ``from_environment`` reads them once, at start.

    ``work_root``     where per-click files go (``None``: a folder inside gradio's own cache, so
                      gradio serves them without a second copy).
    ``disk_budget``   bytes all sessions' files may take together; the oldest go first.
    ``work_ttl_s``    seconds a session's files are kept after its last click.
    ``on_space``      running on a Hugging Face Space: offers "Sign in with Hugging Face".
    """

    concurrency: int = 2
    queue_size: int = 64
    dataset: str = ""
    detect_size: int = 256
    work_root: Path | None = None
    disk_budget: int = 2 * 1024**3
    work_ttl_s: int = 900
    on_space: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "SpaceConfig":
        """``ANOMALYFORGE_CONCURRENCY``, ``_QUEUE_SIZE``, ``_DATASET``, ``_DETECT_SIZE``,
        ``_WORK_DIR``, ``_DISK_BUDGET_MB``, ``_WORK_TTL_S``; ``SPACE_ID`` (set by Spaces)."""
        env = os.environ if environ is None else environ

        def number(name: str, default: int) -> int:
            text = env.get(name, "")
            try:
                return int(text) if text else default
            except ValueError:
                raise SystemExit(f"{name}={text!r} is not a whole number") from None

        work = env.get("ANOMALYFORGE_WORK_DIR", "")
        return cls(
            concurrency=number("ANOMALYFORGE_CONCURRENCY", cls.concurrency),
            queue_size=number("ANOMALYFORGE_QUEUE_SIZE", cls.queue_size),
            dataset=env.get("ANOMALYFORGE_DATASET", ""),
            detect_size=number("ANOMALYFORGE_DETECT_SIZE", cls.detect_size),
            work_root=Path(work) if work else None,
            disk_budget=number("ANOMALYFORGE_DISK_BUDGET_MB", cls.disk_budget // 1024**2) * 1024**2,
            work_ttl_s=number("ANOMALYFORGE_WORK_TTL_S", cls.work_ttl_s),
            on_space=bool(env.get("SPACE_ID")),
        )


