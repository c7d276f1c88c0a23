"""Where ``detect`` runs and how its commands start: the device rule, the accelerator, the CLI guard.

Every part of ``detect`` (detectors, LPIPS and feature models, the evaluate, train, bench, stress,
diversity and quality commands, the synth device of training) and the app ask ``choose_device``,
so "use the GPU when there is one" is decided in one place. The commands' processes come from
``make_accelerator`` / ``make_process_state``, which apply the same rule, and every command runs
through ``guarded``, so bad input ends with one line and exit code 2 instead of a traceback.

The device rule itself is ``synth.batched.device``'s (``synth`` imports nothing of ``detect``), so
the renderer's ``--device`` and the detectors choose alike. This module imports only
``detect.errors`` from the package, so any module may import it at the top without making an
import circle; it imports torch only when a device is chosen, so the commands' ``--help`` stays
fast.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Sequence

from detect.errors import DetectError
from synth.errors import SynthError

if TYPE_CHECKING:
    import torch

Command = Callable[[argparse.Namespace], int]

#: torch CPU threads for small batched linear algebra (PaDiM's per-position covariances) and for
#: training steps: measured fastest by ``benchmarks/thread_overhead.py`` (2 threads spend 10-15x the
#: CPU seconds of 1 on synchronisation, and take longer on the clock too)
FASTEST_THREADS = 1


@contextlib.contextmanager
def fastest_threads(device: str | torch.device = "cpu"):
    """Run the block with ``FASTEST_THREADS`` torch CPU threads when ``device`` is the CPU (restored after)."""
    import torch

    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, FASTEST_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def choose_device(device: str | torch.device | None = None, *, cpu: bool = False, what: str = "device") -> torch.device:
    """``device`` as a checked ``torch.device``; ``None`` means the first CUDA GPU when present (and
    not ``cpu``), else the CPU. The rule is ``synth.batched.device.choose_device``'s, so detectors and
    the renderer agree; an unknown name or a CUDA device without a GPU is a ``DetectError`` naming
    ``what`` (e.g. ``"synth device"``)."""
    from synth.batched.device import choose_device as _batched_choose_device

    try:
        return _batched_choose_device(device, cpu=cpu, what=what)
    except SynthError as exc:
        raise DetectError(str(exc)) from None


def runs_on_cpu(cpu: bool = False) -> bool:
    """Whether a command's processes use the CPU (``synth.batched.device.runs_on_cpu``)."""
    from synth.batched.device import runs_on_cpu as _runs_on_cpu

    return _runs_on_cpu(cpu)


def make_accelerator(cpu: bool = False, **options: Any):
    """An ``accelerate.Accelerator`` (``options`` passed on) that also works on machines without a GPU."""
    from accelerate import Accelerator  # heavy: only the commands that run models pay for it

    return Accelerator(cpu=runs_on_cpu(cpu), **options)


def make_process_state(cpu: bool = False):
    """An ``accelerate.PartialState`` (process index, count and device) by the same rule as
    ``make_accelerator``, for commands that share out jobs but train no model across processes."""
    from accelerate import PartialState  # heavy: only the commands that run models pay for it

    return PartialState(cpu=runs_on_cpu(cpu))


def guarded(func: Command) -> Command:
    """``func`` with the project's errors (bad input, missing weights, an output folder that cannot be
    written or that another run holds) reported as one line on stderr, ``anomalyforge COMMAND: error:
    MESSAGE``, and exit code 2; what a detector converted is one line per set of images,
    ``anomalyforge COMMAND: note: MESSAGE``, with the counts of every batch of the set
    (``detect.images.counted_conversions``), said when the command ends."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        from detect.images import counted_conversions

        command = getattr(args, "command", None)
        prefix = f"anomalyforge{' ' + command if command else ''}"
        notes: list = []
        try:
            with counted_conversions() as notes:
                try:
                    return func(args)
                except (DetectError, SynthError) as exc:  # SynthError: images, options and output folders read through synth
                    print(f"{prefix}: error: {exc}", file=sys.stderr)
                    return 2
        finally:  # the block has ended: notes holds each set's count over all its batches
            for note in notes:
                print(f"{prefix}: note: {note}", file=sys.stderr)

    return run


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """The commands' ``--option KEY=VALUE`` pairs as detector options; a VALUE that parses as JSON
    (``0.05``, ``true``, ``[1, 2]``) is taken as such, any other as the string it is."""
    options: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise DetectError(f"--option {pair!r}: write KEY=VALUE (e.g. coreset_ratio=0.05)")
        key, value = pair.split("=", 1)
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def script_main(module: ModuleType, argv: Sequence[str] | None = None) -> int:
    """``python -m detect.evaluation.evaluate`` / ``detect.training.train`` / ``detect.evaluation.bench`` (also under ``accelerate launch``):
    ``module``'s ``add_arguments`` parser, then its ``run`` through ``guarded``."""
    # under ``python -m`` the module is ``__main__``; its spec still has the dotted name
    name = getattr(module.__spec__, "name", None) or module.__name__
    parser = argparse.ArgumentParser(prog=name, description=module.__doc__.split("\n")[0])
    args = module.add_arguments(parser).parse_args(argv)
    args.command = name.split(".")[-1]
    return guarded(module.run)(args)


def subcommand_main(register_cli: Callable[[Any], Any], command: str, argv: Sequence[str] | None = None) -> int:
    """``python -m detect.quality.diversity`` / ``detect.quality.metrics``: the ``anomalyforge
    COMMAND`` that ``register_cli`` adds to a parser's subcommands, run with ``argv`` (default:
    ``sys.argv[1:]``); its exit code."""
    parser = argparse.ArgumentParser(prog="anomalyforge")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([command, *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))
