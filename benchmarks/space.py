"""Response times of the Space's endpoints, measured the way a user meets them (HTTP, gradio_client).

    python benchmarks/space.py               # launches the app on a free port, prints a table

Rows: Generate (4 and 16 anomalies on the 512 x 512 brick example), Detect with the example
detector (first call fits it, the second reuses it), the stress test (100 anomalies, PatchCore),
and 20 users asking for one anomaly each at the same time (wall time until the last is served).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradio_client import Client, handle_file  # noqa: E402

import app  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    demo = app.build_demo()
    port = _free_port()
    app.launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    client = Client(url, verbose=False)
    examples = demo.space.examples
    brick = handle_file(examples["brick"])

    def generate(count: int, seed: int = 0):
        return lambda: client.predict(brick, "synagen", "random", "random", "random", count, seed, None, None,
                                      api_name="/generate")

    def detect():
        return client.predict("patchcore", [], "brick", [brick, handle_file(examples["grass"])], None,
                              api_name="/detect")

    def stress(total: int):
        return lambda: client.predict([], brick, "synagen", "patchcore", total, 1, 0, api_name="/stress_test")

    def crowd():
        threads = []
        for i in range(20):
            c = Client(url, verbose=False)
            threads.append(threading.Thread(target=lambda c=c, i=i: c.predict(
                brick, "synagen", "random", "random", "0.1-0.5%", 1, i, None, None, api_name="/generate")))
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    rows = [
        ("generate, 4 anomalies, 512x512", _timed(generate(4))),
        ("generate, 16 anomalies, 512x512", _timed(generate(16, 100))),
        ("detect, example PatchCore, first call (fits)", _timed(detect)),
        ("detect, example PatchCore, cached", _timed(detect)),
        ("stress test, 80 anomalies (the default; fits)", _timed(stress(80))),
        ("stress test, 80 anomalies, cached detector", _timed(stress(80))),
        ("20 concurrent users, 1 anomaly each", _timed(crowd)),
    ]
    demo.close()
    width = max(len(name) for name, _ in rows)
    print(f"{'request'.ljust(width)} | seconds")
    print(f"{'-' * width}-|--------")
    for name, seconds in rows:
        print(f"{name.ljust(width)} | {seconds:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
