"""Work that runs on the GPU when there is one: detectors fitted and scored, stress tests.

Detectors are fitted on the serving device and stay there (``FITTED``), not moved per request."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from detect.evaluation.stress import StressConfig, run_stress
from detect.registry import FittedDetectors

from space.zerogpu import GPU


def serving_device() -> str:
    """Where detectors run in this process, in words: "GPU (name)" or "CPU"."""
    import torch

    device = torch.device(_torch_device())
    return f"GPU ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "CPU"


def _torch_device() -> str:
    from detect.runtime import choose_device

    return str(choose_device())


#: fitted detectors shared by every visitor (a few kept; fitting is the slow part)
FITTED = FittedDetectors(capacity=4)


@GPU(duration=60)
def score_on_device(name: str, key: str, fit_images: Sequence[np.ndarray], batches: Sequence[Sequence[np.ndarray]],
                    size: int, **options: Any):
    """Fit (or reuse) a detector and score each batch of images, on the GPU when there is one. An
    uploaded model (``options`` set) is built for this run only, so its time limit counts from now."""
    cache = FittedDetectors(capacity=1) if options else FITTED
    detector = cache.get(name, key, fit_images, device=_torch_device(), image_size=size, **options)
    return [detector.score(list(batch)) for batch in batches], serving_device()


def _stress_duration(images, config) -> int:
    """ZeroGPU time to ask for: fitting plus about 0.05 s per image scored on a GPU, with margin."""
    return int(min(300, 30 + 0.1 * (config.anomalies + 8 * len(images) * config.grid**2)))


@GPU(duration=_stress_duration)
def stress_on_device(images: Sequence[np.ndarray], config: StressConfig, **options: Any):
    """``detect.evaluation.stress.run_stress`` on the GPU when there is one (detectors shared through
    ``FITTED``; an uploaded model, ``options`` set, is built for this run only)."""
    return run_stress(images, config, detectors=None if options else FITTED, device=_torch_device(), progress=True,
                      detector_options=options), serving_device()


