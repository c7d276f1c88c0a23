"""The generation configuration: parsed once, from keyword arguments, a config file or the command line.

``ProtocolConfig`` is everything that determines the generated files (it is written to a generated
folder's ``config.json`` and a build's ``build.json``); ``RunOptions`` is where the extra inputs are
and how the work runs (workers, memory, progress bar), which never changes a file's bytes.
``parse_generation(options)`` is the one parser: ``run_protocol``'s keyword arguments,
``anomalyforge synth``/``hub build`` options and ``--config`` files all go through it. The options
themselves (names, defaults, which dataclass they fill) are declared in ``synth.options``.

List options have one syntax everywhere: ``["a", "b"]``, ``"a,b"`` and ``["a,b"]`` are the same.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from .errors import InvalidParameterError
from .options import CONFIG, METHOD_OPTION, RUN, default, names
from .sizebins import SizeBin, require_bins


def parse_names(values: str | SizeBin | list | tuple | None, what: str = "names") -> list[str] | None:
    """``a b`` / ``a,b`` / ``a, b`` (a string or a list of strings) -> ``['a', 'b']``; None stays None.

    A name given twice is an error naming it: each name makes its own outputs, so a repeat is a typo.
    """
    if values is None:
        return None
    if isinstance(values, (str, SizeBin)):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise InvalidParameterError(f"{what} must be a list of names or 'a,b', got {values!r}")
    names = []
    for value in values:
        if isinstance(value, SizeBin):
            names.append(value.name)
        elif isinstance(value, str):
            names += [name.strip() for name in value.split(",") if name.strip()]
        else:
            raise InvalidParameterError(f"{what} must be a list of names or 'a,b', got {values!r}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidParameterError(
            f"{what}: {', '.join(repr(n) for n in repeated)} given more than once ({' '.join(names)}); "
            "list each once"
        )
    return names or None


def parse_mix(value: str | list | Mapping[str, Any] | None) -> dict[str, float] | None:
    """``nsa=0.5,synagen=0.5`` (or ``["nsa=0.5", "synagen=0.5"]``, or a mapping) -> ``{name: weight}``."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        items = list(value.items())
    else:
        items = []
        for part in parse_names(value, "mix") or []:
            name, sep, weight = part.partition("=")
            if not sep:
                raise InvalidParameterError(f"cannot read mix entry {part!r}: write NAME=WEIGHT, e.g. nsa=0.5")
            items.append((name.strip(), weight))
    mix = {}
    for name, weight in items:
        if isinstance(weight, bool):
            raise InvalidParameterError(f"mix weight {weight!r} of {name!r} is not a number")
        try:
            mix[str(name)] = float(weight)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"mix weight {weight!r} of {name!r} is not a number") from None
    return mix or None


