"""``anomalyforge synth``: the generation protocol from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .config import ProtocolConfig, RunOptions, parse_generation
from .errors import InvalidImageError, InvalidParameterError, SynthError
from .image import read_file
from .options import COMMAND_LINE, CONFIG_FILE_KEYS, OPTIONS

#: Built-in CC0 example images (scikit-image's data), usable as INPUT_DIR "skimage:brick,grass".
EXAMPLES = ("brick", "grass", "gravel")


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """The options that define a generated dataset (shared with ``anomalyforge hub build``), one
    per ``synth.options.OPTIONS`` entry with a flag. Options a ``--config`` file may set default to
    None here, so that the file's value stands unless the command line gives one."""
    g = parser.add_argument_group("generation")
    for option in OPTIONS:
        if option.flag is None:
            continue
        keywords = dict(option.cli)
        if option.name == "config":
            keywords["help"] = (f"YAML or JSON file with any of: {', '.join(CONFIG_FILE_KEYS)} (method_options: a "
                                "mapping passed to the method). Command-line options override it")
        if keywords.get("action") is None:
            keywords["default"] = None if option.in_config_file else option.default
        g.add_argument(option.flag, dest=option.name, **keywords)


#: largest ``--config`` file read (bytes)
MAX_CONFIG_BYTES = 1 << 20


def load_config_file(path: str) -> dict[str, Any]:
    """The options of a YAML or JSON ``--config`` file, checked by the one parser (names, types)."""
    try:
        text = read_file(path, MAX_CONFIG_BYTES).decode("utf-8")
    except (InvalidImageError, UnicodeDecodeError) as exc:
        reason = "it is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
        raise InvalidParameterError(f"cannot read config file {path}: {reason}; give a YAML or JSON file") from None
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml and json raise different error types
        raise InvalidParameterError(f"cannot read config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidParameterError(f"config file {path} must hold a mapping of options")
    unknown = set(data) - set(CONFIG_FILE_KEYS)
    if unknown:
        raise InvalidParameterError(
            f"config file {path}: unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(CONFIG_FILE_KEYS)}"
        )
    try:
        parse_generation(data)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"config file {path}: {exc}") from None
    return data


def generation_from_args(args: argparse.Namespace) -> tuple[ProtocolConfig, RunOptions]:
    """The generation config and run options of parsed options: the config file, then the command line."""
    options = load_config_file(args.config) if args.config else {}
    for option in OPTIONS:
        if option.flag is None or option.target == COMMAND_LINE:
            continue
        value = getattr(args, option.name)
        if value is not None or not option.in_config_file:
            options[option.name] = value
    return parse_generation(options)


def materialize_examples(spec: str, folder: Path) -> Path:
    """Write scikit-image's CC0 textures named in ``skimage:brick,grass`` to ``folder``; return it."""
    import skimage.data

    from .image import save_png

    names = [n for n in spec.split(":", 1)[1].split(",") if n] or list(EXAMPLES)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name not in EXAMPLES:
            raise InvalidParameterError(f"unknown example {name!r}; choose from {', '.join(EXAMPLES)}")
        path = folder / f"{name}.png"
        if not path.exists():
            save_png(path, getattr(skimage.data, name)())
    return folder


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate synthetic anomalies for a folder of anomaly-free images",
        description=(
            "For each image of INPUT_DIR make K unique anomalies x shapes x modes x size bins "
            "(SYNAGEN defaults 3 x 4 x 5 x 5 = 300 per image) and write an imagefolder dataset to "
            "OUTPUT_DIR: images/, masks/ and metadata.jsonl (read it with "
            "datasets.load_dataset('imagefolder', data_dir=OUTPUT_DIR)). An interrupted run resumes "
            "where it stopped. INPUT_DIR 'skimage:brick,grass,gravel' uses scikit-image's CC0 textures."
        ),
    )
    parser.add_argument("input_dir", metavar="INPUT_DIR", help="folder of anomaly-free images (searched recursively)")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="where the dataset is written")
    add_generation_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import warnings

    from .protocol import MaskNamedInputs, MissingRegionMasks, ProtocolFailures, run_protocol

    try:
        input_dir = args.input_dir
        config, run_options = generation_from_args(args)
        if input_dir.startswith("skimage:"):
            input_dir = str(materialize_examples(input_dir, Path(args.output_dir) / "sources"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MissingRegionMasks)
            warnings.simplefilter("always", MaskNamedInputs)
            try:
                processes = launched_processes()
                if processes is None:
                    rows = run_protocol(input_dir, args.output_dir, config, run_options)
                else:
                    rows = run_sharded(input_dir, args.output_dir, config, run_options, processes)
                    if rows is None:
                        return 0  # another process writes metadata.jsonl and the summary
            finally:
                for warning in caught:
                    print(f"anomalyforge synth: warning: {warning.message}", file=sys.stderr)
    except ProtocolFailures as exc:
        print(f"anomalyforge synth: {len(exc.rows)} outputs written; {exc}", file=sys.stderr)
        return 1
    except (SynthError, OSError) as exc:
        print(f"anomalyforge synth: error: {exc}", file=sys.stderr)
        return 2
    _summary(rows, args.output_dir)
    return 0


def launched_processes():
    """The process group when started by ``accelerate launch`` / torchrun with several processes
    (``accelerate.PartialState``), else ``None``."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    from .batched.device import runs_on_cpu

    return PartialState(cpu=runs_on_cpu())


def run_sharded(input_dir: str, output_dir: str, config: ProtocolConfig, run_options: RunOptions,
                state) -> list[dict[str, Any]] | None:
    """Each process makes the tasks whose index is its rank modulo the process count (on its own
    GPU with ``--device cuda``); then the main process writes ``metadata.jsonl`` from all shards.
    Returns the rows in the main process, ``None`` in the others."""
    from dataclasses import replace

    from .protocol import ProtocolFailures, run_protocol

    device = run_options.device
    if device == "cuda":
        device = f"cuda:{state.local_process_index}"
    mine = replace(run_options, device=device, shard=(state.process_index, state.num_processes))
    try:
        run_protocol(input_dir, output_dir, config, mine)
    except ProtocolFailures:  # retried (and reported) by the main process's final pass
        pass
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    # every shard's outputs are finished: this pass only collects them (and retries failures)
    return run_protocol(input_dir, output_dir, config, replace(mine, shard=None, progress=False))


def _summary(rows: list[dict[str, Any]], output_dir: str) -> None:
    from collections import Counter

    by_bin = Counter(r["size_bin"] for r in rows)
    print(f"wrote {len(rows)} anomalies to {output_dir}")
    for name, count in sorted(by_bin.items()):
        print(f"  {name:>12}: {count}")
