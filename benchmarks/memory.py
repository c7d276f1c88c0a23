"""Peak working memory of `anomalyforge synth` per method and image size, against the estimate
the memory budget is checked with (run by hand).

    python benchmarks/memory.py [--sizes 256 512 1024 2048] [--methods synagen nsa ...] [--channels 1 3]

Each cell is a fresh process that runs the folder protocol (``synth.run_protocol``: decode, render
in the largest default size bin, PNG encode, write) on one ``size x size`` image tiled from
scikit-image's gravel, with a second image as partner; SYNAGEN renders each of its four shapes.
"working" is the process's peak resident memory (``ru_maxrss``) minus its resident memory after the
imports, before the image is made; "estimate" is ``synth.memory.estimated_bytes`` for the method.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("synagen", "nsa", "cutpaste", "cutpaste_scar", "cutout", "fpi", "draem", "foreground_perlin", "fractal")

#: the child process: prints {"working": bytes, "estimate": bytes}
_CELL = r"""
import json, resource, sys, tempfile
from pathlib import Path

def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

import numpy as np, skimage.data
from synth.image import save_png
from synth.memory import estimated_bytes
from synth.protocol import run_protocol

method, size, channels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with tempfile.TemporaryDirectory() as folder:
    baseline = resident()
    gravel = skimage.data.gravel()
    tiles = -(-size // gravel.shape[0])
    image = np.tile(gravel, (tiles, tiles))[:size, :size]
    if channels == 3:
        image = np.dstack([image, image[::-1], image[:, ::-1]])
    save_png(Path(folder, "in", "a.png"), image)
    save_png(Path(folder, "in", "b.png"), np.ascontiguousarray(image[::-1, ::-1]))
    del image, gravel
    modes = ["mean_noise"] if method == "synagen" else None
    run_protocol(Path(folder, "in"), Path(folder, "out"), method=method, per_image=1, modes=modes,
                 bins=["2.5-15%"], progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"working": peak - baseline, "estimate": estimated_bytes(size, size, 1 if channels == 1 else 3, (method,))}))
"""


def measure(method: str, size: int, channels: int) -> dict[str, int] | str:
    result = subprocess.run([sys.executable, "-c", _CELL, method, str(size), str(channels)], capture_output=True,
                            text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    if result.returncode != 0:
        return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 3], choices=[1, 3])
    args = parser.parse_args(argv)
    print("| method | size | channels | working (MB) | bytes/pixel | estimate (MB) | estimate / working |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for method in args.methods:
        for size in args.sizes:
            for channels in args.channels:
                cell = measure(method, size, channels)
                if isinstance(cell, str):
                    print(f"| {method} | {size}² | {channels} | failed: {cell} | | | |")
                    continue
                working, estimate = cell["working"], cell["estimate"]
                print(f"| {method} | {size}² | {channels} | {working / 2**20:.0f} | {working / size**2:.0f} | "
                      f"{estimate / 2**20:.0f} | {estimate / max(working, 1):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
