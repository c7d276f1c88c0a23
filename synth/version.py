"""The anomalyforge version that records of generated outputs name (config.json, build.json, the CLI)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def tool_version() -> str:
    """Version of the installed ``anomalyforge`` distribution; ``"unknown"`` for a source checkout
    that was never installed (no made-up number goes into a record)."""
    try:
        return version("anomalyforge")
    except PackageNotFoundError:
        return "unknown"
