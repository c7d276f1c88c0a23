"""Throughput of the numpy path and the batched torch renderer, 256² and 1024² RGB.

    python benchmarks/batched_speed.py [--seeds 8] [--sizes 256 1024] [--batch 40] [--methods synagen cutpaste ...]
                                       [--prep-threads N] [--no-protocol] [--paths numpy cpu cuda]

``--methods`` (default: synagen) takes any of ``synth.batched.BATCHED_METHODS``; each gets its
rows.

Each drawn anomaly is rendered in all five default bins (the protocol's pattern), so a run makes
``seeds x 5`` anomalies per path and size. Rows:

* ``numpy``: ``synth.synthesize`` one anomaly at a time, one process (OpenCV single-threaded);
* ``torch cpu`` / ``torch cuda``: ``synth.batched.render_batch`` on batches of ``--batch``
  (the CUDA row only when a GPU is present; its timing synchronises before reading the clock).

"in memory" counts rendering with masks and records, the next batch's specs and plans made on
``--prep-threads`` CPU threads while a batch renders (as the protocol's runner does); "plans
only" is the rate of that CPU stage alone (drawing specs and making plans, nothing rendered),
and "plans share" is in-memory rate / plans-only rate: near 100 % the CPU planning bounds the
throughput (more plan threads or CPUs help), well below it the rendering does. Shape caches
are emptied before every timed run, so each run makes its own shapes (once per drawn shape, for
its five bins, as the protocol does); "to parquet" adds PNG encoding of image and
mask and writing one parquet file (pyarrow), the encoding on a thread pool that overlaps the
next batch's rendering for the torch rows; "protocol" is ``run_protocol`` end to end into an
imagefolder (one source image; SYNAGEN: 4 shapes x 1 mode x 5 bins = 20 outputs, the other
methods their shapes and modes x 5 bins; ``--device`` for the
torch rows, PNG bands reused from the source's encoding as the protocol does). "in bin" is the
share of outputs whose measured changed area lies in the requested bin. Wall-clock seconds: run
it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import skimage.data
import torch

from synth import DEFAULT_BINS, synthesize
from synth.batched import BATCHED_METHODS, prepare_batch, sample_specs
from synth.methods.synagen import batched as batched_synagen
from synth.batched.prepare import default_threads
from synth.image import encode_png, save_png
from synth.protocol import run_protocol
from synth.methods.synagen.modes import _noise_field
from synth.methods.synagen.scaling import _scaled_cached
from synth.methods.synagen.shapes import _panel_cached, _rotated_cached


def _image(size: int) -> np.ndarray:
    return cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_LINEAR)


def _write(rows: list[tuple[bytes, bytes, str]]) -> None:
    table = pa.table({
        "image": [r[0] for r in rows], "mask": [r[1] for r in rows], "record": [r[2] for r in rows],
    })
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(table, f"{tmp}/part.parquet")


def _encode(image: np.ndarray, mask: np.ndarray, record: dict) -> tuple[bytes, bytes, str]:
    return encode_png(image), encode_png(mask.astype(np.uint8) * 255), str(record)


def numpy_path(size: int, seeds: int, parquet: bool, method: str = "synagen") -> tuple[float, float]:
    image = _image(size)
    rows, hits, total = [], 0, 0
    _cold()
    t0 = time.perf_counter()
    for seed in range(seeds):
        for b, size_bin in enumerate(DEFAULT_BINS):
            a = synthesize(image, method, seed=seed, size_bin=b)
            hits += size_bin.contains(a.record["area_fraction"])
            total += 1
            if parquet:
                rows.append(_encode(a.image, a.mask, a.record))
    if parquet:
        _write(rows)
    return total / (time.perf_counter() - t0), hits / total


def _cold() -> None:
    """Forget the shape caches, so every timed run makes its own shapes (each drawn shape is
    still made once for its five bins, as in the protocol)."""
    _panel_cached.cache_clear()
    _rotated_cached.cache_clear()
    _scaled_cached.cache_clear()
    _noise_field.cache_clear()
    batched_synagen._shape.cache_clear()


def _chunks(size: int, seeds: int, batch: int, device: str, method: str, prep_threads: int | None):
    """The torch rows' batches, each prepared (specs drawn, plans started) when asked for."""
    images_all = torch.from_numpy(_image(size)).permute(2, 0, 1)[None].to(device)
    # the protocol's jobs: every seed in every bin
    jobs = [(seed, b) for seed in range(seeds) for b in range(len(DEFAULT_BINS))]
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        images = images_all.expand(len(chunk), -1, -1, -1).contiguous()
        specs = []
        for seed, b in chunk:
            specs += sample_specs(images[:1], method, seeds=[seed], size_bin=b)
        yield chunk, prepare_batch(images, specs, prep_threads=prep_threads)


