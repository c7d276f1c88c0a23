"""``anomalyforge evaluate`` and ``anomalyforge train`` (plus ``diversity`` and ``quality`` when present)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the detect subcommands to the ``anomalyforge`` parser."""
    from . import evaluate, train

    p = subparsers.add_parser(
        "evaluate",
        help="recall at k false positives (and AUROC, AP, AUPRO) of a detector on a published dataset",
        description=evaluate.__doc__.split("\n")[0],
    )
    evaluate.add_arguments(p)
    p.set_defaults(func=_guarded(evaluate.run))

    p = subparsers.add_parser(
        "train",
        help="train the self-supervised segmentation detector on synthetic anomalies",
        description=train.__doc__.split("\n")[0],
    )
    train.add_arguments(p)
    p.set_defaults(func=_guarded(train.run))

    for module_name in ("diversity", "quality"):
        try:
            module = __import__(f"detect.{module_name}", fromlist=["register_cli"])
            register_cli = module.register_cli
        except (ModuleNotFoundError, AttributeError):
            continue  # that part is not installed in this checkout
        register_cli(subparsers)


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
