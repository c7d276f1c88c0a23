"""Which torch device runs the batched renderer: the project's one device rule.

A device named by the user is checked here (a name torch does not know, or a CUDA device on a
machine where torch sees no GPU, is refused with a message saying what to pass instead); no
device means the first CUDA GPU when there is one, else the CPU. ``detect.runtime`` builds its
``choose_device`` on this, so ``anomalyforge synth --device``, the detectors, training and the app
decide "use the GPU when there is one" the same way.
"""

from __future__ import annotations

import torch

from ..errors import InvalidParameterError


def choose_device(device: str | torch.device | None = None, *, cpu: bool = False, what: str = "device") -> torch.device:
    """``device`` as a checked ``torch.device``; ``None`` means the first CUDA GPU when present
    (and not ``cpu``), else the CPU.

    ``what`` names the setting in the error messages (``"--device"``, ``"synth device"``).
    Raises ``InvalidParameterError`` for a name torch does not know or a CUDA device without a GPU.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidParameterError(f"unknown {what} {device!r}; use cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(
            f"{what} {str(device)!r}: torch sees no CUDA GPU on this machine; use cpu or leave {what} out"
        )
    return chosen


def runs_on_cpu(cpu: bool = False) -> bool:
    """Whether a command's processes use the CPU: asked to (``--cpu``), or no GPU is present.

    accelerate only sets up a CPU process group (gloo) when asked for the CPU, so on a machine
    without GPUs ``accelerate launch --multi_gpu --num_processes N`` / torchrun need ``cpu=True``.
    """
    return choose_device(cpu=cpu).type == "cpu"
