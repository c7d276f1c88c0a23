"""Screenshots of each tab of the Space after its main action, as a first-time visitor sees them.

    python benchmarks/screenshots.py [--output screenshots/] [--upload IMAGE]

Serves the app on a free loopback port, opens it in headless Chromium (Debian's ``chromium``,
driven by Playwright), clicks each tab's main button with its defaults, and writes
``1_generate.png`` ... ``4_datasets.png`` (plus ``5_stress_upload.png`` on the upload, by default
scikit-image's astronaut photo, which the stress test should flag as chance level). Prints a table
of the seconds each action took and the browser console's errors and warnings.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app  # noqa: E402
from synth import save_png  # noqa: E402

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=Path("screenshots"))
    parser.add_argument("--upload", type=Path, default=None, help="image for the stress test's upload step")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs Debian's `chromium` on PATH (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    args.output.mkdir(parents=True, exist_ok=True)
    upload = args.upload
    if upload is None:
        upload = Path(tempfile.mkdtemp()) / "astronaut.png"
        save_png(upload, np.ascontiguousarray(skimage.data.astronaut()))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build_demo()
    app.launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    console: list[str] = []
    timings: list[tuple[str, float]] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning")
                    else None)
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded", timeout=60_000)
            page.get_by_role("button", name="Generate", exact=True).wait_for(timeout=60_000)

            def act(name: str, tab: str | None, button: str, done: str, shot: str, before=None) -> None:
                if tab:
                    page.get_by_role("tab", name=tab).click()
                if before:
                    before()
                start = time.perf_counter()
                page.locator(button).click()
                try:
                    page.locator(done).first.wait_for(state="visible", timeout=180_000)
                except Exception:  # noqa: BLE001 -- keep what the page shows, then stop
                    page.screenshot(path=str(args.output / f"failed_{shot}"), full_page=True)
                    raise
                page.wait_for_timeout(1500)
                timings.append((name, time.perf_counter() - start))
                page.screenshot(path=str(args.output / shot), full_page=True)

            act("Generate (defaults)", None, "#generate-btn", "#gallery img", "1_generate.png")
            act("Detect (defaults)", "Detect", "#detect-btn", "#heatmaps img", "2_detect.png")
            act("Stress test (defaults)", "Stress test", "#stress-btn", "#stress-status :text('Recall')",
                "3_stress.png")
            act("Datasets (defaults)", "Datasets", "#browse-btn", "#browse-gallery img", "4_datasets.png")

            def upload_photo() -> None:
                page.locator("#stress-files input[type=file]").set_input_files(str(upload))
                page.wait_for_timeout(1000)

            act(f"Stress test ({upload.name})", "Stress test", "#stress-btn", f"#stress-status :text('{upload.name}')",
                "5_stress_upload.png", before=upload_photo)
            browser.close()
    finally:
        demo.close()
    print(f"| action | seconds |\n|---|---|")
    for name, seconds in timings:
        print(f"| {name} | {seconds:.1f} |")
    print(f"\nscreenshots in {args.output}/; browser console errors and warnings: {len(console)}")
    for line in console:
        print("  " + line[:300])
    return 0


if __name__ == "__main__":
    sys.exit(main())
