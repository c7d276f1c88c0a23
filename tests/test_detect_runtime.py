"""The commands' shared runtime: ``--option`` parsing and the one-line errors of ``python -m detect.X``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from detect.errors import DetectError
from detect.runtime import parse_options

ROOT = Path(__file__).resolve().parents[1]


def test_option_values_are_json_when_they_parse_and_strings_otherwise():
    options = parse_options(["coreset_ratio=0.05", "pretrained=false", "layers=[2, 3]", "backbone=wide_resnet50",
                             " key = a=b"])
    assert options == {"coreset_ratio": 0.05, "pretrained": False, "layers": [2, 3],
                       "backbone": "wide_resnet50", "key": " a=b"}
    with pytest.raises(DetectError, match="write KEY=VALUE"):
        parse_options(["coreset_ratio"])


def test_python_dash_m_names_the_command_in_its_one_line_error(tmp_path):
    empty = tmp_path / "no_images"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "detect.training.train", "--fit", str(empty), "--output", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("anomalyforge train: error: "), run.stderr
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
