"""API-level tests of the tone studio (gan_style.studio), through Flask's test client.

A tiny random translator (resnet_6blocks, 4 filters) stands in for a trained
one: what is tested is that the studio shows exactly what the Translator (and
so infer.py) computes, re-runs only the cheap half on a slider change, and
answers every bad input with a message while it keeps serving.
"""

from __future__ import annotations

import io
import json
import pathlib
import re
import statistics
import threading
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("flask", reason="the studio's optional extra (Flask) is not installed")

from catalog_fixtures import save_tiny_translator

import gan_style
from gan_style import image_io, tonal
from gan_style.studio import __main__ as studio_main
from gan_style.studio import create_app, host_warning, make_server, server
from gan_style.studio.app import STATIC_DIR
from gan_style.translator import load_translator


def product_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic 'product shot': a shaded blob on a light background."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = height * rng.uniform(0.4, 0.6), width * rng.uniform(0.4, 0.6)
    r = np.hypot((y - cy) / (0.35 * height), (x - cx) / (0.3 * width))
    colour = rng.uniform(0.2, 0.8, size=3)
    shade = np.clip(1.0 - 0.5 * (x / width) - 0.2 * (y / height), 0.0, 1.0)
    inside = (r < 1.0)[..., None]
    image = np.where(inside, colour * shade[..., None], 0.92 + 0.05 * (y / height)[..., None])
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray, alpha: np.ndarray | None = None) -> bytes:
    image = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        image.putalpha(Image.fromarray(alpha, "L"))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def upload(client, data: bytes, name: str = "shot.png"):
    return client.post(
        "/api/images",
        data={"image": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("studio_model") / "tiny_translator.keras"
    return save_tiny_translator(path, base_filters=4, seed=1)


@pytest.fixture(scope="module")
def translator(model_path):
    return load_translator(model_path)


@pytest.fixture(scope="module")
def app(translator, tmp_path_factory):
    folder = tmp_path_factory.mktemp("studio_images")
    (folder / "sub").mkdir()
    Image.fromarray(product_image(40, 52, seed=3)).save(folder / "sub" / "mug.png")
    app = create_app(translator, model_name="tiny_translator.keras", image_dir=str(folder))
    app.config["TESTING"] = False  # errors go through the error handlers, as when served
    return app


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    return product_image(47, 61)  # odd sizes: the Translator mirror-pads them


@pytest.fixture(scope="module")
def image_id(client, source) -> str:
    response = upload(client, png_bytes(source))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["id"]


def query(**values) -> str:
    return "&".join(f"{k}={v}" for k, v in values.items())


def assert_within_one_level(a: np.ndarray, b: np.ndarray):
    assert a.shape == b.shape
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1, f"max difference {diff.max()} levels"
    # XLA (the studio's preview) and eager TF may round a uint8 conversion
    # differently on rare pixels; not on many.
    assert (diff > 0).mean() < 0.01


# -- page and config ---------------------------------------------------------------


def test_page_and_static_files_are_served_and_fetch_nothing_external(client):
    page = client.get("/")
    assert page.status_code == 200 and b"tone studio" in page.data
    for name in ("studio.js", "studio.css"):
        assert client.get(f"/static/{name}").status_code == 200
    # Offline: no file of the page refers to anything outside the server.
    for path in STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), path.name
        assert "@import" not in text and "url(http" not in text


def test_config_sliders_come_from_the_library_ranges(client, translator):
    config = client.get("/api/config").get_json()
    sliders = {row["name"]: row for row in config["parameters"]}
    assert list(sliders) == list(tonal.PROFILE_VECTOR_NAMES)
    for name, row in sliders.items():
        assert (row["min"], row["max"]) == tonal.RANGES[name]
        lo, step = row["min"], row["step"]
        # The neutral value and every preset value sit on the slider's grid.
        values = [row["neutral"]] + [getattr(p, name) for p in tonal.PRESETS.values()]
        for value in values:
            assert abs((value - lo) / step - round((value - lo) / step)) < 1e-6, (name, value)
    for name in tonal.PARAM_NAMES:
        assert sliders[name]["neutral"] == tonal.NEUTRAL[name]
    assert set(config["presets"]) == set(tonal.PRESETS)
    assert config["model_profile"] == translator.profile.to_dict()
    assert config["images"] == ["sub/mug.png"]
    assert config["model"] == "tiny_translator.keras"


# -- images and previews --------------------------------------------------------------


def test_source_png_is_the_uploaded_pixels(client, image_id, source):
    response = client.get(f"/api/images/{image_id}/source.png")
    assert response.status_code == 200
    np.testing.assert_array_equal(decode_png(response.data), source)


def test_neutral_preview_equals_the_translator(client, image_id, source, translator):
    response = client.get(f"/api/images/{image_id}/preview.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    preview = decode_png(response.data)
    expected = translator(source[None]).numpy()[0]
    assert_within_one_level(preview, expected)


def test_toned_preview_equals_a_translator_with_that_profile(client, image_id, source, model_path):
    profile = tonal.Profile(
        brightness=0.1,
        contrast=1.3,
        saturation=0.7,
        gamma=1.2,
        temperature=0.4,
        tint=-0.2,
        strength=0.6,
    )
    response = client.get(f"/api/images/{image_id}/preview.png?" + query(**profile.to_dict()))
    assert response.status_code == 200, response.get_json()
    expected = load_translator(model_path, tone=profile)(source[None]).numpy()[0]
    assert_within_one_level(decode_png(response.data), expected)


def test_brightness_raises_the_preview_mean_by_the_documented_amount(client, image_id):
    base = decode_png(client.get(f"/api/images/{image_id}/preview.png").data).astype(float)
    bright = decode_png(
        client.get(f"/api/images/{image_id}/preview.png?brightness=0.1").data
    ).astype(float)
    # Brightness adds B to every channel before clipping: +25.5 levels where
    # nothing clips.
    unclipped = base <= 255 - 26
    shift = (bright - base)[unclipped]
    assert np.all(np.abs(shift - 25.5) <= 1.0), (shift.min(), shift.max())


def test_slider_changes_never_rerun_the_generator(translator, monkeypatch, source):
    calls = []
    original = translator.generate

    def counting_generate(images):
        calls.append(images.shape)
        return original(images)

    monkeypatch.setattr(translator, "generate", counting_generate)
    client = create_app(translator).test_client()
    image_id = upload(client, png_bytes(source)).get_json()["id"]
    assert len(calls) == 1
    means = []
    for brightness in (-0.2, -0.1, 0.0, 0.1, 0.2):
        response = client.get(f"/api/images/{image_id}/preview.png?brightness={brightness}")
        assert response.status_code == 200
        means.append(decode_png(response.data).mean())
    converted = client.get(f"/api/images/{image_id}/converted.png?strength=0.5")
    assert converted.status_code == 200
    assert len(calls) == 1, "a tone change ran the generator again"
    assert means == sorted(means) and means[0] < means[-1]


def test_converted_download_is_the_preview_with_alpha_kept(client):
    rgb = product_image(36, 44, seed=5)
    alpha = np.zeros((36, 44), np.uint8)
    alpha[6:30, 8:36] = 255
    alpha[10:12, :] = 128
    response = upload(client, png_bytes(rgb, alpha), name="cut out.png")
    assert response.get_json()["has_alpha"] is True
    image_id = response.get_json()["id"]
    q = query(brightness=0.05, temperature=0.3, strength=0.7)
    preview = decode_png(client.get(f"/api/images/{image_id}/preview.png?{q}").data)
    converted = client.get(f"/api/images/{image_id}/converted.png?{q}")
    assert converted.status_code == 200
    assert (
        converted.headers["Content-Disposition"] == 'attachment; filename="cut_out_converted.png"'
    )
    pixels = decode_png(converted.data)
    assert pixels.shape == (36, 44, 4)
    np.testing.assert_array_equal(pixels, preview)
    np.testing.assert_array_equal(pixels[..., 3], alpha)
    # Strength 0, neutral: the source itself, its semi-transparent band too
    # (not lightened by the white the model saw it on), and so is the source view.
    source = np.dstack([rgb, alpha])
    untouched = client.get(f"/api/images/{image_id}/converted.png?" + query(strength=0.0))
    np.testing.assert_array_equal(decode_png(untouched.data), source)
    np.testing.assert_array_equal(decode_png(client.get(f"/api/images/{image_id}/source.png").data), source)


def test_pngs_carry_the_source_icc_profile_as_infer_py_writes_it(client, adobe_rgb_icc):
    # Without it a browser shows an Adobe RGB photo's values as sRGB: duller
    # than the same values in infer.py's output, which keeps the profile.
    buffer = io.BytesIO()
    Image.fromarray(product_image(30, 40, seed=9)).save(buffer, format="JPEG", icc_profile=adobe_rgb_icc)
    image_id = upload(client, buffer.getvalue(), name="adobe.jpg").get_json()["id"]
    for path in ("source.png", "preview.png", "converted.png"):
        with Image.open(io.BytesIO(client.get(f"/api/images/{image_id}/{path}").data)) as png:
            assert png.info.get("icc_profile") == adobe_rgb_icc, path
    plain = upload(client, png_bytes(product_image(30, 40, seed=9)), name="srgb.png").get_json()["id"]
    with Image.open(io.BytesIO(client.get(f"/api/images/{plain}/converted.png").data)) as png:
        assert "icc_profile" not in png.info


def test_large_images_are_reduced_for_the_studio(translator):
    client = create_app(translator, preview_size=32).test_client()
    response = upload(client, png_bytes(product_image(48, 64)))
    body = response.get_json()
    assert (body["width"], body["height"]) == (32, 24)
    assert (body["original_width"], body["original_height"]) == (64, 48)
    assert any("reduced from 64x48 to 32x24" in note for note in body["notes"])
    preview = decode_png(client.get(f"/api/images/{body['id']}/preview.png").data)
    assert preview.shape == (24, 32, 3)


def test_a_reduced_cut_out_keeps_clean_edges(translator):
    # A light grey square on a transparent background that hides black: reduced
    # as colours and alpha apart, the black bled into the edge (down to 209 on white).
    client = create_app(translator, preview_size=64).test_client()
    rgb = np.zeros((200, 200, 3), np.uint8)
    alpha = np.zeros((200, 200), np.uint8)
    rgb[50:150, 50:150], alpha[50:150, 50:150] = 230, 255
    image_id = upload(client, png_bytes(rgb, alpha)).get_json()["id"]
    for path in ("source.png", "converted.png?strength=0"):
        pixels = decode_png(client.get(f"/api/images/{image_id}/{path}").data)
        assert pixels.shape == (64, 64, 4)
        assert ((pixels[..., 3] > 0) & (pixels[..., 3] < 255)).any()  # a soft edge, as reduced
        on_white = image_io.composite(pixels[..., :3], pixels[..., 3])
        assert on_white.min() >= 229, path


def test_pick_an_image_from_the_folder(client):
    response = client.post("/api/images/pick", json={"name": "sub/mug.png"})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["width"], body["height"]) == (52, 40)
    source = decode_png(client.get(f"/api/images/{body['id']}/source.png").data)
    np.testing.assert_array_equal(source, product_image(40, 52, seed=3))
    for bad in ("../studio_model/tiny_translator.keras", "/etc/passwd", "nope.png"):
        response = client.post("/api/images/pick", json={"name": bad})
        assert response.status_code == 404
        assert "no image" in response.get_json()["error"]


def test_old_images_are_dropped_with_a_message(translator, source):
    client = create_app(translator, max_images=2).test_client()
    ids = [upload(client, png_bytes(source)).get_json()["id"] for _ in range(3)]
    response = client.get(f"/api/images/{ids[0]}/preview.png")
    assert response.status_code == 404
    assert "upload it again" in response.get_json()["error"]
    assert client.get(f"/api/images/{ids[2]}/preview.png").status_code == 200


# -- profiles --------------------------------------------------------------------


def test_profile_download_round_trips_through_load_profile(client, tmp_path):
    values = {
        "brightness": 0.12,
        "contrast": 1.25,
        "saturation": 0.8,
        "gamma": 0.9,
        "temperature": -0.3,
        "tint": 0.05,
        "strength": 0.75,
    }
    response = client.get("/api/profile.json?" + query(**values, name="brand-x"))
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="brand-x.json"'
    path = tmp_path / "brand-x.json"
    path.write_bytes(response.data)
    profile = gan_style.tonal.load_profile(path)
    assert profile == tonal.Profile(name="brand-x", **values)
    # ... and that is the tone infer.py applies: resolve_tone reads the same file.
    assert tonal.resolve_tone(str(path)) == profile
    # A profile's name is not a file name: its dots stay.
    for name, filename in (("brand v1.2", "brand_v1.2.json"), ("spring.2025", "spring.2025.json"),
                           ("old.json", "old.json"), ("../x", ".._x.json")):
        response = client.get("/api/profile.json?" + query(**values, name=name))
        assert response.headers["Content-Disposition"] == f'attachment; filename="{filename}"', name


def test_profile_upload_returns_the_validated_profile(client):
    data = json.dumps({"name": "warmish", "temperature": 0.25, "strength": 0.5}).encode()
    response = client.post(
        "/api/profile",
        data={"profile": (io.BytesIO(data), "warmish.json")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    profile = response.get_json()["profile"]
    assert profile["temperature"] == 0.25 and profile["strength"] == 0.5
    assert profile["brightness"] == tonal.NEUTRAL["brightness"]


@pytest.mark.parametrize(
    "content, expected",
    [
        (b'{"brightness": 0.1, "sparkle": 2}', "unknown key 'sparkle'"),
        (b'{"gamma": 12}', "'gamma' = 12.0 is out of range [0.25, 4.0]"),
        (b'{"strength": -0.5}', "'strength' = -0.5 is out of range [0.0, 1.0]"),
        (b'{"contrast": "high"}', "'contrast' must be a number"),
        (b'{"brightness": 0.1', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"\xff\xfe\x00", "not a UTF-8 JSON profile"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON: nested too deeply"),  # was a 500
    ],
)
def test_bad_profile_uploads_name_the_problem(client, content, expected):
    response = client.post(
        "/api/profile",
        data={"profile": (io.BytesIO(content), "brand.json")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    message = response.get_json()["error"]
    assert expected in message and "brand.json" in message


@pytest.mark.parametrize(
    "params, expected",
    [
        ("sparkle=1", "unknown key 'sparkle'"),
        ("brightness=2", "'brightness' = 2.0 is out of range [-1.0, 1.0]"),
        ("saturation=lots", "'saturation' must be a number, got 'lots'"),
        ("gamma=nan", "'gamma' = nan is out of range"),
    ],
)
def test_bad_preview_parameters_name_the_problem(client, image_id, params, expected):
    for url in (f"/api/images/{image_id}/preview.png?{params}", f"/api/profile.json?{params}"):
        response = client.get(url)
        assert response.status_code == 400
        assert expected in response.get_json()["error"]


# -- bad uploads --------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, name, expected",
    [
        (b"this is not an image", "notes.png", "not an image"),
        (b"", "empty.jpg", "empty file"),
        (png_bytes(product_image(30, 30))[:200], "cut.png", "truncated"),
    ],
)
def test_bad_image_uploads_get_a_message_and_the_server_keeps_serving(
    client, image_id, content, name, expected
):
    response = upload(client, content, name=name)
    assert response.status_code == 400
    message = response.get_json()["error"]
    assert name in message and expected in message
    assert client.get(f"/api/images/{image_id}/preview.png").status_code == 200


def test_upload_without_a_file_field(client):
    response = client.post("/api/images", data={}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "multipart field 'image'" in response.get_json()["error"]


def test_oversized_upload_gets_413_with_the_limit(translator, source):
    app = create_app(translator, max_upload_bytes=2048)
    client = app.test_client()
    big = png_bytes(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert len(big) > 2048
    response = upload(client, big, name="big.png")
    assert response.status_code == 413
    assert "the limit is 2 KB per request" in response.get_json()["error"]
    small = png_bytes(source[:8, :8])
    assert upload(client, small).status_code == 200  # still serving


def test_too_many_pixels_is_refused_before_decoding(translator):
    client = create_app(translator, max_pixels=1000).test_client()
    response = upload(client, png_bytes(product_image(40, 40)), name="huge.png")
    assert response.status_code == 400
    assert "too many pixels: 40x40 = 1,600 exceeds max_pixels=1,000" in response.get_json()["error"]


def test_unknown_image_and_unknown_route(client):
    response = client.get("/api/images/img999/preview.png")
    assert response.status_code == 404 and "unknown image 'img999'" in response.get_json()["error"]
    response = client.get("/api/nothing")
    assert response.status_code == 404 and "error" in response.get_json()


# -- match a reference -------------------------------------------------------------


def test_fit_to_references_moves_the_tone_towards_them(client, image_id):
    config = client.get("/api/config").get_json()
    if not config["fit_available"]:
        response = client.post("/api/fit", data={}, content_type="multipart/form-data")
        assert response.status_code == 501
        pytest.skip("gan_style.fit_profile is not in this version of the library")
    strength = 0.8
    untoned = decode_png(client.get(f"/api/images/{image_id}/preview.png?strength={strength}").data)
    target = tonal.Profile(brightness=0.08, temperature=0.35, strength=strength)
    references = decode_png(
        client.get(f"/api/images/{image_id}/preview.png?" + query(**target.to_dict())).data
    )
    response = client.post(
        "/api/fit",
        data={
            "references": [(io.BytesIO(png_bytes(references)), "brand.png")],
            "image_id": image_id,
            "strength": str(strength),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.get_json()
    fitted = tonal.Profile.from_dict(response.get_json()["profile"])
    assert fitted.strength == strength
    # The references were made from this very translation, so the fit should
    # land close to the tone that made them (fit_profile's own tests bound it).
    assert abs(fitted.temperature - target.temperature) < 0.1
    assert abs(fitted.brightness - target.brightness) < 0.1
    fitted_preview = decode_png(
        client.get(f"/api/images/{image_id}/preview.png?" + query(**fitted.to_dict())).data
    ).astype(float)
    # Closer to the references than the untoned translation was.
    error_before = np.abs(untoned.astype(float) - references).mean()
    error_after = np.abs(fitted_preview - references).mean()
    assert error_after < 0.5 * error_before


def test_fit_with_bad_references(client):
    if not client.get("/api/config").get_json()["fit_available"]:
        pytest.skip("gan_style.fit_profile is not in this version of the library")
    response = client.post("/api/fit", data={}, content_type="multipart/form-data")
    assert response.status_code == 400 and "choose one or more" in response.get_json()["error"]
    response = client.post(
        "/api/fit",
        data={"references": [(io.BytesIO(b"<html>"), "logo.png")]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "reference logo.png: not an image" in response.get_json()["error"]
    response = client.post(
        "/api/fit",
        data={
            "references": [(io.BytesIO(png_bytes(product_image(20, 20))), "a.png")],
            "strength": "3",
        },
        content_type="multipart/form-data",
    )
    assert (
        response.status_code == 400
        and "'strength' = 3.0 is out of range" in response.get_json()["error"]
    )
    invisible = png_bytes(product_image(20, 20), np.zeros((20, 20), np.uint8))
    response = client.post(
        "/api/fit",
        data={"references": [(io.BytesIO(invisible), "ghost.png")]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "reference ghost.png has no pixel at least half opaque" in response.get_json()["error"]


# -- responsiveness -----------------------------------------------------------------


def test_a_slider_change_on_a_512px_image_takes_well_under_a_second(client):
    image = product_image(512, 512, seed=7)
    body = upload(client, png_bytes(image), name="big-shot.png").get_json()
    times, render_ms = [], []
    for i in range(5):
        start = time.perf_counter()
        response = client.get(f"/api/images/{body['id']}/preview.png?brightness={0.01 * i}")
        times.append(time.perf_counter() - start)
        assert response.status_code == 200
        render_ms.append(float(response.headers["X-Render-Ms"]))
    median = statistics.median(times)
    print(
        f"\n512x512 preview update: median {median * 1000:.0f} ms per request "
        f"(tone {statistics.median(render_ms):.0f} ms; generator once: {body['generate_seconds']} s)"
    )
    # The target is "well under a second"; the machine is shared, so the
    # bound leaves room, but a generator rerun (seconds) would still fail it.
    assert median < 1.0


# -- the server and the command line --------------------------------------------------


def test_real_http_server_on_a_free_port(app):
    httpd = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/api/config"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert json.load(response)["model"] == "tiny_translator.keras"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_host_warning_only_beyond_this_machine():
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        assert host_warning(host) is None
    for host in ("0.0.0.0", "192.168.1.20", "::", "studio.example"):
        warning = host_warning(host)
        assert warning and host in warning and "no login" in warning


def test_no_model_and_no_bundled_model_is_a_clear_error(monkeypatch, tmp_path, capsys):
    missing = tmp_path / "assets" / "default_translator.keras"
    monkeypatch.setattr(server, "default_model_path", lambda: missing)
    assert studio_main.main(["--port=0"]) == 1
    message = capsys.readouterr().err
    assert "no --model given" in message and str(missing) in message and "--model=" in message


def test_bad_model_and_bad_flags(tmp_path, capsys):
    bad = tmp_path / "model.keras"
    bad.write_text("not a model")
    assert studio_main.main([f"--model={bad}", "--port=0"]) == 1
    assert "cannot load --model" in capsys.readouterr().err
    assert studio_main.main([f"--model={tmp_path / 'nope.keras'}", "--port=0"]) == 1
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        studio_main.parse_args(["--port=70000"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        studio_main.parse_args(["--context=-1"])
    assert exit_info.value.code == 2 and "--context" in capsys.readouterr().err
    assert studio_main.parse_args(["--context=8"]).context == 8
    for value in ("inf", "nan"):
        with pytest.raises(SystemExit) as exit_info:
            studio_main.parse_args([f"--max_upload_mb={value}"])
        assert exit_info.value.code == 2 and "--max_upload_mb must be a finite number" in capsys.readouterr().err


def test_a_host_or_port_it_cannot_listen_on_is_named(app):
    with pytest.raises(OSError, match=r"--host=999\.1\.1\.1: no such address or host name"):
        make_server(app, "999.1.1.1", 0)
    taken = make_server(app, "127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match=rf"--host=127\.0\.0\.1 --port={taken.server_port}: cannot listen there "
                                          r"\(Address already in use\); another program uses that port"):
            make_server(app, "127.0.0.1", taken.server_port)
    finally:
        taken.server_close()


def test_renders_of_many_sizes_share_few_compiled_shapes(translator):
    # XLA keeps a program per shape (about 1.4 MB each): a session over a
    # catalogue of mixed sizes grew without end. Pixels go in as padded rows.
    from gan_style.studio.engine import Studio, pixel_bucket

    studio = Studio(translator)
    shapes, compiled = [], studio._finish_xla
    studio._finish_xla = lambda images, generated, params, alpha: shapes.append(tuple(images.shape)) or compiled(
        images, generated, params, alpha)
    profile = tonal.PRESETS["warm"].replace(strength=0.7)
    rng = np.random.default_rng(3)
    for height, width in ((50, 61), (47, 70), (64, 52), (33, 99), (70, 40)):
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = studio.add_array(rgb, name=f"{height}x{width}.png")
        expected = translator.finish(rgb[None], image.generated, np.array([profile.to_vector()], np.float32))
        diff = np.abs(studio.render(image.id, profile).astype(int) - expected[0].numpy().astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.001
    assert set(shapes) == {(1, 1, pixel_bucket(3300), 3)} and pixel_bucket(3300) == 4096


def test_bad_tile_and_overlap_are_refused_at_start(translator):
    # As infer.py refuses them; the studio used to start and answer 500 to every large image.
    for options, flag in (({"tile": 64, "overlap": 100}, "--overlap"), ({"tile": 64, "overlap": -5}, "--overlap"),
                          ({"tile": 2}, "--tile")):
        with pytest.raises(ValueError, match=flag):
            create_app(translator, **options)


def test_default_model_path_is_the_converters(monkeypatch):
    convert = pytest.importorskip("gan_style.convert")
    assert server.default_model_path() == pathlib.Path(convert.DEFAULT_MODEL_PATH)


def test_requests_from_other_sites_are_refused(client, app, translator):
    # DNS rebinding: a page on another name that resolves to 127.0.0.1.
    response = client.get("/api/config", headers={"Host": "evil.example:8080"})
    assert response.status_code == 403
    assert "only answers requests to 127.0.0.1 or localhost" in response.get_json()["error"]
    for host in ("127.0.0.1:8080", "localhost", "[::1]:8080"):
        assert client.get("/api/config", headers={"Host": host}).status_code == 200
    # A cross-site form post from the user's browser.
    response = client.post(
        "/api/profile",
        data={"profile": (io.BytesIO(b"{}"), "p.json")},
        content_type="multipart/form-data",
        headers={"Origin": "http://evil.example"},
    )
    assert response.status_code == 403 and "cross-site" in response.get_json()["error"]
    response = client.post(
        "/api/profile",
        data={"profile": (io.BytesIO(b"{}"), "p.json")},
        content_type="multipart/form-data",
        headers={"Origin": "http://localhost"},
    )
    assert response.status_code == 200
    # Served to the network (--host), any name is answered.
    exposed = create_app(translator, local_only=False).test_client()
    assert exposed.get("/api/config", headers={"Host": "studio.lan:8080"}).status_code == 200


def test_preview_matches_the_catalog_converter_with_alpha_and_tiles(model_path, tmp_path):
    """The studio feeds the model what convert_catalog feeds it (alpha composited
    on white, big images in shared-statistics tiles) and keeps the alpha."""
    convert = pytest.importorskip("gan_style.convert")
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    cutout = product_image(44, 52, seed=8)
    alpha = np.full((44, 52), 255, np.uint8)
    alpha[:, :10] = 0
    alpha[:, 10:16] = 100
    (catalog / "cutout.png").write_bytes(png_bytes(cutout, alpha))
    big = product_image(100, 136, seed=9)  # over the tile size below: tiled
    big_alpha = np.linspace(40, 255, 136).round().astype(np.uint8)[None, :].repeat(100, axis=0)
    (catalog / "big.png").write_bytes(png_bytes(big, big_alpha))
    profile = tonal.Profile(name="p", brightness=0.05, contrast=1.2, temperature=0.3, strength=0.7)
    profile_path = tmp_path / "p.json"
    profile.save(profile_path)

    tile, overlap = 64, 16
    # Both in the default precision (python -m gan_style.studio and infer.py: auto).
    client = create_app(load_translator(model_path).with_precision("auto"), tile=tile, overlap=overlap).test_client()
    convert.convert_catalog(
        str(model_path), str(catalog), str(tmp_path / "out"), tone=str(profile_path),
        format="png", tile=tile, overlap=overlap, progress=False,
    )  # fmt: skip
    for name in ("cutout.png", "big.png"):
        image_id = upload(client, (catalog / name).read_bytes(), name=name).get_json()["id"]
        preview = decode_png(
            client.get(f"/api/images/{image_id}/preview.png?" + query(**profile.to_dict())).data
        )
        converted = np.asarray(Image.open(tmp_path / "out" / name))
        assert preview.shape == converted.shape, name
        assert_within_one_level(preview[..., :3], converted[..., :3])
        np.testing.assert_array_equal(preview[..., 3], {"cutout.png": alpha, "big.png": big_alpha}[name])
        np.testing.assert_array_equal(converted[..., 3], preview[..., 3])
    # Tiling matters here: the untiled generator gives a visibly different image.
    untiled = create_app(load_translator(model_path), tile=0).test_client()
    image_id = upload(untiled, (catalog / "big.png").read_bytes()).get_json()["id"]
    plain = decode_png(
        untiled.get(f"/api/images/{image_id}/preview.png?" + query(**profile.to_dict())).data
    )
    tiled_out = np.asarray(Image.open(tmp_path / "out" / "big.png"))[..., :3]
    assert np.abs(plain[..., :3].astype(int) - tiled_out).max() > 1
