"""The generation options are declared once (``synth.options.OPTIONS``): the command lines of
``synth`` and ``hub build``, the config-file keys and the dataclasses hold exactly those options."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from anomalyforge import build_parser
from synth.cli import CONFIG_FILE_KEYS
from synth.config import ProtocolConfig, RunOptions, parse_generation
from synth.errors import InvalidParameterError
from synth.options import COMMAND_LINE, CONFIG, METHOD_OPTION, OPTIONS, RUN

ROOT = Path(__file__).resolve().parents[1]


def _generation_group(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``{flag: dest}`` of the "generation" argument group of a subcommand's parser."""
    group = next(g for g in parser._action_groups if g.title == "generation")
    return {action.option_strings[0]: action.dest for action in group._group_actions}


def _subcommand(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def test_synth_and_hub_build_take_exactly_the_declared_flags():
    declared = {option.flag: option.name for option in OPTIONS if option.flag is not None}
    assert _generation_group(_subcommand(build_parser("synth"), "synth")) == declared
    assert _generation_group(_subcommand(build_parser("hub"), "hub", "build")) == declared


def test_the_dataclasses_hold_exactly_the_declared_fields_with_the_declared_defaults():
    for cls, target in ((ProtocolConfig, CONFIG), (RunOptions, RUN)):
        declared = {option.name: option.default for option in OPTIONS if option.target == target}
        assert {f.name for f in fields(cls)} == set(declared)
        made = cls()
        for name, value in declared.items():
            if name != "method_options":  # a mapping: a fresh {} each time
                assert getattr(made, name) == value, name
    assert ProtocolConfig().method_options == {}
    assert {o.target for o in OPTIONS} == {CONFIG, RUN, METHOD_OPTION, COMMAND_LINE}


def test_the_config_file_keys_are_the_declared_ones_and_each_is_read(tmp_path):
    """A config file setting every declared key makes a run whose config.json shows each value."""
    assert CONFIG_FILE_KEYS == tuple(o.name for o in OPTIONS if o.in_config_file)
    values = {"method": "nsa", "mix": None, "preset": "wood", "per_image": 1, "shapes": ["patch"],
              "modes": ["mixed_clone"], "bins": ["0.5-1.5%"], "seed": 7, "method_options": {}, "min_change": 2}
    assert set(values) == set(CONFIG_FILE_KEYS)
    config_file = tmp_path / "options.json"
    config_file.write_text(json.dumps(values))
    (tmp_path / "in").mkdir()
    from skimage.data import brick

    from synth.image import save_png

    save_png(tmp_path / "in" / "brick.png", brick()[:128, :128])
    result = subprocess.run(
        [sys.executable, str(ROOT / "anomalyforge.py"), "synth", str(tmp_path / "in"), str(tmp_path / "out"),
         "--config", str(config_file), "--no-progress"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((tmp_path / "out" / "config.json").read_text())["config"]
    expected, _ = parse_generation(values)
    assert written == expected.to_dict()
    assert written["method"] == "nsa" and written["method_options"] == {"preset": "wood"}
    assert (written["per_image"], written["seed"], written["min_change"]) == (1, 7, 2)
    assert (written["shapes"], written["modes"], written["bins"]) == (["patch"], ["mixed_clone"], ["0.5-1.5%"])


def test_every_keyword_option_is_declared():
    """``parse_generation`` takes every declared option but --config and refuses any other name."""
    for option in OPTIONS:
        if option.target != COMMAND_LINE:
            parse_generation({option.name: option.default})
    with pytest.raises(InvalidParameterError, match=r"unknown option\(s\) config;"):
        parse_generation({"config": "x.json"})
