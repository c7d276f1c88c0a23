"""Which torch device runs the batched renderer: the project's one device rule.

A device named by the user is checked here (a name torch does not know, or a CUDA device on a
machine where torch sees no GPU, is refused with a message saying what to pass instead); no
device means the first CUDA GPU when there is one, else the CPU. ``detect.runtime`` builds its
``choose_device`` on this, so ``anomalyforge synth --device``, the detectors, training and the app
decide "use the GPU when there is one" the same way. ``to_device`` is how the batched
renderers hand host values (indices, offsets, scales) to a device without waiting for it.
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


def to_device(values, device: torch.device | str) -> torch.Tensor:
    """``torch.as_tensor(values)`` (the same dtype inference) on ``device``.

    Host values go to a CUDA device through pinned memory without blocking: torch's ordinary
    host-to-device copy waits until the GPU has finished everything queued before it, and the
    renderers' size-search steps make many small copies (indices, offsets, scales), each of
    which would otherwise leave the GPU idle. The pinned buffer is kept by torch's caching host
    allocator until its copy is done, so the values may change on the host right after.
    """
    if isinstance(values, torch.Tensor):
        return values.to(device)
    tensor = torch.as_tensor(values)
    if torch.device(device).type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
