"""``anomalyforge --help`` and every subcommand's ``--help`` load none of the heavy packages:
torch, gradio and datasets (seconds each to import) load only when a command runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import anomalyforge

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "gradio", "datasets"}


def help_and_imports(*argv: str) -> tuple[str, set[str]]:
    """The help text ``anomalyforge`` printed and the top-level packages it imported (``python -X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "anomalyforge.py"), *argv],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: anomalyforge" in done.stdout
    lines = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    return done.stdout, {name.split(".")[0] for name in lines}


@pytest.mark.parametrize("command", [[], *([name] for name in anomalyforge.SUBCOMMANDS)], ids=lambda c: " ".join(c) or "top")
def test_help_does_not_import_torch_gradio_or_datasets(command):
    """... and reads as plain text (no reStructuredText ``literal`` marks from docstrings)."""
    text, modules = help_and_imports(*command, "--help")
    assert "argparse" in modules  # the probe sees imports at all
    assert not modules & HEAVY, sorted(modules & HEAVY)
    assert "``" not in text
