"""``anomalyforge evaluate``, ``train`` and ``bench`` (plus ``diversity``, ``quality`` and ``stress`` when present)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the detect subcommands to the ``anomalyforge`` parser."""
    from . import bench, evaluate, train

    p = subparsers.add_parser(
        "evaluate",
        help="recall at k false positives (and AUROC, AP, AUPRO) of a detector on a published dataset",
        description=evaluate.__doc__.split("\n")[0],
    )
    evaluate.add_arguments(p)
    p.set_defaults(func=_guarded(evaluate.run))

    p = subparsers.add_parser(
        "train",
        help="train a detection pipeline (segmenter, draem, defect_map) on synthetic anomalies",
        description=train.__doc__.split("\n")[0],
    )
    train.add_arguments(p)
    p.set_defaults(func=_guarded(train.run))

    p = subparsers.add_parser(
        "bench",
        help="ASBench grid: syntheses x pipelines x anomaly ratios x seeds on real-defect sets, with reports",
        description=bench.__doc__.split("\n")[0],
    )
    bench.add_arguments(p)
    p.set_defaults(func=_guarded(bench.run))

    for module_name in ("diversity", "quality", "stress"):
        try:
            module = __import__(f"detect.{module_name}", fromlist=["register_cli"])
            register_cli = module.register_cli
        except (ModuleNotFoundError, AttributeError):
            continue  # that part is not installed in this checkout
        register_cli(subparsers)


def script_main(module, argv=None) -> int:
    """``python -m detect.evaluate`` / ``detect.train`` / ``detect.bench`` (also under ``accelerate launch``)."""
    parser = argparse.ArgumentParser(prog=module.__name__, description=module.__doc__.split("\n")[0])
    args = module.add_arguments(parser).parse_args(argv)
    args.command = module.__name__.split(".")[-1]
    return _guarded(module.run)(args)


def make_accelerator(cpu: bool = False, **options):
    """An ``accelerate.Accelerator`` that also works on machines without a GPU.

    accelerate only sets up a CPU process group (gloo) when asked for the CPU, so on a machine
    without GPUs ``accelerate launch --multi_gpu --num_processes N`` / torchrun need ``cpu=True``.
    """
    from accelerate import Accelerator

    from .device import choose_device

    return Accelerator(cpu=choose_device(cpu=cpu).type == "cpu", **options)


def _guarded(func):
    """Turn our ValueErrors into a one-line message and exit code 2 instead of a traceback."""

    def run(args: argparse.Namespace) -> int:
        import sys

        from .errors import DetectError

        try:
            return func(args)
        except DetectError as exc:
            print(f"anomalyforge {args.command}: error: {exc}", file=sys.stderr)
            return 2

    return run