def _integer(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise InvalidParameterError(f"{key} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise InvalidParameterError(f"{key} must be an integer, got {value!r}") from None


@dataclass(frozen=True)
class ProtocolConfig:
    """Everything that determines a generated dataset (written to ``config.json``).

    ``method`` a registered name (``"mix"`` with ``mix``: {name: weight > 0}); ``per_image`` K >= 1;
    ``shapes``/``modes`` None = the method's defaults; ``bins`` size-bin names; ``seed`` the run
    seed; ``method_options`` keyword arguments of the method; ``png_compression`` 0-9;
    ``renderer`` "numpy" or "torch" (set by ``RunOptions.device``); ``min_change`` a pixel is in a
    mask (and the measured area) when it changed by more than this many levels of 255 (default 1).
    """

    method: str = default("method")
    mix: Mapping[str, float] | None = None
    per_image: int = default("per_image")
    shapes: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None
    bins: tuple[str, ...] = default("bins")
    seed: int = default("seed")
    method_options: Mapping[str, Any] = field(default_factory=dict)
    png_compression: int = default("png_compression")
    #: "numpy" (``synth.synthesize``) or "torch" (``synth.batched``, ``--device``): the two render
    #: the same specs but not the same bytes, so one folder holds one renderer's outputs. A record
    #: of ``RunOptions.device``, which decides it (``renderer_for``/``follow_device``)
    renderer: str = default("renderer")
    min_change: int = default("min_change")

    def __post_init__(self) -> None:
        object.__setattr__(self, "bins", require_bins(self.bins))

    def size_bins(self) -> tuple[SizeBin, ...]:
        return tuple(SizeBin.parse(b) for b in self.bins)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.renderer == "numpy":  # config.json of numpy-rendered folders stays as it was
            del data["renderer"]
        if self.min_change == 1:  # likewise for the default visibility threshold
            del data["min_change"]
        data["mix"] = dict(self.mix) if self.mix else None
        data["method_options"] = dict(self.method_options)
        for key in ("shapes", "modes", "bins"):
            data[key] = None if data[key] is None else list(data[key])
        return data


@dataclass(frozen=True)
class RunOptions:
    """Where the extra inputs are and how a generation runs; none of it changes a file's bytes
    for the same inputs (``region_masks``/``textures`` are inputs, like the image folder)."""

    workers: int = default("workers")
    region_masks: str | None = None
    textures: str | None = None
    memory_budget: int | str | None = None
    progress: bool = default("progress")
    #: render with the batched torch renderer on this device ("cpu", "cuda", "cuda:1"); None: numpy
    device: str | None = None
    #: outputs rendered together with ``device`` (files do not depend on it)
    batch_size: int = default("batch_size")
    #: CPU threads preparing the next batch's plans with ``device`` (None: every usable CPU; files
    #: do not depend on it)
    prep_threads: int | None = None
    #: ``(index, count)``: make only the tasks whose index is ``index`` modulo ``count``
    shard: tuple[int, int] | None = None
    #: a run that would make more outputs than this is refused before it plans them
    max_outputs: int = default("max_outputs")


#: option names ``parse_generation`` reads (``preset`` is NSA's, stored in ``method_options``)
GENERATION_KEYS = names(CONFIG, METHOD_OPTION)
RUN_KEYS = names(RUN)


def parse_generation(options: Mapping[str, Any]) -> tuple[ProtocolConfig, RunOptions]:
    """The one parser of generation options: names, types and ranges checked, defaults filled in.

    ``options`` may hold any ``ProtocolConfig`` and ``RunOptions`` field plus ``preset``; ``None``
    values mean "default". Raises ``InvalidParameterError`` naming the option for an unknown key
    or a value of the wrong type, e.g. ``per_image must be an integer, got 'abc'``.
    """
    unknown = set(options) - GENERATION_KEYS - RUN_KEYS
    if unknown:
        raise InvalidParameterError(
            f"unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(GENERATION_KEYS | RUN_KEYS))}"
        )
    given = {k: v for k, v in options.items() if v is not None}
    mix = parse_mix(given.get("mix"))
    method = given.get("method", default("method"))
    if not isinstance(method, str):
        raise InvalidParameterError(f"method must be a method name, got {method!r}")
    method_options = given.get("method_options", {})
    if not isinstance(method_options, Mapping):
        raise InvalidParameterError(f"method_options must be a mapping of option: value, got {method_options!r}")
    method_options = dict(method_options)
    if "preset" in given:
        if not isinstance(given["preset"], str):
            raise InvalidParameterError(f"preset must be a preset name, got {given['preset']!r}")
        method_options["preset"] = given["preset"]
    bins = parse_names(given.get("bins"), "bins")
    if bins is None:  # left out: the defaults; given but empty: refused by ProtocolConfig
        bins = [] if "bins" in given else list(default("bins"))
    shapes = parse_names(given.get("shapes"), "shapes")
    modes = parse_names(given.get("modes"), "modes")
    png_compression = _integer(given.get("png_compression", default("png_compression")), "png_compression")
    if not 0 <= png_compression <= 9:
        raise InvalidParameterError(f"png_compression must lie in 0..9, got {png_compression}")
    config = ProtocolConfig(
        method="mix" if mix else method,
        mix=mix,
        per_image=_integer(given.get("per_image", default("per_image")), "per_image"),
        shapes=tuple(shapes) if shapes else None,
        modes=tuple(modes) if modes else None,
        bins=tuple(SizeBin.parse(b).name for b in bins),
        seed=_integer(given.get("seed", default("seed")), "seed"),
        method_options=method_options,
        png_compression=png_compression,
        renderer=given.get("renderer", default("renderer")),
        min_change=_integer(given.get("min_change", default("min_change")), "min_change"),
    )
    if not 1 <= config.min_change <= 254:
        raise InvalidParameterError(f"min_change must lie in 1..254 levels, got {config.min_change}")
    if config.per_image < 1:
        raise InvalidParameterError(f"per_image must be >= 1, got {config.per_image}")
    _check_methods(config)
    run = RunOptions(
        workers=_integer(given.get("workers", default("workers")), "workers"),
        region_masks=None if given.get("region_masks") is None else os.fspath(given["region_masks"]),
        textures=None if given.get("textures") is None else os.fspath(given["textures"]),
        memory_budget=given.get("memory_budget"),
        progress=bool(given.get("progress", default("progress"))),
        device=given.get("device"),
        batch_size=_integer(given.get("batch_size", default("batch_size")), "batch_size"),
        prep_threads=None if given.get("prep_threads") is None else _integer(given["prep_threads"], "prep_threads"),
        shard=None if given.get("shard") is None else tuple(given["shard"]),
        max_outputs=_integer(given.get("max_outputs", default("max_outputs")), "max_outputs"),
    )
    if run.workers < 1:
        raise InvalidParameterError(f"workers must be >= 1, got {run.workers}")
    if run.max_outputs < 1:
        raise InvalidParameterError(f"max_outputs must be >= 1, got {run.max_outputs}")
    if run.prep_threads is not None and run.prep_threads < 1:
        raise InvalidParameterError(f"prep_threads must be >= 1 (or left out for every usable CPU), got {run.prep_threads}")
    if run.device is not None:  # without a device, a config read back keeps the renderer it records
        config = follow_device(config, run)
    _check_run(run, config)
    return config, run


def renderer_for(device: str | None) -> str:
    """The renderer a run's device selects: the one place that decides it (``None``: numpy)."""
    return "numpy" if device is None else "torch"


def follow_device(config: ProtocolConfig, run: RunOptions) -> ProtocolConfig:
    """``config`` recording the renderer that ``run.device`` selects (``RunOptions.device`` is
    the choice; ``ProtocolConfig.renderer`` only records it in ``config.json``)."""
    renderer = renderer_for(run.device)
    return config if config.renderer == renderer else replace(config, renderer=renderer)


def _check_run(run: RunOptions, config: ProtocolConfig) -> None:
    if run.batch_size < 1:
        raise InvalidParameterError(f"batch_size must be >= 1, got {run.batch_size}")
    if run.shard is not None and not (len(run.shard) == 2 and 0 <= run.shard[0] < run.shard[1]):
        raise InvalidParameterError(f"shard must be (index, count) with 0 <= index < count, got {run.shard}")
    if config.min_change != 1 and config.renderer == "torch":
        raise InvalidParameterError("min_change other than 1 works with the numpy renderer only; leave out --device")
    if run.device is not None:
        from .batched import BATCHED_METHODS

        if config.mix or config.method not in BATCHED_METHODS:
            raise InvalidParameterError(
                f"--device renders with the batched torch renderer, which covers {', '.join(BATCHED_METHODS)}; "
                f"{'a mix' if config.mix else repr(config.method)} renders on the CPU path: leave out --device"
            )


def _check_methods(config: ProtocolConfig) -> None:
    from .registry import method_names

    names = [n for n in method_names() if n != "hybrid"]
    if not config.mix and config.method not in method_names():
        raise InvalidParameterError(f"unknown method {config.method!r}; choose from {', '.join(method_names())}")
    for name, weight in (config.mix or {}).items():
        if name not in names:
            raise InvalidParameterError(f"unknown method {name!r} in mix; choose from {', '.join(names)}")
        if not weight > 0:
            raise InvalidParameterError(f"mix weight of {name!r} must be > 0, got {weight}")


def resolve_generation(config: ProtocolConfig | None, run: RunOptions | None,
                       options: Mapping[str, Any]) -> tuple[ProtocolConfig, RunOptions]:
    """``(config, run)`` from objects, keyword options, or both for different halves (never the same half twice)."""
    if config is not None and set(options) & GENERATION_KEYS:
        raise InvalidParameterError(
            f"pass the generation options ({', '.join(sorted(set(options) & GENERATION_KEYS))}) in the "
            "ProtocolConfig or as keyword arguments, not both"
        )
    if run is not None and set(options) & RUN_KEYS:
        raise InvalidParameterError(
            f"pass the run options ({', '.join(sorted(set(options) & RUN_KEYS))}) in the RunOptions or as "
            "keyword arguments, not both"
        )
    parsed_config, parsed_run = parse_generation(options)
    config, run = config or parsed_config, run or parsed_run
    config = follow_device(config, run)
    _check_methods(config)
    _check_run(run, config)
    return config, run
