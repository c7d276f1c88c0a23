"""The ``anomalyforge`` command: one entry point, one subcommand per part of the project.

Each package contributes its own subcommands through ``<package>.cli.register(subparsers)``;
packages are imported lazily so that ``anomalyforge synth`` never pays for torch or datasets.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# subcommand -> module that implements it (``register`` adds the parser, which sets ``func``)
SUBCOMMANDS = {
    "synth": "synth.cli",
    "hub": "hub_tools.cli",
    "evaluate": "detect.cli",
    "train": "detect.cli",
    "bench": "detect.cli",
    "diversity": "detect.cli",
    "quality": "detect.cli",
    "stress": "detect.cli",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    from synth.version import tool_version

    parser = argparse.ArgumentParser(
        prog="anomalyforge",
        description="Synthetic image anomalies, versioned datasets and detector sensitivity analysis.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {tool_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    registered: set[str] = set()
    for name, module_name in SUBCOMMANDS.items():
        if only is not None and name != only:
            continue
        if module_name in registered:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a part of the project not installed in this env
            if only is not None:
                raise SystemExit(f"anomalyforge {name}: cannot import {module_name}: {exc}") from exc
            continue
        module.register(sub)
        registered.add(module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # import only the package the subcommand needs (keeps `anomalyforge synth` light)
    only = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    try:
        parser = build_parser(only)
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        # Ctrl-C is a request, not a failure to explain: one line, the shell's 128 + SIGINT code.
        # What was finished stays on disk; synth and hub build resume from it on the next run.
        print(f"\nanomalyforge{' ' + only if only else ''}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (e.g. `| head`): nothing left to say, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
