"""The Space through its HTTP API, as a remote user sees it: gradio_client against the launched app.

Every endpoint is called with valid input and with the uploads users really send by mistake (a
text file, a corrupt PNG, a 4x4 image) or on purpose (16-bit, palette, RGBA PNGs).
"""

from __future__ import annotations

import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from space.generate import available_methods, make_anomalies, paired_options  # noqa: E402
from space.handlers import DETECT_DEMO_COUNT  # noqa: E402
from space.views import TRUTH_RGB  # noqa: E402
from synth import decode_image, save_png, synthesize  # noqa: E402


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Uploads of every kind, small so that the tests stay fast."""
    folder = tmp_path_factory.mktemp("uploads")
    grass = np.ascontiguousarray(skimage.data.grass()[:160, :160])
    astronaut = np.ascontiguousarray(skimage.data.astronaut()[100:260, 150:310])
    paths = {}
    paths["grass"] = folder / "grass.png"
    save_png(paths["grass"], grass)
    paths["astronaut"] = folder / "astronaut.png"
    save_png(paths["astronaut"], astronaut)
    paths["gray16"] = folder / "gray16.png"
    save_png(paths["gray16"], grass.astype(np.uint16) * 257 + 3)  # values that 8 bits cannot hold
    paths["palette"] = folder / "palette.png"
    Image.fromarray(astronaut).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(paths["palette"])
    rgba = np.dstack([astronaut, np.linspace(0, 255, 160 * 160).reshape(160, 160).astype(np.uint8)])
    paths["rgba"] = folder / "rgba.png"
    save_png(paths["rgba"], rgba)
    paths["tiny"] = folder / "tiny.png"
    save_png(paths["tiny"], np.full((4, 4, 3), 128, np.uint8))
    paths["text"] = folder / "notes.png"
    paths["text"].write_text("this is a text file with an image suffix\n")
    paths["corrupt"] = folder / "corrupt.png"
    paths["corrupt"].write_bytes(paths["grass"].read_bytes()[:400])
    left = np.zeros((160, 160), np.uint8)
    left[:, :60] = 255
    paths["left_mask"] = folder / "left_mask.png"
    save_png(paths["left_mask"], left)
    paths["wrong_size_mask"] = folder / "wrong_size_mask.png"
    save_png(paths["wrong_size_mask"], np.full((50, 50), 255, np.uint8))
    return paths


def _generate(client, path, method="synagen", shape="random", mode="random", size_bin="random", count=2,
              seed=0, mask=None):
    return client.predict(handle_file(str(path)), method, shape, mode, size_bin, count, seed, None,
                          None if mask is None else handle_file(str(mask)), api_name="/generate")


def _zip_of(result) -> zipfile.ZipFile:
    zips = [f for f in result[4] if str(f).endswith(".zip")]
    assert len(zips) == 1
    return zipfile.ZipFile(zips[0])


def _rows(zf: zipfile.ZipFile) -> list[dict]:
    return [json.loads(line) for line in zf.read("metadata.jsonl").decode().splitlines()]


# ------------------------------------------------------------------------------------ generate
def test_generate_gives_previews_table_and_a_zip_that_reproduces_the_anomalies(client, files):
    result = _generate(client, files["grass"], shape="rough", mode="gray_noise", size_bin="1.5-2.5%", count=3, seed=11)
    gallery, slider, mask_view, table, downloads, status, = result
    assert len(gallery) == 3
    assert len(slider) == 2 and all(Path(p).is_file() for p in slider)
    overlay = np.asarray(Image.open(gallery[0]["image"]).convert("RGB"))
    red = (overlay[:, :, 0] == 255) & (overlay[:, :, 1] == 0) & (overlay[:, :, 2] == 0)
    assert red.any(), "the mask outline is drawn in red"
    assert table["headers"][:4] == ["method", "shape", "mode", "size_bin"]
    assert [row[1:4] for row in table["data"]] == [["rough", "gray_noise", "1.5-2.5%"]] * 3

    zf = _zip_of(result)
    rows = _rows(zf)
    assert [r["seed"] for r in rows] == [11, 12, 13]
    grass = decode_image(files["grass"].read_bytes())
    for row in rows:
        assert row["source_id"] == "grass.png" and row["size_bin"] == "1.5-2.5%"
        expected = synthesize(grass, "synagen", seed=row["seed"], shape="rough", mode="gray_noise",
                              size_bin="1.5-2.5%")
        np.testing.assert_array_equal(decode_image(zf.read(row["file_name"])), expected.image)
        np.testing.assert_array_equal(decode_image(zf.read(row["mask_file_name"])) > 0, expected.mask)
    assert json.loads(zf.read("config.json"))["seed"] == 11


def test_every_registered_method_generates(client, files):
    for method in available_methods():
        result = _generate(client, files["astronaut"], method=method, count=1, seed=3)
        made_by = _rows(_zip_of(result))[0]["method"]
        # a mixture (hybrid) records the method it drew
        assert made_by == method or (method == "hybrid" and made_by in available_methods())


def test_uploaded_region_mask_keeps_every_anomaly_inside(client, files):
    result = _generate(client, files["grass"], count=3, size_bin="0.5-1.5%", mask=files["left_mask"])
    zf = _zip_of(result)
    for row in _rows(zf):
        mask = decode_image(zf.read(row["mask_file_name"])) > 0
        assert mask.any() and not mask[:, 60:].any()


def test_region_painted_in_the_editor_keeps_every_anomaly_inside(client, files, tmp_path):
    # the editor sends its layers as RGBA images; here the right part of a half-size canvas is painted
    layer = np.zeros((80, 80, 4), np.uint8)
    layer[:, 50:] = (255, 0, 0, 255)
    save_png(tmp_path / "layer.png", layer)
    drawing = {"background": handle_file(str(files["grass"])), "layers": [handle_file(str(tmp_path / "layer.png"))],
               "composite": None}
    result = client.predict(handle_file(str(files["grass"])), "synagen", "random", "random", "0.5-1.5%", 3, 0,
                            drawing, None, api_name="/generate")
    assert "inside the drawn region" in result[5]
    zf = _zip_of(result)
    for row in _rows(zf):
        mask = decode_image(zf.read(row["mask_file_name"])) > 0
        assert mask.any() and not mask[:, :100].any()


def test_a_region_mask_without_white_is_refused_as_empty_not_per_seed(client, files, tmp_path):
    black = tmp_path / "black_mask.png"
    save_png(black, np.zeros((160, 160), np.uint8))
    with pytest.raises(AppError, match="region mask black_mask.png has no white pixel, so anomalies may appear nowhere"):
        _generate(client, files["grass"], mask=black)


def test_region_mask_of_another_size_is_refused_with_a_message(client, files):
    with pytest.raises(AppError, match="region mask is 50x50 but the image is 160x160"):
        _generate(client, files["grass"], mask=files["wrong_size_mask"])


def test_sixteen_bit_upload_stays_sixteen_bit_in_the_download(client, files):
    zf = _zip_of(_generate(client, files["gray16"], count=1, seed=2))
    out = decode_image(zf.read(_rows(zf)[0]["file_name"]))
    assert out.dtype == np.uint16 and out.ndim == 2
    source = decode_image(files["gray16"].read_bytes())
    untouched = decode_image(zf.read(_rows(zf)[0]["mask_file_name"])) == 0
    # outside the mask nothing moved by more than 1/255 (the mask's definition), and the
    # 16-bit detail (values 8 bits cannot hold) survived there
    assert np.abs(out.astype(np.int64) - source)[untouched].max() <= 257
    assert (out[untouched] % 257 != 0).mean() > 0.99


def test_palette_upload_becomes_rgb(client, files):
    zf = _zip_of(_generate(client, files["palette"], count=1))
    assert decode_image(zf.read(_rows(zf)[0]["file_name"])).shape == (160, 160, 3)


def test_rgba_upload_keeps_its_alpha(client, files):
    zf = _zip_of(_generate(client, files["rgba"], count=1))
    out = decode_image(zf.read(_rows(zf)[0]["file_name"]))
    source = decode_image(files["rgba"].read_bytes())
    assert out.shape == (160, 160, 4)
    np.testing.assert_array_equal(out[:, :, 3], source[:, :, 3])


@pytest.mark.parametrize(
    "name, message",
    [
        ("text", "notes.png: not a readable image"),
        ("corrupt", "corrupt.png: not a readable image"),
        ("tiny", "tiny.png is 4x4 pixels; anomalies need at least 32x32"),
    ],
)
def test_bad_uploads_get_a_message_not_a_trace(client, files, name, message):
    with pytest.raises(AppError, match=message) as info:
        _generate(client, files[name])
    assert "Traceback" not in str(info.value) and "object at 0x" not in str(info.value)


def test_decompression_bomb_is_refused_before_decoding(client, tmp_path):
    bomb = tmp_path / "bomb.png"
    save_png(bomb, np.zeros((5000, 5000), np.uint8))  # 25 megapixels in ~130 kB
    with pytest.raises(AppError, match="25,000,000 pixels exceeds the limit of 16,777,216 pixels"):
        _generate(client, bomb)


def test_uploads_over_the_size_limit_are_refused_by_the_server(app_url, tmp_path):
    import httpx

    big = tmp_path / "big.png"
    big.write_bytes(np.random.default_rng(0).integers(0, 256, 21 * 1024 * 1024, dtype=np.uint8).tobytes())
    with big.open("rb") as fh:
        response = httpx.post(f"{app_url}gradio_api/upload", files={"files": ("big.png", fh, "image/png")}, timeout=60)
    assert response.status_code == 413
    assert "maximum allowed size of 20971520 bytes" in response.text


def test_unknown_choices_and_counts_are_refused(client, files):
    with pytest.raises(AppError, match="unknown shape 'hexagon'"):
        _generate(client, files["grass"], shape="hexagon")
    with pytest.raises(AppError, match="count: Value 500 is greater than maximum value 16"):
        _generate(client, files["grass"], count=500)
    with pytest.raises(AppError, match="seed: Value -5 is less than minimum value 0"):  # the input is named
        _generate(client, files["grass"], seed=-5)


@pytest.mark.parametrize(
    "count, drawing, message",
    [
        ("abc", None, "count: expected a whole number from 1 to 16, got 'abc'"),
        (2, "garbage", "region drawing: expected an editor value"),
        (2, {"background": None, "layers": ["not an image"], "composite": None}, "region drawing: expected"),
    ],
)
def test_parameters_of_the_wrong_type_get_a_message_naming_them(client, files, count, drawing, message):
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(files["grass"])), "synagen", "random", "random", "random", count, 0,
                       drawing, None, api_name="/generate")


def test_zip_rows_and_files_match_one_to_one(client, tmp_path):
    # a name that sanitising could fold onto another ("a b" and "a_b"), 16 anomalies
    upload = tmp_path / "a b.c.png"
    save_png(upload, np.ascontiguousarray(skimage.data.brick()[:128, :128]))
    zf = _zip_of(_generate(client, upload, count=16, seed=7))
    rows = _rows(zf)
    members = {n for n in zf.namelist() if n.startswith(("images/", "masks/"))}
    named = [r["file_name"] for r in rows] + [r["mask_file_name"] for r in rows]
    assert len(rows) == 16 and len(set(named)) == 32 and set(named) == members
    for row in rows:
        assert decode_image(zf.read(row["file_name"])).shape[:2] == (128, 128)
        assert (decode_image(zf.read(row["mask_file_name"])) > 0).any()


def test_exif_rotated_upload_is_used_upright(client, tmp_path):
    # a phone photo: pixels stored landscape (96 x 64), EXIF orientation 6 says "turn 90 degrees clockwise"
    stored = Image.fromarray(np.ascontiguousarray(skimage.data.brick()[:64, :96]))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    zf = _zip_of(_generate(client, path, count=1))
    assert decode_image(zf.read(_rows(zf)[0]["file_name"])).shape[:2] == (96, 64)


# -------------------------------------------------------------------------------------- detect
def _detect(client, tests=(), fits=(), reference="brick", image=None, detector="patchcore"):
    return client.predict(detector, [handle_file(str(p)) for p in fits], reference,
                          [handle_file(str(p)) for p in tests], None if image is None else handle_file(str(image)),
                          api_name="/detect")


def test_example_detector_scores_an_anomaly_above_the_clean_image(client, files, tmp_path):
    brick = skimage.data.brick()
    anomaly = synthesize(brick, "synagen", seed=4, shape="complex", mode="gray_noise", size_bin="2.5-15%").image
    save_png(tmp_path / "clean.png", brick)
    save_png(tmp_path / "anomaly.png", anomaly)
    heatmaps, scores, bar, status = _detect(client, [tmp_path / "clean.png", tmp_path / "anomaly.png"])
    assert len(heatmaps) == 2 and Path(bar).is_file()
    by_file = {row[0]: dict(zip(scores["headers"], row)) for row in scores["data"]}
    assert by_file["anomaly.png"]["score"] > by_file["clean.png"]["score"]
    # fitted on one example image: no verdict, a ranking against that reference, said first
    assert by_file["anomaly.png"]["verdict"] == "above reference"
    assert heatmaps[1]["caption"].startswith("ABOVE REFERENCE")
    assert status.startswith("> ⚠️ **One reference image, so no verdict.**")
    assert "brick.png" in status


def test_detector_fitted_on_uploads_accepts_gray_and_colour_mixed(client, files, tmp_path):
    grass = skimage.data.grass()
    fits = []
    for i, (y, x) in enumerate([(0, 0), (0, 256), (256, 0)]):
        fits.append(tmp_path / f"good_{i}.png")
        save_png(fits[-1], grass[y:y + 192, x:x + 192])
    test = grass[300:492, 300:492]
    save_png(tmp_path / "test_clean.png", np.dstack([test] * 3))  # colour test, gray fit images
    save_png(tmp_path / "test_anomaly.png",
             synthesize(test, "synagen", seed=1, shape="rough", mode="mean_noise", size_bin="2.5-15%").image)
    _, scores, _, status = _detect(client, [tmp_path / "test_clean.png", tmp_path / "test_anomaly.png"], fits,
                                   detector="padim")
    by_file = {row[0]: dict(zip(scores["headers"], row)) for row in scores["data"]}
    assert by_file["test_anomaly.png"]["score"] > by_file["test_clean.png"]["score"]
    assert "held-out" in status


def test_one_anomaly_free_upload_sets_its_threshold_with_a_view_it_was_not_fitted_on(client, tmp_path):
    # its own score was the threshold: PaDiM scores its fit image at 0, so every ratio was infinite
    brick = skimage.data.brick()
    crops = []
    for i, (y, x) in enumerate([(0, 0), (256, 256), (0, 256)]):
        crops.append(tmp_path / f"brick_{i}.png")
        save_png(crops[-1], brick[y:y + 256, x:x + 256])
    _, scores, _, status = _detect(client, crops[1:], crops[:1], detector="padim")
    ratios = [dict(zip(scores["headers"], row))["x threshold"] for row in scores["data"]]
    assert len(ratios) == 2 and all(isinstance(r, float) and np.isfinite(r) for r in ratios), ratios
    assert "**brick_0.png** (uploaded) and its two mirror images" in status
    assert "the highest score of brick_0.png turned by 180 degrees" in status


def test_detect_refuses_a_corrupt_test_image(client, files):
    with pytest.raises(AppError, match="corrupt.png: not a readable image"):
        _detect(client, [files["corrupt"]])


def test_detect_with_nothing_uploaded_scores_anomalies_on_the_generate_image(client, tmp_path):
    # a first visitor's click: no uploads, nothing generated -- the detector fits on the Generate
    # tab's image (gravel here), and large anomalies made on it score above the clean image
    gravel = tmp_path / "gravel.png"
    save_png(gravel, skimage.data.gravel())
    heatmaps, scores, _, status = _detect(client, reference="the Generate tab's image", image=gravel)
    rows = [dict(zip(scores["headers"], row)) for row in scores["data"]]
    # the truth is known: the clean source reads CLEAN, the synthetic anomalies DETECTED (or MISSED)
    # it is the image the detector was fitted on, and says so: no independent test of false alarms
    assert rows[0]["file"] == "clean source (fitted on)" and rows[0]["verdict"] == "clean"
    assert all(r["verdict"] == "detected" for r in rows[1:]) and len(rows) == 1 + DETECT_DEMO_COUNT
    assert "gravel.png" in status and "Served on" in status and "no verdict" not in status
    assert heatmaps[0]["caption"].startswith("CLEAN ·")
    assert all(h["caption"].startswith("DETECTED ·") for h in heatmaps[1:])
    # the true mask is outlined (cyan) on each anomaly's heatmap, and nothing on the clean one
    cyan = [int((np.asarray(Image.open(h["image"]).convert("RGB")) == TRUTH_RGB).all(axis=2).sum()) for h in heatmaps]
    assert cyan[0] == 0 and all(n > 20 for n in cyan[1:]), cyan


# ------------------------------------------------------------------------------------ datasets
def test_unreachable_hub_gives_a_clear_message(client, monkeypatch):
    gallery, table, status = client.predict("anomalyforge/does-not-exist", "1.0.0", 4, api_name="/browse")
    assert gallery == []
    assert "Could not load `anomalyforge/does-not-exist` 1.0.0" in status
    assert "Traceback" not in status


def test_dataset_name_must_be_org_slash_name(client):
    with pytest.raises(AppError, match="ORG/NAME"):
        client.predict("just-a-name", "", 4, api_name="/browse")


# --------------------------------------------------------------------------------------- load
def test_twenty_concurrent_users_each_get_their_own_correct_result(app_url, files):
    outcomes: dict[int, str] = {}
    lock = threading.Lock()
    grass = decode_image(files["grass"].read_bytes())

    def user(i: int) -> None:
        try:
            # a queued user waits; the client's default 5 s read timeout would count waiting as failing
            c = Client(app_url, verbose=False, httpx_kwargs={"timeout": 90})
            result = c.predict(handle_file(str(files["grass"])), "synagen", "random", "random", "0.1-0.5%", 1,
                               1000 + i, None, None, api_name="/generate")
            rows = _rows(_zip_of(result))
            expected = synthesize(grass, "synagen", seed=1000 + i, size_bin="0.1-0.5%")
            zf = _zip_of(result)
            same = np.array_equal(decode_image(zf.read(rows[0]["file_name"])), expected.image)
            outcome = "served" if len(result[0]) == 1 and rows[0]["seed"] == 1000 + i and same else "wrong result"
        except Exception as exc:  # noqa: BLE001 -- the test classifies every outcome
            text = str(exc).lower()
            outcome = "queue full" if "queue is full" in text else f"{type(exc).__name__}: {exc}"
        with lock:
            outcomes[i] = outcome

    threads = [threading.Thread(target=user, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a user was left waiting for more than two minutes"
    assert len(outcomes) == 20
    # the queue holds 64: twenty users all wait their turn and each gets their own seed's anomaly
    assert list(outcomes.values()) == ["served"] * 20, outcomes
    # the app is still healthy afterwards
    assert len(_generate(Client(app_url, verbose=False), files["grass"], count=1)[0]) == 1


def test_a_full_queue_turns_users_away_with_a_message(tmp_path, files):
    import socket

    demo = app.build_demo(app.SpaceConfig(concurrency=1, queue_size=1, work_root=tmp_path / "work"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    outcomes: list[str] = []
    lock = threading.Lock()

    def user(i: int) -> None:
        try:
            c = Client(f"http://127.0.0.1:{port}/", verbose=False, httpx_kwargs={"timeout": 90})
            c.predict(handle_file(str(files["grass"])), "synagen", "random", "random", "random", 16, i, None, None,
                      api_name="/generate")
            outcome = "served"
        except Exception as exc:  # noqa: BLE001 -- the test classifies every outcome
            outcome = "queue full" if "queue is full" in str(exc).lower() else f"{type(exc).__name__}: {exc}"
        with lock:
            outcomes.append(outcome)

    try:
        threads = [threading.Thread(target=user, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        demo.close()
    assert sorted(set(outcomes)) == ["queue full", "served"], outcomes
    assert len(outcomes) == 6


def test_every_shape_and_mode_the_generate_tab_offers_together_generates(client, files):
    # a mixture's shapes and modes come from different methods: the tab offers only the pairs one makes
    shapes, _ = paired_options("hybrid", None, None)
    for shape in shapes[1:]:
        _, modes = paired_options("hybrid", shape, None)
        for mode in modes[1:]:
            zf = _zip_of(_generate(client, files["astronaut"], method="hybrid", shape=shape, mode=mode, count=1))
            assert (_rows(zf)[0]["shape"], _rows(zf)[0]["mode"]) == (shape, mode)
    assert paired_options("hybrid", "rectangle", None)[1] == ["random", "paste"]
    assert paired_options("hybrid", None, "paste")[0] == ["random", "rectangle", "scar"]


def test_a_shape_and_mode_no_method_makes_together_are_refused_naming_the_modes_that_go(client, files):
    with pytest.raises(AppError, match="makes shape 'rectangle' in mode 'transparent'; modes with shape "
                                       "'rectangle': paste"):
        _generate(client, files["grass"], method="hybrid", shape="rectangle", mode="transparent")


def test_api_can_name_the_shapes_and_modes_of_any_method(client, files):
    zf = _zip_of(_generate(client, files["astronaut"], method="nsa", shape="patch", mode="mixed_clone", count=1))
    row = _rows(zf)[0]
    assert (row["method"], row["shape"], row["mode"]) == ("nsa", "patch", "mixed_clone")


def test_the_space_makes_the_bytes_a_seed_gives_whatever_device_it_serves_on(files):
    # on a GPU Space as on a CPU one (run this file on both): the command line's bytes for the seed
    grass = decode_image(files["grass"].read_bytes())
    anomalies, failures = make_anomalies(grass, "synagen", [3, 4, 5], shape="rough", mode="gray_noise",
                                         size_bin="1.5-2.5%", region=None, textures=())
    assert failures == [] and len(anomalies) == 3
    for seed, anomaly in zip((3, 4, 5), anomalies):
        reference = synthesize(grass, "synagen", seed=seed, shape="rough", mode="gray_noise", size_bin="1.5-2.5%")
        assert anomaly.image.tobytes() == reference.image.tobytes()
        assert np.array_equal(anomaly.mask, reference.mask) and anomaly.record == reference.record


def test_one_bad_file_is_skipped_and_named_instead_of_aborting_a_stress_test(client, files, tmp_path):
    save_png(tmp_path / "brick.png", skimage.data.brick())
    *_, table, status = client.predict([handle_file(str(tmp_path / "brick.png")), handle_file(str(files["text"]))],
                                       None, "synagen", "patchcore", 20, 1, 0, api_name="/stress_test")
    assert "**Skipped** notes.png" in status and "brick.png" in status and "Recall" in status
    assert len(table["data"]) > 0
    with pytest.raises(AppError, match="notes.png: not a readable image"):  # nothing usable: an error
        client.predict([handle_file(str(files["text"]))], None, "synagen", "patchcore", 20, 1, 0,
                       api_name="/stress_test")


def test_an_image_too_small_for_the_tiles_is_skipped_and_named_instead_of_aborting_a_stress_test(client, tmp_path):
    # 100x100 passes the upload minimum (32x32) but gives 25 px tiles, which stopped the whole run
    save_png(tmp_path / "brick.png", skimage.data.brick())
    save_png(tmp_path / "small.png", skimage.data.brick()[:100, :100])
    uploads = [handle_file(str(tmp_path / name)) for name in ("brick.png", "small.png")]
    *_, table, status = client.predict(uploads, None, "synagen", "patchcore", 20, 1, 0, api_name="/stress_test")
    assert "**Skipped** small.png" in status and "On **brick.png**:" in status and len(table["data"]) > 0
    with pytest.raises(AppError, match="needs 128x128 pixels or more"):  # nothing large enough: an error
        client.predict([handle_file(str(tmp_path / "small.png"))], None, "synagen", "patchcore", 20, 1, 0,
                       api_name="/stress_test")
