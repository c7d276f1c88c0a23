"""SYNAGEN: shape mask x pixel manipulation x size bin, with smoothed edges (Lasch et al.)."""

from .method import MODES, SHAPES, Synagen

__all__ = ["MODES", "SHAPES", "Synagen"]
