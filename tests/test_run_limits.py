"""Runs that cannot fit are refused before any work, with the numbers that say why: the outputs a
run would make (a mistyped --per-image), the working memory an image would need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
ONE_CELL = ["--shapes", "rough", "--modes", "transparent", "--bins", "2.5-15%", "--no-progress"]


def _synth(*args: str | Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "anomalyforge.py"), "synth", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_a_huge_per_image_is_refused_with_the_count_before_planning(tmp_path):
    # planning 10^10 outputs would take gigabytes and minutes; the refusal comes from arithmetic
    result = _synth("skimage:gravel", tmp_path / "out", "--per-image", "100000000", "--no-progress", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "10,000,000,000 outputs" in result.stderr and "--max-outputs" in result.stderr
    assert not list((tmp_path / "out").glob("images/*.png"))


def test_max_outputs_is_the_limit_and_lets_a_run_through(tmp_path):
    refused = _synth("skimage:gravel", tmp_path / "a", "--per-image", "3", *ONE_CELL, "--max-outputs", "2")
    assert refused.returncode == 2 and "3 outputs" in refused.stderr
    allowed = _synth("skimage:gravel", tmp_path / "b", "--per-image", "3", *ONE_CELL, "--max-outputs", "3")
    assert allowed.returncode == 0, allowed.stderr
    assert len((tmp_path / "b" / "metadata.jsonl").read_text().splitlines()) == 3
