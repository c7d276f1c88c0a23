"""The page: widgets and their wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import gradio as gr
import pandas as pd

from synth import DEFAULT_BINS

from detect.evaluation.stress import StressConfig

from space.config import (
    DETECTORS,
    MAX_COUNT,
    MAX_FILE_SIZE,
    MAX_MODEL_BYTES,
    MAX_UPLOAD_PIXELS,
    MIN_SIDE,
    MODEL_SUFFIX,
    RANDOM,
    SpaceConfig,
)
from space.device import serving_device
from space.examples import EXAMPLE_NAMES
from space.generate import available_methods, method_options
from space.handlers import (
    GENERATED,
    STRESS_GRID,
    STRESS_MAX,
    Space,
    on_method_change,
    on_shape_or_mode_change,
    show_selected,
)
from space.inputs import (
    UPLOADED_FILES,
    check_uploads,
    checked_input,
    cleared,
    size_text,
    uploaded_image,
)
from space.patches import answer_every_error_with_a_message
from space.storage import WorkArea
from space.views import BROWSE_COLUMNS, DETECT_COLUMNS, STRESS_COLUMNS, TABLE_COLUMNS, TABLE_LEGEND


INTRO = """# anomalyforge
Make synthetic anomalies with exact masks in **your own images** (SYNAGEN and other methods), then see
**where a detector is blind**: which shapes, modes and sizes it misses at one false positive.
Every tab works with its defaults: press its main button first, then bring your own images.
Uploads up to {max_file}, {max_mp:.1f} MP, at least {min_side}x{min_side} px. Jobs wait in a queue when
the app is busy. This app runs on **{device}**.
"""


def build_demo(config: SpaceConfig | None = None) -> gr.Blocks:
    """The whole app as ``gr.Blocks`` (not launched). Endpoints: ``/generate``, ``/detect``,
    ``/stress_test``, ``/browse``. ``config`` defaults to ``SpaceConfig()`` (no environment read)."""
    config = config or SpaceConfig()
    methods = available_methods()
    default_method = "synagen" if "synagen" in methods else methods[0]

    # files live inside gradio's cache folder, which gradio serves without copying them again
    with gr.Blocks(title="anomalyforge", delete_cache=(max(1, min(600, config.work_ttl_s)), config.work_ttl_s)) as demo:
        root = config.work_root or Path(demo.GRADIO_CACHE) / "anomalyforge"
        space = Space(config, WorkArea(root, config.disk_budget, config.work_ttl_s))
        demo.space = space  # for tests and scripts that measure the app
        gr.Markdown(INTRO.format(max_file=MAX_FILE_SIZE.upper(), max_mp=MAX_UPLOAD_PIXELS / 1e6, min_side=MIN_SIDE,
                                 device=serving_device()))
        if config.on_space:
            gr.LoginButton(value="Sign in with Hugging Face (to browse your private datasets)", size="sm")
        generated = gr.State({})
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                image = _generate_tab(space, generated, methods, default_method)
            with gr.Tab("Detect", id="detect"):
                _detect_tab(space, image, generated)
            with gr.Tab("Stress test", id="stress"):
                _stress_tab(space, image, methods, default_method)
            with gr.Tab("Datasets", id="datasets"):
                _datasets_tab(space, config, generated)
        demo.unload(space.release)
    answer_every_error_with_a_message(demo)
    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    return demo


def _generate_tab(space: Space, generated: gr.State, methods: Sequence[str], default_method: str) -> gr.Image:
    """The Generate tab; returns its image input, which Detect and Stress test use too."""
    examples = space.examples
    shapes, modes, _ = method_options(default_method)
    bin_choices = [RANDOM, *(b.name for b in DEFAULT_BINS)]
    with gr.Row():
        with gr.Column(scale=1):
            image = uploaded_image("image", label="Image (anomaly-free)", value=examples["brick"],
                                   sources=["upload", "clipboard"], height=320, elem_id="image-in")
            example_list = gr.Examples(examples=[[p] for p in examples.values()], inputs=[image],
                                       label="Examples (CC0 textures from scikit-image)")
            method = checked_input(gr.Dropdown(methods, value=default_method, label="Method"),
                                   "method", "a method name")
            with gr.Row():
                # choices follow the method; the API may name any, generate() checks them
                shape = checked_input(gr.Dropdown(shapes, value=RANDOM, label="Shape",
                                                  allow_custom_value=True), "shape", "a shape name")
                mode = checked_input(gr.Dropdown(modes, value=RANDOM, label="Mode",
                                                 allow_custom_value=True), "mode", "a mode name")
            with gr.Row():
                size_bin = checked_input(gr.Dropdown(bin_choices, value=RANDOM, label="Size bin",
                                                     allow_custom_value=True,
                                                     info="share of image pixels the anomaly changes"),
                                         "size bin", "a size-bin name")
                count = checked_input(gr.Slider(1, MAX_COUNT, value=4, step=1, label="Count"),
                                      "count", f"a whole number from 1 to {MAX_COUNT}")
                seed = checked_input(gr.Number(value=0, precision=0, minimum=0, label="Seed"),
                                     "seed", "a whole number of at least 0")
            with gr.Accordion("Region where anomalies may appear (optional)", open=False):
                region_drawing = checked_input(gr.ImageEditor(
                    label="Paint the allowed region", type="numpy", image_mode="RGBA",
                    sources=[], transforms=[], layers=False,
                    brush=gr.Brush(colors=["#ff0000"], default_size=24, color_mode="fixed"),
                    height=360, value={"background": examples["brick"], "layers": [], "composite": None},
                ), "region drawing", "an editor value {background, layers: [RGBA images], composite}")
                region_mask = uploaded_image("region mask",
                                             label="...or upload a mask (white = allowed, same size)",
                                             sources=["upload"], height=200, elem_id="region-mask")
            generate_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
        with gr.Column(scale=2):
            status = gr.Markdown(elem_id="generate-status")
            gallery = gr.Gallery(label="Anomalies (mask outline in red)", columns=2, height=640,
                                 object_fit="contain", format="png", elem_id="gallery")
            with gr.Row():
                slider = gr.ImageSlider(label="Before / after", type="filepath", height=360,
                                        elem_id="before-after")
                # "share" posts to a Space's community tab: anywhere else it only fails
                mask_view = gr.Image(label="Mask", type="filepath", height=360, interactive=False, elem_id="mask-view",
                                     buttons=["download", "fullscreen", *(["share"] if space.config.on_space else [])])
            table = gr.Dataframe(value=pd.DataFrame(columns=TABLE_COLUMNS), interactive=False, wrap=True,
                                 label="Metadata (one row per anomaly)", elem_id="metadata")
            gr.Markdown(TABLE_LEGEND, elem_id="metadata-legend")
            files = gr.File(label="Download: zip (imagefolder layout) and parquet", file_count="multiple",
                            interactive=False)
    method.change(on_method_change, method, [shape, mode, size_bin], api_visibility="private")
    region_mask.upload(check_uploads, region_mask, None, api_visibility="private")
    for choice in (shape, mode):  # the visitor's choices only: the update itself must not fire them
        choice.input(on_shape_or_mode_change, [method, shape, mode], [shape, mode], api_visibility="private")
    # the visitor's uploads and example clicks, once each (``change`` fires twice for an upload
    # over the image shown); the newest image wins when uploads follow each other quickly
    image.input(space.show_in_editor, image, region_drawing, trigger_mode="always_last", api_visibility="private")
    example_list.load_input_event.then(space.show_in_editor, image, region_drawing, api_visibility="private")
    generate_btn.click(cleared, None, status, queue=False, api_visibility="private").then(
        space.generate,
        [image, method, shape, mode, size_bin, count, seed, region_drawing, region_mask],
        [gallery, slider, mask_view, table, files, status, generated],
        api_name="generate",
    )
    gallery.select(show_selected, generated, [slider, mask_view], api_visibility="private")
    return image


def _detect_tab(space: Space, image: gr.Image, generated: gr.State) -> None:
    gr.Markdown("Scores images with a detector fitted on anomaly-free images of **the same kind**. "
                "With nothing uploaded it scores the anomalies made in Generate (or makes a few) "
                "against a detector fitted on the Generate tab's image.")
    with gr.Row():
        with gr.Column(scale=1):
            detector = checked_input(gr.Dropdown(list(DETECTORS), value="patchcore", label="Detector"),
                                     "detector", "a detector name")
            reference = checked_input(
                gr.Dropdown([GENERATED, *EXAMPLE_NAMES], value=GENERATED, label="Fit the detector on",
                            info="the image's mirror images fit it; uploads below replace it"),
                "reference", "a reference name")
            model_file = gr.File(label="...or your own detector: an ONNX file (e.g. anomalib's "
                                       f"model.onnx; up to {size_text(MAX_MODEL_BYTES)}, used as given)",
                                 file_types=[MODEL_SUFFIX], type="filepath", elem_id="detect-model")
            fit_files = checked_input(
                gr.File(label="...or your anomaly-free images (optional; 2+ recommended)",
                        file_count="multiple", file_types=["image"], type="filepath"),
                "anomaly-free images", UPLOADED_FILES)
            test_files = checked_input(
                gr.File(label="Images to score (optional; default: the Generate tab's anomalies)",
                        file_count="multiple", file_types=["image"], type="filepath",
                        elem_id="detect-test-files"),
                "images to score", UPLOADED_FILES)
            detect_btn = gr.Button("Detect", variant="primary", elem_id="detect-btn")
        with gr.Column(scale=2):
            detect_status = gr.Markdown(elem_id="detect-status")
            heatmaps = gr.Gallery(label="Anomaly heatmaps (verdict · score / threshold · image)",
                                  columns=3, height=560, object_fit="contain", format="png",
                                  elem_id="heatmaps")
            bar = gr.Image(label="Heatmap colour scale", show_label=False, height=90, interactive=False,
                           elem_id="colour-bar", buttons=[])
            scores = gr.Dataframe(value=pd.DataFrame(columns=DETECT_COLUMNS), label="Image scores",
                                  interactive=False, elem_id="scores")
    for upload in (fit_files, test_files):
        upload.upload(check_uploads, upload, None, api_visibility="private")
    detect_btn.click(cleared, None, detect_status, queue=False, api_visibility="private").then(
                     space.detect, [detector, fit_files, reference, test_files, image, generated,
                                    model_file],
                     [heatmaps, scores, bar, detect_status], api_name="detect",
                     concurrency_id="detector", concurrency_limit=1)


def _stress_tab(space: Space, image: gr.Image, methods: Sequence[str], default_method: str) -> None:
    stress_defaults = StressConfig()
    gr.Markdown(
        f"Each image is cut into {STRESS_GRID}x{STRESS_GRID} tiles: alternate tiles fit the detector, "
        "the others are the anomaly-free test tiles. Anomalies cycle through every shape x mode x size "
        "bin of the method on those tiles; the threshold lets exactly *k* anomaly-free tiles through. "
        "Shaded bands are 95 % intervals. Use a **repetitive texture** (fabric, wood, a wall); "
        "without uploads it runs on the Generate tab's image.")
    with gr.Row():
        with gr.Column(scale=1):
            stress_files = checked_input(
                gr.File(label="Anomaly-free images (optional)", file_count="multiple",
                        file_types=["image"], type="filepath", elem_id="stress-files"),
                "anomaly-free images", UPLOADED_FILES)
            stress_method = checked_input(gr.Dropdown(methods, value=default_method, label="Method"),
                                          "method", "a method name")
            stress_detector = checked_input(
                gr.Dropdown(list(DETECTORS), value=stress_defaults.detector, label="Detector"),
                "detector", "a detector name")
            stress_model = gr.File(label="...or your own detector: an ONNX file (used as given)",
                                   file_types=[MODEL_SUFFIX], type="filepath", elem_id="stress-model")
            stress_total = checked_input(
                gr.Slider(10, STRESS_MAX, value=stress_defaults.anomalies, step=10, label="Anomalies",
                          info="more gives narrower intervals and takes longer"),
                "anomalies", f"a whole number from 10 to {STRESS_MAX}")
            stress_k = checked_input(gr.Slider(1, 5, value=1, step=1, label="k (false positives allowed)"),
                                     "k", "a whole number from 1 to 5")
            stress_seed = checked_input(gr.Number(value=0, precision=0, minimum=0, label="Seed"),
                                        "seed", "a whole number of at least 0")
            stress_btn = gr.Button("Run stress test", variant="primary", elem_id="stress-btn")
        with gr.Column(scale=2):
            stress_status = gr.Markdown(elem_id="stress-status")
            gr.Markdown("**Recall per shape** and **per mode** against size bin")
            with gr.Row():
                shape_plot = gr.Plot(show_label=False, elem_id="shape-plot")
                mode_plot = gr.Plot(show_label=False, elem_id="mode-plot")
            stress_table = gr.Dataframe(value=pd.DataFrame(columns=STRESS_COLUMNS),
                                        label="Recall per group (n anomalies per cell, 95 % interval)",
                                        interactive=False, elem_id="stress-table")
    stress_files.upload(check_uploads, stress_files, None, api_visibility="private")
    stress_btn.click(cleared, None, stress_status, queue=False, api_visibility="private").then(
                     space.stress_test,
                     [stress_files, image, stress_method, stress_detector, stress_total, stress_k,
                      stress_seed, stress_model],
                     [shape_plot, mode_plot, stress_table, stress_status], api_name="stress_test",
                     concurrency_id="detector", concurrency_limit=1)


def _datasets_tab(space: Space, config: SpaceConfig, generated: gr.State) -> None:
    gr.Markdown("Browse a dataset: leave the name empty for the one made in the Generate tab (or a "
                "small example), or name a published version on the Hugging Face Hub (ORG/NAME). "
                "The Hub is read anonymously"
                + (", or as you when you sign in above." if config.on_space else "."))
    with gr.Row():
        repo = gr.Textbox(value=config.dataset, label="Dataset (ORG/NAME; empty = made here)",
                          placeholder="empty: the dataset made in the Generate tab")
        version = gr.Textbox(value="", label="Version (e.g. 1.0.0; empty = latest)")
        n_rows = checked_input(gr.Slider(1, 24, value=8, step=1, label="Rows"), "rows",
                               "a whole number from 1 to 24")
    browse_btn = gr.Button("Load rows", variant="primary", elem_id="browse-btn")
    browse_status = gr.Markdown(elem_id="browse-status")
    browse_gallery = gr.Gallery(label="Rows (mask outline in red)", columns=4, height=360, format="png",
                                elem_id="browse-gallery")
    browse_table = gr.Dataframe(value=pd.DataFrame(columns=BROWSE_COLUMNS), label="Metadata",
                                interactive=False)
    browse_btn.click(cleared, None, browse_status, queue=False, api_visibility="private").then(
        space.browse, [repo, version, n_rows, generated], [browse_gallery, browse_table, browse_status],
        api_name="browse")


def launch(demo: gr.Blocks, **options: Any):
    """Launch with the app's limits (upload size, no tracebacks to visitors); ``options`` go to ``launch``."""
    options.setdefault("max_file_size", MAX_FILE_SIZE)
    options.setdefault("show_error", False)
    options.setdefault("css", CSS)
    return demo.launch(**options)


#: the before/after slider fits the whole image in its box (gradio sizes it by width, so a square
#: or tall image lost its bottom, and the anomaly with it); the Generate and Datasets galleries
#: grow to show every row (their fixed-height grids hid the second row below a scroll edge)
CSS = (
    "#before-after img { width: 100% !important; height: 100% !important; object-fit: contain !important; }\n"
    + ", ".join(f"#{g}, #{g} .gallery-container, #{g} .grid-wrap" for g in ("gallery", "browse-gallery"))
    + " { height: auto !important; max-height: none !important; overflow: visible !important; }"
)

