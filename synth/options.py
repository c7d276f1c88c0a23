"""The generation options, declared once.

Each ``Option`` says where the value lands (a ``ProtocolConfig`` or ``RunOptions`` field, or NSA's
``preset`` in ``method_options``), its default, whether a ``--config`` file may set it, and its
command-line flag. ``anomalyforge synth``/``hub build``'s arguments (``synth.cli``), the config-file
keys and the dataclasses' field defaults (``synth.config``) are derived from ``OPTIONS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import arguments
from .png import DEFAULT_LEVEL as DEFAULT_PNG_LEVEL
from .sizebins import DEFAULT_BINS

#: outputs one run may make unless ``max_outputs`` (``--max-outputs``) allows more: about three
#: hours of SYNAGEN at 256² on one core; a mistyped ``--per-image`` is refused, not planned
DEFAULT_MAX_OUTPUTS = 1_000_000

#: where an option's value lands: a ``ProtocolConfig`` field (it determines the files), a
#: ``RunOptions`` field (how the run goes), ``method_options`` (a method's own option) or the
#: command line alone (``--config``, the file the others are read from)
CONFIG, RUN, METHOD_OPTION, COMMAND_LINE = "config", "run", "method_options", "command line"


@dataclass(frozen=True)
class Option:
    """One generation option. ``name`` is its keyword (``run_protocol(per_image=...)``), its
    config-file key when ``in_config_file``, and its dataclass field; ``flag`` its command-line
    option (None: keyword and config file only) with ``cli`` the rest of ``add_argument``'s keywords."""

    name: str
    target: str
    default: Any = None
    in_config_file: bool = False
    flag: str | None = None
    cli: dict[str, Any] = field(default_factory=dict)


OPTIONS: tuple[Option, ...] = (
    Option("method", CONFIG, "synagen", True, "--method", dict(
        help="synthesis method: synagen (default), nsa, cutpaste, cutpaste_scar, cutout, fpi, "
             "draem, foreground_perlin, fractal")),
    Option("mix", CONFIG, None, True, "--mix", dict(
        nargs="+", metavar="NAME=W",
        help="weighted mixture of methods, e.g. nsa=0.5,synagen=0.5 or nsa=0.5 synagen=0.5 (each output is "
             "labelled with the method that made it)")),
    Option("preset", METHOD_OPTION, None, True, "--preset", dict(
        help="method preset, e.g. an MVTec AD class for NSA (--method nsa --preset wood)")),
    # its help is made in synth.cli, from CONFIG_FILE_KEYS
    Option("config", COMMAND_LINE, None, False, "--config", dict(metavar="FILE")),
    Option("per_image", CONFIG, 3, True, "--per-image", dict(
        type=arguments.positive, metavar="K", help="unique anomalies per image and shape x mode (default 3)")),
    Option("shapes", CONFIG, None, True, "--shapes", dict(
        nargs="+",
        help="shapes to generate, space- or comma-separated (SYNAGEN: spattered elongated rough complex; "
             "default all)")),
    Option("modes", CONFIG, None, True, "--modes", dict(
        nargs="+",
        help="pixel manipulations (SYNAGEN: transparent transparent_noise "
             "transparent_color_noise mean_noise gray_noise [texture]; default the first five)")),
    Option("bins", CONFIG, tuple(b.name for b in DEFAULT_BINS), True, "--bins", dict(
        nargs="+", metavar="LOW-HIGH%",
        help="size bins in percent of image pixels (default: "
             + " ".join(b.name for b in DEFAULT_BINS).replace("%", "%%") + ")")),
    Option("seed", CONFIG, 0, True, "--seed", dict(
        type=arguments.seed, help="run seed (default 0); same seed -> same files")),
    Option("method_options", CONFIG, None, True),  # a mapping passed to the method; {} when left out
    Option("min_change", CONFIG, 1, True, "--min-change", dict(
        type=arguments.integer(1, 254), metavar="LEVELS",
        help="visibility threshold: masks and measured areas (so the size bins) count pixels changed "
             "by more than LEVELS of 255 (default 1: every stored change above one level)")),
    Option("region_masks", RUN, None, False, "--region-masks", dict(
        metavar="DIR",
        help="folder of allowed-region masks named like the input images (white = allowed); "
             "'<name>_mask.png' beside an image '<name>.*' works too (a '<name>_mask' file with "
             "no such image beside it is an input image); images without one are unrestricted")),
    Option("textures", RUN, None, False, "--textures", dict(
        metavar="DIR", help="folder of texture images for SYNAGEN's texture mode and DRAEM")),
    Option("workers", RUN, 1, False, "--workers", dict(
        type=arguments.positive, metavar="N", help="worker processes (default 1); output is identical for any N")),
    Option("memory_budget", RUN, None, False, "--memory-budget", dict(
        metavar="SIZE",
        help="working memory one worker may use for one image, e.g. 8GB (default: "
             "$ANOMALYFORGE_MEMORY_BUDGET, else half of this machine's memory over the workers); "
             "larger images are refused from their header, before decoding")),
    Option("png_compression", CONFIG, DEFAULT_PNG_LEVEL, False, "--png-compression", dict(
        type=arguments.integer(0, 9), metavar="0-9",
        help=f"deflate level of written PNGs (default {DEFAULT_PNG_LEVEL}: fast, with files "
             "slightly smaller than libpng's level 1)")),
    Option("device", RUN, None, False, "--device", dict(
        metavar="cpu|cuda|cuda:N",
        help="render with the batched torch renderer on this device (every method but hybrid; "
             "synth.batched.BATCHED_METHODS); "
             "default: the numpy renderer. Under 'accelerate launch' each process takes its "
             "share of the tasks (on its own GPU with --device cuda)")),
    Option("batch_size", RUN, 16, False, "--batch-size", dict(
        type=arguments.positive, metavar="N",
        help="outputs rendered together with --device (default 16); files do not depend on it")),
    Option("prep_threads", RUN, None, False, "--prep-threads", dict(
        type=arguments.positive, metavar="N",
        help="CPU threads preparing the next batch (shape panels, noise, fills) with --device "
             "(default: every usable CPU, shared by the processes of accelerate launch on a machine); "
             "files do not depend on it")),
    Option("max_outputs", RUN, DEFAULT_MAX_OUTPUTS, False, "--max-outputs", dict(
        type=arguments.positive, metavar="N",
        help=f"refuse a run that would make more than N outputs, before planning it (default "
             f"{DEFAULT_MAX_OUTPUTS:,}); raise it for a larger dataset")),
    Option("progress", RUN, True, False, "--no-progress", dict(action="store_false", help="hide the progress bar")),
    # set by the program, not by a user: recorded from ``device`` / given by ``accelerate launch``
    Option("renderer", CONFIG, "numpy"),
    Option("shard", RUN, None),
)

BY_NAME = {option.name: option for option in OPTIONS}

#: options a ``--config`` file may set, each also a command-line option (but ``method_options``)
#: and read by ``parse_generation``; the rest are about running, given on the command line
CONFIG_FILE_KEYS = tuple(option.name for option in OPTIONS if option.in_config_file)


def default(name: str) -> Any:
    """The declared default of option ``name``."""
    return BY_NAME[name].default


def names(*targets: str) -> frozenset[str]:
    """The names of the options landing in any of ``targets``."""
    return frozenset(option.name for option in OPTIONS if option.target in targets)
