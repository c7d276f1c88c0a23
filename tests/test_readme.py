"""The README's Python examples run as written.

Every ```python block right after a ``<!-- readme-test -->`` marker is executed unchanged; a marker
``<!-- readme-test given: NAME, NAME -->`` names the placeholders of a fragment (``images_on_gpu``),
which the test fills with small batches of scikit-image's CC0 textures on the CPU.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import skimage.data

README = Path(__file__).resolve().parents[1] / "README.md"
MARKED_BLOCK = re.compile(r"<!-- readme-test(?: given: ([\w, ]+))? -->\n```python\n(.*?)```", re.S)
#: side of the textures the placeholders hold: small enough for seconds on 2 cores
SIDE = 128

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def marked_blocks() -> list[tuple[int, tuple[str, ...], str]]:
    """``(line of the marker, placeholder names, code)`` of each marked block, in README order."""
    text = README.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1,
         tuple(name.strip() for name in (match.group(1) or "").split(",") if name.strip()),
         match.group(2))
        for match in MARKED_BLOCK.finditer(text)
    ]


def _textures_batch():
    """``(3, 3, SIDE, SIDE)`` uint8: brick, grass and gravel, gray repeated into RGB."""
    import cv2
    import torch

    images = [cv2.resize(getattr(skimage.data, name)(), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
              for name in ("brick", "grass", "gravel")]
    return torch.from_numpy(np.stack([np.stack([image] * 3) for image in images]))


def _spec_batches(images):
    """Two batches of SYNAGEN specs for ``images``, one seed per image."""
    from synth.batched import sample_specs

    count = images.shape[0]
    return [sample_specs(images, "synagen", seeds=range(k * count, (k + 1) * count), size_bin="0.5-1.5%")
            for k in range(2)]


def _givens(names: tuple[str, ...]) -> dict:
    images = _textures_batch()
    makers = {"images_on_gpu": lambda: images, "spec_batches": lambda: _spec_batches(images)}
    unknown = [name for name in names if name not in makers]
    assert not unknown, f"README marker names placeholders this test does not fill: {unknown}; add them to _givens"
    return {name: makers[name]() for name in names}


def _run(names: tuple[str, ...], code: str, line: int) -> dict:
    namespace = _givens(names)
    exec(compile(code, f"README.md (block after line {line})", "exec"), namespace)
    return namespace


def test_the_readme_marks_its_runnable_examples():
    codes = [code for _, _, code in marked_blocks()]
    assert len(codes) >= 3 and any("from synth import synthesize" in code for code in codes)


@pytest.mark.parametrize("line, names, code", [
    pytest.param(*block, id=f"README.md:{block[0]}") for block in marked_blocks()
])
def test_a_marked_readme_block_runs_as_written(line, names, code):
    _run(names, code, line)


def _block(first_import: str) -> tuple[int, tuple[str, ...], str]:
    return next(block for block in marked_blocks() if first_import in block[2])


def test_the_synthesize_example_gives_what_its_comments_say():
    from synth import replay
    from synth.record import RECORD_NAMES

    line, names, code = _block("from synth import synthesize")
    a = _run(names, code, line)["a"]
    brick = skimage.data.brick()
    assert (a.image.dtype, a.image.shape) == (brick.dtype, brick.shape)
    changed = np.abs(a.image.astype(np.int32) - brick.astype(np.int32))
    assert a.mask.dtype == bool and np.array_equal(a.mask, changed > 1)
    # diff = |stored - source| of two float32 roundings of k/255, itself rounded: 3 half-ulps below 1
    assert a.diff.dtype == np.float32
    np.testing.assert_allclose(a.diff, changed / 255, rtol=0, atol=3 * 2.0**-25)
    assert tuple(a.record) == RECORD_NAMES
    assert np.array_equal(replay(brick, a.spec).image, a.image)


def test_the_batch_example_gives_schema_records_on_the_images_device():
    from synth.record import RECORD_NAMES

    line, names, code = _block("from synth.batched import synthesize_batch")
    namespace = _run(names, code, line)
    images, out = namespace["images_on_gpu"], namespace["out"]
    assert out.images.shape == images.shape and out.images.device == images.device
    assert out.masks.shape == (images.shape[0], *images.shape[2:]) and out.masks.any(dim=(1, 2)).all()
    assert [tuple(record) for record in out.records] == [RECORD_NAMES] * images.shape[0]
