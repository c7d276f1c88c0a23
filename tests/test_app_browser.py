"""The Space in a real browser: headless Chromium opens the page, uploads an image, generates.

Needs the ``chromium`` executable (Debian package ``chromium``; Playwright cannot download its own
browser here) and Playwright's Python package.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import numpy as np
import pytest
import skimage.data

from synth import save_png

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")


@contextmanager
def _space_page(app_url: str):
    """The Space open in headless Chromium, its Generate button ready."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(app_url, wait_until="domcontentloaded", timeout=60_000)
            page.get_by_role("button", name="Generate", exact=True).wait_for(timeout=60_000)
            yield page
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` executable on PATH (apt-get install chromium)")
def test_upload_generate_and_see_results_in_chromium(app_url, tmp_path):
    upload = tmp_path / "gravel_crop.png"
    save_png(upload, np.ascontiguousarray(skimage.data.gravel()[:200, :240]))

    with _space_page(app_url) as page:
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
        # the mask offers its download, not a "share" that fails off a Hugging Face Space
        assert page.locator("#mask-view").get_by_role("button", name="Download").count() == 1
        assert page.locator("#mask-view").get_by_role("button", name="Share").count() == 0
        table_text = page.locator("#metadata").inner_text()
        assert "gravel_crop_000_" in table_text and "synagen" in table_text
        page.wait_for_timeout(500)
        shot = tmp_path / "app.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000


def _no_error_shown(page) -> None:
    """Neither an error toast nor a red "Error" badge on an output pane."""
    assert page.locator(".toast-body.error").count() == 0
    badges = page.get_by_text("Error", exact=True)
    assert not any(badges.nth(i).is_visible() for i in range(badges.count()))


@pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` executable on PATH (apt-get install chromium)")
def test_a_first_visitor_gets_results_on_every_tab_with_defaults_and_with_uploads(app_url, tmp_path):
    gravel = tmp_path / "my_gravel.png"
    save_png(gravel, np.ascontiguousarray(skimage.data.gravel()[:256, :256]))
    photo = tmp_path / "astronaut.png"
    save_png(photo, np.ascontiguousarray(skimage.data.astronaut()))

    with _space_page(app_url) as page:
        # Generate, defaults: four anomalies on the brick example
        page.locator("#generate-btn").click()
        page.locator("#gallery img").first.wait_for(state="visible", timeout=90_000)
        assert "Made 4 anomalies" in page.locator("#generate-status").inner_text()
        _no_error_shown(page)

        # Detect, defaults: the generated anomalies against a detector fitted on brick itself
        page.get_by_role("tab", name="Detect").click()
        page.locator("#detect-btn").click()
        page.locator("#heatmaps img").first.wait_for(state="visible", timeout=120_000)
        status = page.locator("#detect-status").inner_text()
        assert "fitted on brick.png" in status and "Served on" in status
        caption = page.get_by_text("x threshold · clean source").first
        assert caption.is_visible() and caption.inner_text().startswith("CLEAN")
        assert page.get_by_text("DETECTED ·").first.is_visible()  # a verdict and a score, not cut off
        bar = page.locator("#colour-bar img")
        bar.wait_for(state="visible", timeout=30_000)  # it may load after the heatmaps
        assert bar.bounding_box()["width"] > 200
        _no_error_shown(page)

        # Detect, upload: the visitor's own image is scored and named
        page.locator("#detect-test-files input[type=file]").set_input_files(str(gravel))
        page.wait_for_timeout(1000)
        page.locator("#detect-btn").click()
        page.get_by_text("x threshold · my_gravel.png").first.wait_for(state="visible", timeout=120_000)
        # gravel scored by a detector fitted on brick: the visitor is told why it will look anomalous
        page.get_by_text("look unlike the images the detector is fitted on").first.wait_for(timeout=10_000)
        # one reference image: the caveat comes first, and no confident verdict
        assert page.locator("#detect-status").inner_text().startswith("⚠️ One reference image, so no verdict.")
        assert page.get_by_text("ABOVE REFERENCE · ").first.is_visible()
        _no_error_shown(page)

        # Stress test, defaults: a readable result on the brick example, no chance-level warning
        page.get_by_role("tab", name="Stress test").click()
        page.locator("#stress-btn").click()
        page.locator("#stress-status").get_by_text("Recall").wait_for(state="visible", timeout=180_000)
        for plot in ("#shape-plot img", "#mode-plot img"):
            page.locator(plot).wait_for(state="visible", timeout=30_000)
        assert "chance level" not in page.locator("#stress-status").inner_text()
        _no_error_shown(page)

        # Stress test, upload of a photo: the chance-level warning is shown
        page.locator("#stress-files input[type=file]").set_input_files(str(photo))
        page.wait_for_timeout(1000)
        page.locator("#stress-btn").click()
        page.locator("#stress-status").get_by_text("astronaut.png").wait_for(state="visible", timeout=180_000)
        warning = page.locator("#stress-status").get_by_text("chance level")
        assert warning.is_visible()
        _no_error_shown(page)

        # Datasets, defaults: the rows made in Generate, without the Hub
        page.get_by_role("tab", name="Datasets").click()
        page.locator("#browse-btn").click()
        page.locator("#browse-gallery img").first.wait_for(state="visible", timeout=60_000)
        assert "made in the Generate tab" in page.locator("#browse-status").inner_text()
        _no_error_shown(page)


@pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` executable on PATH (apt-get install chromium)")
def test_layout_bad_uploads_and_errors_leave_no_dead_ends_in_chromium(app_url, tmp_path):
    """Every gallery row shows, the before/after slider fits its image; a bad upload is said at
    upload; after an error no earlier success text remains and no Python object shows."""
    text = tmp_path / "notes.png"
    text.write_text("this is a text file with an image suffix\n")

    with _space_page(app_url) as page:
        page.locator("#generate-btn").click()
        thumbs = page.locator("#gallery img")
        thumbs.first.wait_for(state="visible", timeout=90_000)
        page.wait_for_timeout(500)
        gallery = page.locator("#gallery").bounding_box()
        last = thumbs.last.bounding_box()
        assert thumbs.count() == 4 and last["y"] + last["height"] <= gallery["y"] + gallery["height"]
        for img in page.locator("#before-after img").all():  # the whole image, so the anomaly, in frame
            fit, height, box = img.evaluate(
                "i => [getComputedStyle(i).objectFit, i.getBoundingClientRect().height,"
                " i.parentElement.getBoundingClientRect().height]")
            assert fit == "contain" and height <= box + 1

        page.get_by_role("tab", name="Detect").click()
        page.locator("#detect-btn").click()
        page.get_by_text("DETECTED · ").first.wait_for(state="visible", timeout=120_000)
        assert "Served on" in page.locator("#detect-status").inner_text()

        # a text file among the images to score: said at upload, before any click
        page.locator("#detect-test-files input[type=file]").set_input_files(str(text))
        warning = page.locator(".toast-body").get_by_text("notes.png: not a readable image")
        warning.first.wait_for(state="visible", timeout=30_000)
        # scoring it anyway: the error, and no success text of the run before under it
        page.locator("#detect-btn").click()
        page.locator(".toast-body.error").first.wait_for(state="visible", timeout=60_000)
        toasts = page.locator(".toast-body").all_inner_texts()
        assert not any("object at 0x" in t for t in toasts), toasts
        assert "Served on" not in page.locator("#detect-status").inner_text()


@pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` executable on PATH (apt-get install chromium)")
def test_uploads_answered_once_mixture_pairs_only_and_no_stale_status_in_chromium(app_url, tmp_path):
    tiny = tmp_path / "tiny.png"
    save_png(tiny, np.full((8, 8), 128, np.uint8))
    text = tmp_path / "notes.png"
    text.write_text("this is a text file with an image suffix\n")

    with _space_page(app_url) as page:
        # the metadata's numbers say what they measure
        assert page.locator("#metadata-legend").get_by_text("[x0, y0, x1, y1] of the changed pixels").is_visible()

        # an upload over the example image: one warning, and no failed request beside it
        page.locator("#image-in input[type=file]").first.set_input_files(str(tiny))
        page.locator(".toast-body").get_by_text("tiny.png is 8x8 pixels").first.wait_for(timeout=30_000)
        page.locator("#generate-btn").click()  # answered after the upload's own events
        page.locator(".toast-body.error").first.wait_for(state="visible", timeout=60_000)
        toasts = "\n".join(page.locator(".toast-body").all_inner_texts())
        assert toasts.count("tiny.png is 8x8 pixels") == 2, toasts  # the upload's warning, the click's error
        assert "request failed" not in toasts, toasts

        # a region mask that is no image: said at upload
        page.get_by_text("Region where anomalies may appear").click()
        page.locator("#region-mask input[type=file]").set_input_files(str(text))
        page.locator(".toast-body").get_by_text("notes.png: not a readable image").first.wait_for(timeout=30_000)

        # hybrid: a shape narrows the modes to those one of its methods makes with it
        page.get_by_label("Method").first.click()
        page.get_by_role("option", name="hybrid", exact=True).click()
        page.get_by_label("Shape").first.click()
        page.get_by_role("option", name="rectangle", exact=True).click()
        page.get_by_label("Mode").first.click()
        page.get_by_role("option", name="transparent", exact=True).wait_for(state="detached", timeout=30_000)
        assert page.get_by_role("option").all_inner_texts()[-1] == "paste"

        # Datasets: an error empties the status of the run before
        page.get_by_role("tab", name="Datasets").click()
        page.locator("#browse-btn").click()
        page.locator("#browse-status").get_by_text("Showing").wait_for(timeout=60_000)
        thumbs, gallery = page.locator("#browse-gallery img"), page.locator("#browse-gallery").bounding_box()
        last = thumbs.last.bounding_box()  # every row in view: six rows on four columns
        assert thumbs.count() == 6 and last["y"] + last["height"] <= gallery["y"] + gallery["height"]
        page.get_by_label("Dataset (ORG/NAME", exact=False).fill("not a name")
        page.locator("#browse-btn").click()
        page.locator(".toast-body.error").get_by_text("give the dataset as ORG/NAME").wait_for(timeout=30_000)
        assert "Showing" not in page.locator("#browse-status").inner_text()
