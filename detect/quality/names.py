"""The names the quality commands accept (LPIPS trunks, feature networks), importable without torch
so that ``anomalyforge diversity --help`` and ``quality --help`` start at once."""

from __future__ import annotations

from typing import Literal, get_args

LpipsNet = Literal["alex", "vgg", "squeeze"]
LPIPS_NETS: tuple[str, ...] = get_args(LpipsNet)

FeatureKind = Literal["inception", "fid-inception", "efficientnet-lite0"]
FEATURE_KINDS: tuple[str, ...] = get_args(FeatureKind)
