"""The Space in a real browser: headless Chromium opens the page, uploads an image, generates.

Needs the ``chromium`` executable (Debian package ``chromium``; Playwright cannot download its own
browser here) and Playwright's Python package.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import skimage.data

from synth import save_png

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` executable on PATH (apt-get install chromium)")
def test_upload_generate_and_see_results_in_chromium(app_url, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    upload = tmp_path / "gravel_crop.png"
    save_png(upload, np.ascontiguousarray(skimage.data.gravel()[:200, :240]))

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(app_url, wait_until="domcontentloaded", timeout=60_000)
            page.get_by_role("button", name="Generate", exact=True).wait_for(timeout=60_000)

            # replace the example image with the user's own file
            image_box = page.locator("#image-in")
            clear = image_box.get_by_role("button", name="Clear")
            if clear.count():
                clear.first.click()
            image_box.locator("input[type=file]").first.set_input_files(str(upload))
            page.wait_for_timeout(1000)

            page.locator("#generate-btn").click()
            thumbs = page.locator("#gallery img")
            thumbs.first.wait_for(state="visible", timeout=90_000)
            page.get_by_text("gravel_crop_000_", exact=False).first.wait_for(timeout=30_000)
            assert thumbs.count() >= 4  # the default count is 4
            table_text = page.locator("#metadata").inner_text()
            assert "gravel_crop_000_" in table_text and "synagen" in table_text
            page.wait_for_timeout(500)
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
