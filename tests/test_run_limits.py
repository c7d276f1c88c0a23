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


def test_the_estimate_covers_synagens_grown_shape_at_100_megapixels():
    from synth.memory import estimated_bytes

    # measured: a 10000² gray PNG needs at least 11.3 GB for SYNAGEN (its shape, grown to 4x the
    # image's side, is 40000 x 23727 pixels); the old estimate said 6.0 GB
    assert estimated_bytes(10000, 10000, 1, ("synagen",)) >= 11.3e9
    # the shape is SYNAGEN's: other methods are estimated without it
    assert estimated_bytes(10000, 10000, 1, ("cutout",)) < estimated_bytes(10000, 10000, 1, ("synagen",))


def test_a_budget_that_cannot_hold_synagens_shape_refuses_the_image_from_its_header(tmp_path):
    import numpy as np

    from synth import save_png

    # 4000², gray: about 1.0 GB of image copies, plus up to 1.3 GB of grown shape
    save_png(tmp_path / "in" / "big.png", np.zeros((4000, 4000), np.uint8))
    result = _synth(tmp_path / "in", tmp_path / "out", "--per-image", "1", *ONE_CELL, "--memory-budget", "1.5GB")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "big.png" in result.stderr and "synagen" in result.stderr and "working memory" in result.stderr
    assert "1.5 GB" in result.stderr
