"""Speed and memory of `anomalyforge hub build` at 256^2 and 1024^2 (run by hand, prints a table).

    python benchmarks/hub_build.py [--sources 4] [--workers 1] [--flat-rows 200 800]

Three measurements, each in a fresh process so that its peak RSS is its own:

* generate  synth.protocol.run_protocol on N anomaly-free images (SYNAGEN, 2 shapes x 2 modes x 1 bin)
* shards    hub_tools.build_dataset on that imagefolder: parquet shards + card (no generation)
* validate  the checks `hub push` runs first (decodes every mask, compares sizes)
* flat      shard writing only, from an imagefolder of R rows made by hard-linking the generated files
            (R large): peak RSS should not grow with R -- rows are streamed, row groups are bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GENERATION = dict(per_image=1, shapes=["rough", "complex"], modes=["gray_noise", "mean_noise"], bins=["0.5-1.5%"],
                  seed=0)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_sources(folder: Path, n: int, size: int) -> None:
    import cv2
    import numpy as np
    import skimage.data

    from synth import save_png

    names = ["brick", "grass", "gravel", "camera", "coins", "moon", "text", "page"]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = getattr(skimage.data, names[i % len(names)])()
        if image.ndim == 3:
            image = image[:, :, 0]
        reps = -(-size // min(image.shape[:2]))
        image = np.tile(image, (reps, reps))[:size, :size]
        if i >= len(names):  # distinct content for repeated textures
            image = cv2.flip(image, i % 3 - 1)
        save_png(folder / f"src{i:03d}.png", np.ascontiguousarray(image))


def child(mode: str, args: list[str]) -> dict:
    """Run one measurement in this process and return its numbers."""
    t0 = time.perf_counter()
    if mode == "generate":
        from synth.protocol import run_protocol

        sources, out, workers = args
        rows = run_protocol(sources, out, workers=int(workers), progress=False, **GENERATION)
        n = len(rows)
    elif mode == "validate":
        from hub_tools.build import validate_build

        n = validate_build(args[0])["counts"]["test"]
    else:
        from hub_tools.build import build_dataset

        imagefolder, sources, out = args
        n = build_dataset(imagefolder, out, sources_dir=sources, progress=False).counts["test"]
    return {"rows": n, "seconds": time.perf_counter() - t0, "peak_rss_mb": _peak_mb()}


def run_child(mode: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, *args], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def hardlinked_folder(generated: Path, out: Path, rows: int) -> None:
    """An imagefolder of ``rows`` rows whose files are hard links to the generated ones."""
    meta = [json.loads(line) for line in (generated / "metadata.jsonl").read_text().splitlines() if line.strip()]
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    lines = []
    for i in range(rows):
        row = dict(meta[i % len(meta)])
        image, mask = f"images/r{i:06d}.png", f"masks/r{i:06d}.png"
        os.link(generated / row["file_name"], out / image)
        os.link(generated / row["mask_file_name"], out / mask)
        row.update(file_name=image, mask_file_name=mask)
        lines.append(json.dumps(row) + "\n")
    (out / "metadata.jsonl").write_text("".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=4, help="anomaly-free images per size (default 4)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--flat-rows", type=int, nargs="+", default=[200, 800])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1:])))
        return

    table = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size in args.sizes:
            sources = tmp / f"src{size}"
            make_sources(sources, args.sources, size)
            generated = tmp / f"gen{size}"
            gen = run_child("generate", str(sources), str(generated), str(args.workers))
            table.append((f"{size}^2", "generate", gen))
            shards = run_child("shards", str(generated), str(sources), str(tmp / f"build{size}"))
            table.append((f"{size}^2", "shards", shards))
            if size == max(args.sizes):
                for rows in args.flat_rows:
                    folder = tmp / f"flat{size}_{rows}"
                    hardlinked_folder(generated, folder, rows)
                    flat = run_child("shards", str(folder), str(sources), str(tmp / f"flatbuild{size}_{rows}"))
                    table.append((f"{size}^2", f"shards {rows} rows", flat))
                    check = run_child("validate", str(tmp / f"flatbuild{size}_{rows}"))
                    table.append((f"{size}^2", f"validate {rows} rows", check))
                    shutil.rmtree(folder)
                    shutil.rmtree(tmp / f"flatbuild{size}_{rows}")

    print(f"\nhub build benchmark ({args.sources} sources per size, workers={args.workers}, "
          f"{os.cpu_count()} CPUs)\n")
    print(f"{'size':>7}  {'phase':<18} {'rows':>6} {'seconds':>8} {'rows/s':>8} {'peak RSS MB':>12}")
    for size, phase, r in table:
        print(f"{size:>7}  {phase:<18} {r['rows']:>6} {r['seconds']:>8.2f} {r['rows'] / r['seconds']:>8.1f} "
              f"{r['peak_rss_mb']:>12.0f}")
    flat = [r for _, phase, r in table if phase.startswith("shards ") and phase.endswith(" rows")]
    if len(flat) >= 2:
        a, b = flat[0], flat[-1]
        rate = (b["rows"] - a["rows"]) / max(b["seconds"] - a["seconds"], 1e-9)
        print(f"\nshard writing at {max(args.sizes)}^2 without start-up cost: {rate:.0f} rows/s; "
              f"peak RSS {a['peak_rss_mb']:.0f} MB at {a['rows']} rows vs {b['peak_rss_mb']:.0f} MB at {b['rows']} rows")


if __name__ == "__main__":
    main()