def plans_only(size: int, seeds: int, batch: int, device: str, method: str = "synagen",
               prep_threads: int | None = None) -> float:
    """Anomalies per second the CPU stage alone allows: specs drawn and plans made, no rendering."""
    _cold()
    t0 = time.perf_counter()
    count = 0
    for chunk, prepared in _chunks(size, seeds, batch, device, method, prep_threads):
        for plan in prepared.plans:
            plan.result()
        count += len(chunk)
    return count / (time.perf_counter() - t0)


def torch_path(size: int, seeds: int, batch: int, device: str, parquet: bool, method: str = "synagen",
               prep_threads: int | None = None) -> tuple[float, float]:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows, futures, hits, total = [], [], 0, 0
    pool = ThreadPoolExecutor(max_workers=2)
    _cold()
    sync()
    t0 = time.perf_counter()
    stream = _chunks(size, seeds, batch, device, method, prep_threads)
    ahead = next(stream, None)
    while ahead is not None:
        chunk, prepared = ahead
        ahead = next(stream, None)  # the next batch plans on CPU threads while this one renders
        out = prepared.render()
        for k, (seed, b) in enumerate(chunk):
            hits += DEFAULT_BINS[b].contains(out.records[k]["area_fraction"])
        total += len(chunk)
        if parquet:
            host_images = out.images.permute(0, 2, 3, 1).cpu().numpy()
            host_masks = out.masks.cpu().numpy()
            futures += [pool.submit(_encode, host_images[k], host_masks[k], out.records[k]) for k in range(len(chunk))]
    sync()
    if parquet:
        rows = [f.result() for f in futures]
        _write(rows)
    elapsed = time.perf_counter() - t0
    pool.shutdown()
    return total / elapsed, hits / total


def protocol(size: int, device: str | None, batch: int, method: str = "synagen") -> float:
    with tempfile.TemporaryDirectory() as tmp:
        save_png(f"{tmp}/astronaut.png", _image(size))
        extra = {} if device is None else {"device": device, "batch_size": batch}
        t0 = time.perf_counter()
        if method == "synagen":
            extra["modes"] = ["gray_noise"]
        rows = run_protocol(tmp, f"{tmp}/out", method=method, per_image=1, progress=False, **extra)
        return len(rows) / (time.perf_counter() - t0)


def main() -> None:
    cv2.setNumThreads(1)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8, help="drawn anomalies per size (each in 5 bins)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--batch", type=int, default=40, help="anomalies per torch batch")
    parser.add_argument("--methods", nargs="+", default=["synagen"], choices=BATCHED_METHODS,
                        help="methods to measure (default: synagen)")
    parser.add_argument("--prep-threads", type=int, default=None,
                        help=f"CPU threads making the torch rows' plans (default: every usable CPU, here {default_threads()})")
    parser.add_argument("--no-protocol", action="store_true", help="leave out the protocol column (faster)")
    parser.add_argument("--paths", nargs="+", default=["numpy", "cpu", "cuda"], choices=["numpy", "cpu", "cuda"],
                        help="rows to measure (default: all; cuda only where a GPU is present)")
    args = parser.parse_args()
    threads = args.prep_threads or default_threads()
    paths = [("numpy (1 process)", None)] if "numpy" in args.paths else []
    if "cpu" in args.paths:
        paths.append(("torch cpu", "cpu"))
    if "cuda" in args.paths and torch.cuda.is_available():
        paths.append((f"torch cuda ({torch.cuda.get_device_name(0)})", "cuda"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch CPU threads, {threads} plan threads; "
          f"{args.seeds} seeds x 5 bins per row, batches of {args.batch}")
    print("| method | size | path | in memory: anomalies/s | in bin | plans only: anomalies/s | plans share "
          "| to parquet: anomalies/s | in bin | protocol: anomalies/s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for method in args.methods:
        for size in args.sizes:
            for name, device in paths:
                if device is not None:  # warm-up: first-call allocations and kernel selection
                    torch_path(size, 1, args.batch, device, parquet=False, method=method, prep_threads=threads)
                results = []
                for parquet in (False, True):
                    if device is None:
                        results.append(numpy_path(size, args.seeds, parquet, method))
                    else:
                        results.append(torch_path(size, args.seeds, args.batch, device, parquet, method, threads))
                (mem, mem_rate), (pq_speed, pq_rate) = results
                plans, share = "—", "—"
                if device is not None:
                    plan_speed = plans_only(size, args.seeds, args.batch, device, method, threads)
                    plans, share = f"{plan_speed:.1f}", f"{100 * min(1.0, mem / plan_speed):.0f} %"
                folder = "—" if args.no_protocol else f"{protocol(size, device, args.batch, method):.1f}"
                print(f"| {method} | {size}² | {name} | {mem:.1f} | {100 * mem_rate:.0f} % | {plans} | {share} "
                      f"| {pq_speed:.1f} | {100 * pq_rate:.0f} % | {folder} |", flush=True)


if __name__ == "__main__":
    main()
