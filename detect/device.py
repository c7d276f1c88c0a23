"""``from detect.device import choose_device`` keeps working: the rule lives in ``detect.runtime``."""

from __future__ import annotations

from .runtime import choose_device

__all__ = ["choose_device"]
