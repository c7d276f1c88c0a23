"""Every layout the readers accept comes out as it went in: 8/16-bit gray, gray+alpha, RGB and RGBA
PNGs, 8/16-bit TIFFs, palette images and float TIFFs, through `anomalyforge synth` and the Space's zip.

Inputs are written by OpenCV and Pillow (not by the project); what came out is read from the PNG
header itself (bit depth and colour type), so a reader that cut 16 bits to 8 would be caught."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from synth import load_image

ROOT = Path(__file__).resolve().parents[1]

#: PNG colour type -> channels
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def _rgb8() -> np.ndarray:
    return cv2.resize(skimage.data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)


def _alpha8() -> np.ndarray:  # a ramp, so a lost or rewritten alpha shows
    return np.tile(np.linspace(40, 250, 128).astype(np.uint8), (128, 1))


def _wide(a: np.ndarray) -> np.ndarray:  # 16 bits with low bits that 8-bit storage would lose
    return a.astype(np.uint16) * 257 + 3


def _opencv(path: Path, array: np.ndarray) -> None:
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), array)


def _png_gray_alpha16(path: Path, gray: np.ndarray, alpha: np.ndarray) -> None:
    """A 16-bit gray+alpha PNG (neither OpenCV nor Pillow writes one), chunk by chunk."""
    height, width = gray.shape
    rows = np.dstack([gray, alpha]).astype(">u2").reshape(height, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 4, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _write_inputs(folder: Path) -> dict[str, tuple[str, int]]:
    """Write one file per layout; return file name -> (dtype, channels) the outputs must have."""
    folder.mkdir(parents=True)
    rgb, alpha = _rgb8(), _alpha8()
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    _opencv(folder / "gray8.png", gray)
    _opencv(folder / "gray16.png", _wide(gray))
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(folder / "gray_alpha8.png")
    _png_gray_alpha16(folder / "gray_alpha16.png", _wide(gray), _wide(alpha))
    _opencv(folder / "rgb8.png", rgb)
    _opencv(folder / "rgb16.png", _wide(rgb))
    _opencv(folder / "rgba8.png", np.dstack([rgb, alpha]))
    _opencv(folder / "rgba16.png", _wide(np.dstack([rgb, alpha])))
    _opencv(folder / "gray8.tif", gray)
    _opencv(folder / "gray16.tif", _wide(gray))
    _opencv(folder / "rgb8.tif", rgb)
    _opencv(folder / "rgb16.tif", _wide(rgb))
    _opencv(folder / "rgba16.tif", _wide(np.dstack([rgb, alpha])))
    Image.fromarray(rgb).quantize(64).save(folder / "palette.png")
    Image.fromarray(gray.astype(np.float32) / 255, "F").save(folder / "float.tif")
    return {
        "gray8.png": ("uint8", 1), "gray16.png": ("uint16", 1),
        "gray_alpha8.png": ("uint8", 2), "gray_alpha16.png": ("uint16", 2),
        "rgb8.png": ("uint8", 3), "rgb16.png": ("uint16", 3),
        "rgba8.png": ("uint8", 4), "rgba16.png": ("uint16", 4),
        "gray8.tif": ("uint8", 1), "gray16.tif": ("uint16", 1),
        "rgb8.tif": ("uint8", 3), "rgb16.tif": ("uint16", 3), "rgba16.tif": ("uint16", 4),
        "palette.png": ("uint8", 3),  # palette images become RGB
        "float.tif": ("uint16", 1),  # PNG holds no floats: written with 16 bits
    }


def _png_layout(data: bytes) -> tuple[str, int]:
    """(dtype, channels) a PNG stores, read from its header."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    depth, colour_type = data[24], data[25]
    return ("uint16" if depth == 16 else "uint8"), _PNG_CHANNELS[colour_type]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """(inputs folder, expected layouts, output folder) of one `anomalyforge synth` run."""
    root = tmp_path_factory.mktemp("formats")
    expected = _write_inputs(root / "in")
    result = subprocess.run(
        [sys.executable, str(ROOT / "anomalyforge.py"), "synth", str(root / "in"), str(root / "out"),
         "--per-image", "1", "--shapes", "rough", "--modes", "transparent_noise", "--bins", "2.5-15%",
         "--no-progress"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return root / "in", expected, root / "out"


@pytest.mark.parametrize("name", [
    "gray8.png", "gray16.png", "gray_alpha8.png", "gray_alpha16.png", "rgb8.png", "rgb16.png", "rgba8.png",
    "rgba16.png", "gray8.tif", "gray16.tif", "rgb8.tif", "rgb16.tif", "rgba16.tif", "palette.png", "float.tif"])
def test_synth_outputs_keep_the_inputs_dtype_and_channels(generated, name):
    inputs, expected, out = generated
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r["source_id"] == name)
    data = (out / row["file_name"]).read_bytes()
    assert _png_layout(data) == expected[name]
    source, output = load_image(inputs / name), load_image(out / row["file_name"])
    # the mask holds changes above 1/255; a band around it may change by less (smoothed edges)
    near = cv2.dilate(load_image(out / row["mask_file_name"]), np.ones((15, 15), np.uint8)) > 0
    if source.dtype.kind == "f":
        source = np.rint(source * 65535).astype(np.uint16)
    assert output.shape == source.shape
    # every pixel away from the anomaly, and the alpha everywhere, is the input's to the last bit
    np.testing.assert_array_equal(output[~near], source[~near])
    assert (output != source).any()
    if expected[name][1] in (2, 4):
        np.testing.assert_array_equal(output[..., -1], source[..., -1])


# ------------------------------------------------------------------------------ the Space's zip
@pytest.fixture(scope="module")
def space(tmp_path_factory):
    pytest.importorskip("gradio_client")
    import app

    patch = pytest.MonkeyPatch()
    patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    demo = app.build_demo(app.SpaceConfig())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        patch.undo()


@pytest.mark.parametrize("name", ["gray_alpha16.png", "rgb16.tif", "rgba16.png", "gray16.tif", "rgb8.png"])
def test_the_spaces_zip_keeps_the_uploads_dtype_and_channels(generated, space, name, tmp_path):
    from gradio_client import Client, handle_file

    inputs, expected, _ = generated
    client = Client(space, verbose=False, download_files=str(tmp_path))
    result = client.predict(handle_file(str(inputs / name)), "synagen", "rough", "transparent_noise", "2.5-15%",
                            1, 0, None, None, api_name="/generate")
    archive = next(p for p in result[4] if p.endswith(".zip"))
    with zipfile.ZipFile(archive) as zf:
        images = [n for n in zf.namelist() if n.startswith("images/")]
        assert len(images) == 1
        data = zf.read(images[0])
    assert _png_layout(data) == expected[name]
