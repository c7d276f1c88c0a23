"""Batched anomaly synthesis in torch: draw, prepare, render and assemble a batch
(``synth.batched.render``; see it for the guarantees). The training-time transforms are in
``synth.transforms``; ``synth.engine`` drives batches of many images."""

from .render import (
    BATCHED_METHODS,
    BatchAnomalies,
    PreparedBatch,
    UnsupportedMethodError,
    prepare_batch,
    render_batch,
    sample_specs,
    synthesize_batch,
    to_anomalies,
)

__all__ = [
    "BATCHED_METHODS",
    "BatchAnomalies",
    "PreparedBatch",
    "UnsupportedMethodError",
    "prepare_batch",
    "render_batch",
    "sample_specs",
    "synthesize_batch",
    "to_anomalies",
]

_MOVED = {"BatchSynthesize", "Synthesize", "collate_anomalies"}


def __getattr__(name: str):
    if name in _MOVED:
        raise ImportError(f"synth.batched.{name} is now synth.transforms.{name}: from synth.transforms import {name}")
    raise AttributeError(f"module 'synth.batched' has no attribute {name!r}")
