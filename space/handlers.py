"""What each button does: thin calls into ``synth``, ``detect`` and ``hub_tools``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
import numpy as np
import pandas as pd

from synth import DEFAULT_BINS, synthesize
from synth.export import export_parquet, export_rows, export_zip
from synth.files import sha256_file
from synth.preview import contour_overlay, display_rgb, mask_preview, shrink
from synth.version import tool_version

from detect.evaluation.calibration import CLEAN, Calibration, Reference, held_out_split, mirror_split
from detect.evaluation.stress import TEXTURE_SPREAD_LIMIT, StressConfig, texture_spread
from detect.images import as_colour

from space.config import (
    DETECTORS,
    MAX_COUNT,
    MAX_DETECT_IMAGES,
    MIN_SIDE,
    PARQUET_MAX_BYTES,
    PREVIEW_SIDE,
    RANDOM,
    SpaceConfig,
)
from space.device import score_on_device, stress_on_device
from space.examples import EXAMPLE_NAMES, example_image, example_paths
from space.inputs import (
    checked_choice,
    checked_int,
    read_upload,
    readable_uploads,
    upload_notes,
    upload_paths,
    uploaded_model,
    warn,
)
from space.generate import (
    allowed_region,
    available_methods,
    check_pair,
    generate_status,
    make_anomalies,
    method_options,
    paired_options,
)
from space.storage import WorkArea, save_view
from space.views import (
    BROWSE_COLUMNS,
    DETECT_COLUMNS,
    STRESS_COLUMNS,
    colour_bar,
    detect_views,
    record_table,
)


def on_method_change(method: str):
    shapes, modes, sized = method_options(method)
    return (
        gr.Dropdown(choices=shapes, value=RANDOM),
        gr.Dropdown(choices=modes, value=RANDOM),
        gr.Dropdown(interactive=sized, value=RANDOM,
                    info=None if sized else f"{method} does not steer the size; the measured bin is reported"),
    )


def on_shape_or_mode_change(method: str, shape: str, mode: str):
    """Narrow the shapes to those made in the chosen mode and the modes to those made with the
    chosen shape (only a mixture of methods has pairs it cannot make)."""
    shapes, modes = paired_options(method, shape, mode)
    return (gr.Dropdown(choices=shapes, value=shape if shape in shapes else RANDOM),
            gr.Dropdown(choices=modes, value=mode if mode in modes else RANDOM))


GENERATED = "the Generate tab's image"
#: anomalies scored by a Detect click with nothing generated and nothing uploaded
DETECT_DEMO_COUNT = 3


def _files_key(paths: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(bytes.fromhex(sha256_file(p)))
    return digest.hexdigest()[:16]


def chosen_detector(detector_name: str, model_file: Any) -> tuple[str, dict, Any]:
    """The detector a request asked for: a built-in name, replaced by the visitor's uploaded ONNX
    file when there is one; ``(name, options, upload)`` with ``upload`` ``None`` for a built-in."""
    if detector_name not in DETECTORS:
        raise gr.Error(f"unknown detector {detector_name!r}; choose from {', '.join(DETECTORS)}",
                       print_exception=False)
    uploaded = uploaded_model(model_file)
    if uploaded is None:
        return detector_name, {}, None
    name, options = uploaded
    return name, options, uploaded


def detector_error(exc: Exception, model_file: Any) -> gr.Error:
    """A detector's failure as the visitor reads it: an uploaded model named by its file name,
    not by the server's path to it."""
    text = str(exc)
    if model_file:
        text = text.replace(str(model_file), Path(model_file).name)
    return gr.Error(text, print_exception=False)


