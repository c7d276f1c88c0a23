"""synth: synthetic anomalies in anomaly-free images, with exact ground truth and metadata.

>>> import numpy as np, skimage.data
>>> from synth import synthesize
>>> a = synthesize(skimage.data.brick(), "synagen", seed=7, shape="rough", mode="gray_noise",
...                size_bin="0.5-1.5%")
>>> 0.005 <= a.record["area_fraction"] < 0.015
True
"""

from .anomaly import Anomaly, PreparedImage, prepare, replay, synthesize
from .change import changed_pixels
from .errors import (
    InvalidImageError,
    InvalidParameterError,
    RegionError,
    SizeBinError,
    SynthError,
)
from .image import decode_image, load_image, save_png
from .method import Method, Rendering, Scene, Spec
from .registry import METHODS, get_method, method_names, register
from .sizebins import DEFAULT_BINS, SizeBin

__all__ = [
    "Anomaly",
    "DEFAULT_BINS",
    "InvalidImageError",
    "InvalidParameterError",
    "METHODS",
    "Method",
    "PreparedImage",
    "RegionError",
    "Rendering",
    "Scene",
    "SizeBin",
    "SizeBinError",
    "Spec",
    "SynthError",
    "changed_pixels",
    "decode_image",
    "get_method",
    "load_image",
    "method_names",
    "prepare",
    "register",
    "replay",
    "save_png",
    "synthesize",
]
