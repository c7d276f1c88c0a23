"""hub_tools: build, publish and load versioned synthetic-anomaly datasets on the Hugging Face Hub.

>>> import hub_tools
>>> result = hub_tools.build_dataset("images/", "build/", per_image=1, seed=0)    # doctest: +SKIP
>>> hub_tools.push_build("build/", "org/name", "1.0.0", license="cc-by-4.0")      # doctest: +SKIP
>>> ds = hub_tools.load_version("org/name", "1.0.0")                              # doctest: +SKIP

Names are imported on first use so that ``import hub_tools`` stays light.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "build_dataset": "hub_tools.build",
    "validate_build": "hub_tools.build",
    "BuildResult": "hub_tools.build",
    "push_build": "hub_tools.publish",
    "list_versions": "hub_tools.publish",
    "load_version": "hub_tools.publish",
    "PushResult": "hub_tools.publish",
    "VersionInfo": "hub_tools.publish",
    "dataset_features": "hub_tools.schema",
    "HubToolsError": "hub_tools.errors",
    "BuildError": "hub_tools.errors",
    "ValidationError": "hub_tools.errors",
    "VersionError": "hub_tools.errors",
    "PublishError": "hub_tools.errors",
    "StaleParentError": "hub_tools.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hub_tools' has no attribute {name!r}")