class Space:
    """The app's event handlers, with the state they share made explicit: the settings, the per-
    session file area, and the example textures. ``build_demo`` wires them to the widgets."""

    def __init__(self, config: SpaceConfig, work: WorkArea) -> None:
        self.config, self.work = config, work
        self.examples = example_paths(work.root / "examples")

    # ----------------------------------------------------------------------------- generate
    def generate(
        self,
        image_path: str | None,
        method: str,
        shape: str,
        mode: str,
        size_bin: str,
        count: float,
        seed: float,
        region_drawing: dict | None,
        region_mask_path: str | None,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ):
        """Make ``count`` anomalies (seeds ``seed``, ``seed + 1``, ...) in the image; previews, table, files."""
        image = read_upload(image_path)
        warn(upload_notes(image_path, image))
        if method not in available_methods():
            raise gr.Error(f"unknown method {method!r}; choose from {', '.join(available_methods())}",
                           print_exception=False)
        shapes, modes, sized = method_options(method)
        shape_arg = checked_choice(shape, shapes[1:], "shape")
        mode_arg = checked_choice(mode, modes[1:], "mode")
        check_pair(method, shape_arg, mode_arg)
        bin_arg = checked_choice(size_bin, [b.name for b in DEFAULT_BINS], "size bin") if sized else None
        count = checked_int(count, "count", 1, MAX_COUNT)
        seed = checked_int(seed, "seed", 0, 2**62)
        region, region_source = allowed_region(image, region_drawing, region_mask_path)
        textures = tuple(example_image(name) for name in EXAMPLE_NAMES)  # for the "texture" modes

        progress(0.1, desc=f"Generating {count} anomalies")
        anomalies, failures = make_anomalies(image, method, range(seed, seed + count), shape=shape_arg,
                                             mode=mode_arg, size_bin=bin_arg, region=region, textures=textures)
        if not anomalies:  # every seed failed, e.g. for a region too small for the bin: the first says why
            raise gr.Error(failures[0], title="No anomaly could be made", print_exception=False)
        if failures:
            gr.Warning(f"{len(failures)} of {count} anomalies could not be made ({failures[0]}).")

        with self.work.folder(request.session_hash, "generate") as folder:
            source_id = Path(image_path).name
            rows = export_rows(anomalies, source_id)
            before = save_view(folder, "before.png", display_rgb(image, PREVIEW_SIDE))
            gallery, views = [], []
            for i, (anomaly, row) in enumerate(zip(anomalies, rows)):
                overlay = save_view(folder, f"overlay_{i}.png",
                                    contour_overlay(anomaly.image, anomaly.mask, PREVIEW_SIDE))
                after = save_view(folder, f"after_{i}.png", display_rgb(anomaly.image, PREVIEW_SIDE))
                mask = save_view(folder, f"mask_{i}.png", mask_preview(anomaly.mask, PREVIEW_SIDE))
                caption = f"{row['shape']} · {row['mode']} · {row['size_bin']} · seed {row['seed']}"
                gallery.append((overlay, caption))
                views.append({"before": before, "after": after, "mask": mask, "source": str(image_path),
                              "name": Path(row["file_name"]).name})
            config = {
                "tool": f"anomalyforge {tool_version()} (Space)",
                "method": method, "shape": shape_arg, "mode": mode_arg, "size_bin": bin_arg,
                "count": count, "seed": seed, "source_id": source_id, "region": region_source,
            }
            stem = Path(source_id).stem or "image"
            name = f"{stem}_{method}_seed{seed}"
            downloads = [str(export_zip(anomalies, folder / f"{name}.zip", source_id, config=config))]
            parquet = Path(downloads[0]).stat().st_size <= PARQUET_MAX_BYTES
            if parquet:
                downloads.append(str(export_parquet(anomalies, folder / f"{name}.parquet", source_id)))
            generated = {"views": views, "parquet": downloads[1] if parquet else None}
        return (
            gallery,
            (views[0]["before"], views[0]["after"]),
            views[0]["mask"],
            record_table(rows),
            downloads,
            generate_status(len(anomalies), method, region_source, parquet) + " Served on **CPU**.",
            generated,
        )

    # ------------------------------------------------------------------------------- detect
    def detect(
        self,
        detector_name: str,
        fit_files: Any,
        reference: str,
        test_files: Any,
        image_path: str | None,
        generated: dict | None,
        request: gr.Request,
        model_file: Any = None,
        progress: gr.Progress = gr.Progress(),
    ):
        """Score images with a detector fitted on the same kind of image.

        Test images: the uploads, else the anomalies made in Generate (with their clean source),
        else a few anomalies made here on the Generate tab's image. Fit images: the anomaly-free
        uploads, else the Generate tab's image (or an example texture) and its mirror images. The
        threshold and verdicts follow ``detect.evaluation.calibration``.
        """
        from detect.errors import DetectError

        detector_name, model_options, uploaded = chosen_detector(detector_name, model_file)
        shown = Path(detector_name.split(":", 1)[1]).name if uploaded else detector_name
        choices = (GENERATED, *EXAMPLE_NAMES)
        if reference not in choices:
            raise gr.Error(f"unknown reference {reference!r}; choose from {', '.join(choices)}", print_exception=False)
        fit_paths, test_paths = upload_paths(fit_files), upload_paths(test_files)
        if len(fit_paths) + len(test_paths) > MAX_DETECT_IMAGES:
            raise gr.Error(f"at most {MAX_DETECT_IMAGES} images per run (fit + test); got "
                           f"{len(fit_paths) + len(test_paths)}", print_exception=False)
        progress(0.05, desc="Reading images")
        source_path = image_path or self.examples["brick"]
        tests, what = self._detect_tests(test_paths, reference, source_path, generated)
        split, key, source, held = self._detect_reference(fit_paths, reference, source_path)
        if not fit_paths and reference == GENERATED:  # the clean source is the reference image itself
            tests = _clean_source_named_as_reference(tests, uploaded is not None)
        _warn_unlike(tests, split.fit[0])
        progress(0.2, desc=f"Scoring with {shown}" if uploaded else f"Fitting {shown} (once, then cached) and scoring")
        try:
            (normal, result), device = score_on_device(detector_name, key, split.fit,
                                                       [split.held_out, [t for _, t, _ in tests]],
                                                       self.config.detect_size, **model_options)
        except DetectError as exc:
            raise detector_error(exc, model_file) from None
        progress(0.9, desc="Drawing heatmaps")
        calibration = Calibration.from_held_out(normal.scores, normal.maps)
        with self.work.folder(request.session_hash, "detect") as folder:
            gallery, rows = detect_views(folder, tests, result, calibration, split.one_image)
            bar = colour_bar(folder / "colour_bar.png", shown)
        used = f"your model **{shown}**, used as given," if uploaded else f"**{shown}** fitted on {source};"
        status = (f"{used} scored {what}. An image is above the threshold when "
                  f"its score is above the highest score of {held} ({calibration.threshold:.4g}). Synthetic "
                  f"anomalies read DETECTED or MISSED (true mask outlined in cyan), the clean source CLEAN or "
                  f"FALSE ALARM. Served on **{device}**.")
        if split.one_image and any(truth is None for _, _, truth in tests):
            status = ONE_REFERENCE_CAVEAT + status
        if calibration.threshold <= 0:
            status = (f"> ⚠️ **No threshold:** {shown} scores {held} {calibration.threshold:.4g}, so no score is a "
                      "multiple of it; check that the model's output is an anomaly score that grows with the "
                      "anomaly.\n\n" + status)
        return gallery, pd.DataFrame(rows, columns=DETECT_COLUMNS), bar, status

    def _detect_tests(self, test_paths: Sequence[str], reference: str, source_path: str,
                      generated: dict | None) -> tuple[list[tuple[str, np.ndarray, Any]], str]:
        """((name, image, truth) per test image, what they are in words): truth is None (unknown),
        ``CLEAN``, or the anomaly's bool mask."""
        views = (generated or {}).get("views") or []
        if test_paths:
            tests = [(Path(p).name, as_colour(read_upload(p, "test image")), None) for p in test_paths]
            return tests, f"{len(tests)} uploaded image(s)"
        if views and (reference != GENERATED or views[0]["source"] == source_path):
            tests = [("clean source", as_colour(read_upload(views[0]["before"], "clean image")), CLEAN)]
            tests += [(v["name"], as_colour(read_upload(v["after"], "generated image")),
                       read_upload(v["mask"], "mask")[..., 0] > 0) for v in views]
            made = "the anomaly" if len(views) == 1 else f"the {len(views)} anomalies"
            return tests, f"{made} made in Generate and their clean source"
        source = read_upload(source_path)
        method = "synagen" if "synagen" in available_methods() else available_methods()[0]
        tests = [("clean source", as_colour(display_rgb(source, PREVIEW_SIDE)), CLEAN)]
        for seed in range(DETECT_DEMO_COUNT):
            anomaly = synthesize(source, method, seed=seed, size_bin=DEFAULT_BINS[-1].name)
            tests.append((f"{method} seed {seed} ({anomaly.record['shape']}, {anomaly.record['mode']})",
                          as_colour(display_rgb(anomaly.image, PREVIEW_SIDE)),
                          shrink(anomaly.mask.astype(np.uint8) * 255, PREVIEW_SIDE) > 0))
        return tests, (f"{DETECT_DEMO_COUNT} large {method} anomalies made now on {Path(source_path).name} "
                       "and the clean image (generate or upload to score your own)")

    def _detect_reference(self, fit_paths: Sequence[str], reference: str,
                          source_path: str) -> tuple[Reference, str, str, str]:
        """(fit / held-out split, cache key, the fit images in words, the held-out ones in words)."""
        if len(fit_paths) == 1:  # one upload: like the Generate tab's image, its mirror images fit too
            split = mirror_split(as_colour(read_upload(fit_paths[0], "anomaly-free image")))
            return (split, f"upload-mirror:{_files_key(fit_paths)}",
                    f"**{Path(fit_paths[0]).name}** (uploaded) and its two mirror images",
                    f"{Path(fit_paths[0]).name} turned by 180 degrees")
        if fit_paths:
            goods = [as_colour(read_upload(p, "anomaly-free image")) for p in fit_paths]
            split = held_out_split(goods)
            return (split, f"uploads:{_files_key(fit_paths)}", f"{len(split.fit)} uploaded anomaly-free image(s)",
                    "the held-out last anomaly-free image")
        path = source_path if reference == GENERATED else self.examples[reference]
        split = mirror_split(display_rgb(read_upload(path, "reference image"), PREVIEW_SIDE))
        source = (f"**{Path(path).name}** ({'the Generate tab' if reference == GENERATED else 'example'} image) "
                  "and its two mirror images")
        return split, f"mirror:{_files_key([path])}", source, f"{Path(path).name} turned by 180 degrees"

    # -------------------------------------------------------------------------- stress test
    def stress_test(
        self,
        files: Any,
        image_path: str | None,
        method: str,
        detector_name: str,
        total: float,
        k: float,
        seed: float,
        model_file: Any = None,
        progress: gr.Progress = gr.Progress(track_tqdm=True),
    ):
        """The paper's analysis on the user's images: recall at k false positives per shape and mode vs size bin."""
        import matplotlib.pyplot as plt

        from detect.errors import DetectError

        paths = upload_paths(files) or [image_path or self.examples["brick"]]
        if len(paths) > STRESS_MAX_IMAGES:
            raise gr.Error(f"at most {STRESS_MAX_IMAGES} images per stress test; got {len(paths)}",
                           print_exception=False)
        if method not in available_methods():
            raise gr.Error(f"unknown method {method!r}; choose from {', '.join(available_methods())}",
                           print_exception=False)
        detector_name, model_options, _ = chosen_detector(detector_name, model_file)
        config = StressConfig(method=method, detector=detector_name,
                              anomalies=checked_int(total, "number of anomalies", 1, STRESS_MAX),
                              k=checked_int(k, "k (false positives)", 1, 5), seed=checked_int(seed, "seed", 0, 2**62),
                              grid=STRESS_GRID, image_size=min(STRESS_SIZE, self.config.detect_size), min_side=MIN_SIDE)
        progress(0.0, desc="Reading images")
        images, skipped = _tileable(paths, *readable_uploads(paths))
        try:
            result, device = stress_on_device(images, config, **model_options)
        except DetectError as exc:
            raise detector_error(exc, model_file) from None
        parts = []
        for by, name in (("shape", "shape_size"), ("mode", "mode_size")):
            part = result.tables[name].rename(columns={by: "value"})
            part.insert(0, "by", by)
            parts.append(part)
        table = pd.concat(parts, ignore_index=True)[STRESS_COLUMNS]
        for column in ("recall", "recall_low", "recall_high"):
            table[column] = table[column].astype(float).round(3)
        figures = result.figures()
        for fig in figures.values():
            plt.close(fig)  # gradio draws the figure object itself; pyplot need not keep it
        lines = result.text().splitlines()
        facts = [line for line in lines if not line.startswith("Warning: ")]
        warnings = [line[len("Warning: "):] for line in lines if line.startswith("Warning: ")]
        names = ", ".join(Path(p).name for p in paths if Path(p).name not in skipped)
        status = f"On **{names}**: " + " ".join(facts) + f" Served on **{device}**."
        if skipped:
            status = f"> ⚠️ **Skipped** {', '.join(skipped)}: not usable (see the message).\n\n" + status
        if warnings:
            status = "".join(f"> ⚠️ **Warning:** {w}\n\n" for w in warnings) + status
        return figures["shape"], figures["mode"], table, status

    # ----------------------------------------------------------------------------- datasets
    def browse(self, repo: str, version: str, n_rows: float, generated: dict | None,
               oauth_token: gr.OAuthToken | None = None, request: gr.Request = None):
        """A few rows (image with mask outline, metadata): of a published version on the Hub
        (read anonymously, or as the signed-in visitor -- never with the app's own token), or,
        with no name given, of the dataset made in the Generate tab (or a small example one)."""
        repo, version = (repo or "").strip(), (version or "").strip()
        n_rows = checked_int(n_rows, "rows", 1, 24)
        empty = pd.DataFrame(columns=BROWSE_COLUMNS)
        if not repo:
            gallery, table, status = self._browse_local(generated, n_rows, request)
            if version:  # a version names a published dataset; without a name it was silently dropped
                status = f"Version {version} is not used: versions are of a dataset on the Hub (ORG/NAME). " + status
            return gallery, table, status
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise gr.Error(f"give the dataset as ORG/NAME, got {repo!r}", print_exception=False)
        from hub_tools.errors import DatasetNotFoundError, HubToolsError, ValidationError
        from hub_tools.preview import read_rows

        token = oauth_token.token if oauth_token is not None else False
        try:
            rows, version, total = read_rows(repo, version or None, n_rows, token=token)
        except DatasetNotFoundError as exc:
            signed = "" if oauth_token is not None else " Sign in with Hugging Face to read your own private datasets."
            return [], empty, f"### `{repo}`: not found or private\n{exc}.{signed}"
        except ValidationError as exc:
            raise gr.Error(str(exc), title="Not an anomalyforge dataset", print_exception=False) from None
        except HubToolsError as exc:
            return [], empty, (f"### Could not load `{repo}` {version or '(latest)'}\n{exc}\n\nThe Hugging Face "
                               "Hub may be unreachable from this machine. Leave the name empty to browse the dataset "
                               "made in the Generate tab.")
        gallery, table = self._rows_view(rows, request)
        return gallery, table, f"`{repo}` version {version}: showing {len(table)} of {total} rows of the `test` split."

    def _browse_local(self, generated: dict | None, n_rows: int, request: gr.Request | None):
        parquet = (generated or {}).get("parquet")
        if parquet and Path(parquet).is_file():
            import datasets
            import pyarrow.parquet as pq

            table = pq.read_table(parquet)
            rows = datasets.Dataset(table.slice(0, n_rows))
            what = f"the dataset made in the Generate tab ({Path(parquet).name})"
            total = table.num_rows
        else:
            rows = self._example_dataset(n_rows)
            what = ("a small example dataset (SYNAGEN anomalies on the three example textures); make your own in "
                    "the Generate tab")
            total = len(rows)
        gallery, table = self._rows_view(rows, request)
        return gallery, table, f"Showing {len(table)} of {total} rows of {what}. Name an ORG/NAME to browse the Hub."

    def _example_dataset(self, n_rows: int):
        import datasets
        import pyarrow.parquet as pq

        path = self.work.root / "examples" / "example_dataset.parquet"
        if not path.is_file():
            anomalies, sources = [], []
            for i in range(6):
                name = EXAMPLE_NAMES[i % len(EXAMPLE_NAMES)]
                size_bin = DEFAULT_BINS[-2 - i % 3].name  # the larger bins: visible in a thumbnail
                anomalies.append(synthesize(example_image(name), "synagen", seed=i, size_bin=size_bin))
                sources.append(f"{name}.png")
            export_parquet(anomalies, path, sources)
        return datasets.Dataset(pq.read_table(path).slice(0, n_rows))

    def _rows_view(self, rows, request: gr.Request | None):
        from hub_tools.schema import decode_labels

        features = rows.features
        gallery, records = [], []
        with self.work.folder(getattr(request, "session_hash", None), "browse") as folder:
            for i in range(len(rows)):
                row = rows[i]
                image, mask = np.asarray(row["image"]), np.asarray(row["mask"]) > 0
                if mask.ndim == 3:
                    mask = mask.any(axis=2)
                stored = {column: row.get("area_fraction" if column == "area_%" else column)
                          for column in BROWSE_COLUMNS}
                record = decode_labels(stored, features)
                record["area_%"] = round(100.0 * float(record["area_%"]), 4)
                record["brightness_delta"] = round(float(record["brightness_delta"]), 4)
                records.append(record)
                overlay = save_view(folder, f"row_{i}.png", contour_overlay(image, mask, PREVIEW_SIDE))
                gallery.append((overlay, f"{record['shape']} · {record['mode']} · {record['size_bin']}"))
        return gallery, pd.DataFrame(records, columns=BROWSE_COLUMNS)

    def show_in_editor(self, image_path: str | None, request: gr.Request):
        """Put the uploaded image under the region editor's brush (as an 8-bit preview, written
        to the session's work folder like every file the app makes); an unusable upload is said
        at once (a warning)."""
        if not image_path:
            return gr.ImageEditor(value=None)
        try:
            image = read_upload(image_path)
        except gr.Error as exc:  # said at once, not only at the Generate click
            gr.Warning(exc.message)
            return gr.ImageEditor(value=None)
        with self.work.folder(getattr(request, "session_hash", None), "editor") as folder:
            preview = save_view(folder, "background.png", display_rgb(image, PREVIEW_SIDE))
        return gr.ImageEditor(value={"background": preview, "layers": [], "composite": None})

    def release(self, request: gr.Request) -> None:
        """The visitor closed the page: their files go now, not at the next expiry."""
        self.work.release(request.session_hash)


