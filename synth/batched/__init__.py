"""Batched anomaly synthesis in torch (``render``: draw, prepare, render and assemble a batch)
and training-time transforms (``transform``); see ``synth.batched.render`` for the guarantees."""

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
from .transform import BatchSynthesize, Synthesize, collate_anomalies

__all__ = [
    "BATCHED_METHODS",
    "BatchAnomalies",
    "BatchSynthesize",
    "Synthesize",
    "collate_anomalies",
    "PreparedBatch",
    "UnsupportedMethodError",
    "prepare_batch",
    "render_batch",
    "sample_specs",
    "synthesize_batch",
    "to_anomalies",
]