def show_selected(generated: dict | None, evt: gr.SelectData):
    """Gallery click: show that anomaly in the before/after slider and the mask view."""
    views = (generated or {}).get("views") or []
    if not views or evt.index is None or not 0 <= int(evt.index) < len(views):
        return gr.ImageSlider(), gr.Image()
    view = views[int(evt.index)]
    return (view["before"], view["after"]), view["mask"]


ONE_REFERENCE_CAVEAT = (
    "> ⚠️ **One reference image, so no verdict.** The threshold is the score of a single held-out view, "
    "and clean images often score up to about 1.5x it: read the scores as a ranking. Upload 3 or more "
    "anomaly-free images of the same kind for a threshold that means anomalous.\n\n"
)


def _clean_source_named_as_reference(tests: Sequence[tuple[str, np.ndarray, Any]],
                                     model_as_given: bool) -> list[tuple[str, np.ndarray, Any]]:
    """Say of a clean source that is the reference image what that means for its verdict: a detector
    fitted on it, or a model whose threshold its own 180-degree turn sets, gives it no independent test."""
    note = "turned 180°, it sets the threshold" if model_as_given else "fitted on"
    return [(f"{name} ({note})" if truth is CLEAN else name, image, truth) for name, image, truth in tests]


def _warn_unlike(tests: Sequence[tuple[str, np.ndarray, Any]], fit_image: np.ndarray) -> None:
    """Warn about test images of another kind than the fit images: they score high whatever they show."""
    unlike = [name for name, image, _ in tests if texture_spread([fit_image, image]) > TEXTURE_SPREAD_LIMIT]
    if unlike:
        gr.Warning(f"{', '.join(unlike[:3])}{' ...' if len(unlike) > 3 else ''} look unlike the images the "
                   "detector is fitted on, so they will score high whatever they show: upload anomaly-free "
                   "images of their kind (or choose another image to fit on).")


def _tileable(paths: Sequence[str], images: list[np.ndarray],
              skipped: list[str]) -> tuple[list[np.ndarray], list[str]]:
    """The read images large enough to cut into the stress test's tiles, and the names of all
    skipped ones; each image too small is said in a warning (one would stop the whole run)."""
    read = [Path(p).name for p in paths if Path(p).name not in skipped]
    kept = []
    for name, image in zip(read, images):
        height, width = image.shape[:2]
        if min(height, width) >= STRESS_MIN_SIDE:
            kept.append(image)
            continue
        skipped.append(name)
        gr.Warning(f"Skipped: {name} is {width}x{height} pixels; the stress test cuts each image into "
                   f"{STRESS_GRID}x{STRESS_GRID} tiles of at least {MIN_SIDE} px, so it needs "
                   f"{STRESS_MIN_SIDE}x{STRESS_MIN_SIDE} or more.")
    if not kept:
        raise gr.Error(f"no image is large enough for the stress test: it needs {STRESS_MIN_SIDE}x{STRESS_MIN_SIDE} "
                       f"pixels or more ({STRESS_GRID}x{STRESS_GRID} tiles of at least {MIN_SIDE} px).",
                       title="Images too small", print_exception=False)
    return kept, skipped


#: anomalies per stress test, at most
STRESS_MAX = 400
#: tiles per side of each stress-test image
STRESS_GRID = 4
#: shorter side a stress-test image needs: its tiles must be detector-sized
STRESS_MIN_SIDE = STRESS_GRID * MIN_SIDE
#: images per stress test, at most
STRESS_MAX_IMAGES = 8
#: side the stress test's detector works at (tiles are small; 128 px keeps a run near 10 s on CPU)
STRESS_SIZE = 128


