"""End-to-end test of the tone studio in a real headless browser.

Starts ``python -m gan_style.studio`` as a subprocess on a free port, drives
Debian's Chromium through Selenium: uploads a product image, moves the
brightness slider with the keyboard, checks the preview got brighter,
downloads the profile, then converts the same image with
``infer.py --tone=<that profile> --format=png`` and checks the catalog output
equals the pixels the page showed, within 1 level.

Needs ``/usr/bin/chromium``, ``/usr/bin/chromedriver`` (Debian's chromium and
chromium-driver) and the ``selenium`` package; skips, saying which is
missing, without them. A screenshot of the page is saved in the test's
temporary folder (``studio.png``), or where ``STUDIO_SCREENSHOT`` says; the
model is a tiny random one, or the ``.keras`` file ``STUDIO_MODEL`` names
(``STUDIO_MODEL=assets/default_translator.keras STUDIO_SCREENSHOT=assets/studio.png``
retakes the README's screenshot).
"""

from __future__ import annotations

import base64
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = pathlib.Path(__file__).resolve().parents[1]

_missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
if _missing:
    pytest.skip(
        f"headless browser test needs {', '.join(_missing)} "
        "(apt-get install -y chromium chromium-driver)",
        allow_module_level=True,
    )
pytest.importorskip(
    "selenium", reason="headless browser test needs selenium (pip install selenium)"
)
pytest.importorskip("flask", reason="the studio's optional extra (Flask) is not installed")

from catalog_fixtures import save_tiny_translator
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait
from studio_test import product_image

import gan_style
import gan_style.studio

#: Browser steps wait at most this long (the generator of the tiny model
#: takes about a second; the machine may be busy).
WAIT = 90


@pytest.fixture
def model_path(tmp_path) -> pathlib.Path:
    if os.environ.get("STUDIO_MODEL"):  # e.g. the bundled model, to retake assets/studio.png
        return pathlib.Path(os.environ["STUDIO_MODEL"]).resolve()
    return save_tiny_translator(tmp_path / "tiny_translator.keras", base_filters=4, seed=2)


@pytest.fixture
def studio_url(model_path, tmp_path):
    """``python -m gan_style.studio`` on a free port; stopped after the test."""
    with open(tmp_path / "studio.log", "w+") as log:  # the server's request log
        process = subprocess.Popen(
            [sys.executable, "-m", "gan_style.studio", f"--model={model_path}", "--port=0"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        try:
            line = process.stdout.readline()  # the banner with the URL, or EOF if it died
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if not match:
                process.wait(timeout=30)
                log.seek(0)
                pytest.fail(f"the studio did not start: {line!r}\n{log.read()}")
            yield f"http://127.0.0.1:{match.group(1)}/"
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()


@pytest.fixture
def browser(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1360,900",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    # SE_OFFLINE: Selenium must not try to download a driver or a browser.
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


# -- helpers -------------------------------------------------------------------------

_READ_IMAGE_JS = """
const img = document.getElementById(arguments[0]);
const canvas = document.createElement('canvas');
canvas.width = img.naturalWidth;
canvas.height = img.naturalHeight;
const context = canvas.getContext('2d');
context.drawImage(img, 0, 0);
return canvas.toDataURL('image/png');
"""


def shown_pixels(driver, element_id: str) -> np.ndarray:
    """The RGB pixels of an <img> as the page holds them (drawn to a canvas)."""
    url = driver.execute_script(_READ_IMAGE_JS, element_id)
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def wait_for_preview(driver, contains: str = "") -> None:
    """Waits until the source has loaded and the preview shows the sliders' values."""

    def ready(d):
        state = d.execute_script(
            "const p = document.getElementById('preview');"
            "const s = document.getElementById('source');"
            "return [p.dataset.state, p.dataset.query || '', p.complete && !p.hidden,"
            " s.complete && s.naturalWidth > 0];"
        )
        return state[0] == "ready" and contains in state[1] and state[2] and state[3]

    WebDriverWait(driver, WAIT).until(ready)


def message(driver) -> tuple[str, str]:
    box = driver.find_element(By.ID, "message")
    return box.get_attribute("class") or "", box.text


def wait_for_download(folder: pathlib.Path, suffix: str) -> pathlib.Path:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if p.name.endswith(suffix)]
        if done and not any(p.name.endswith(".crdownload") for p in folder.iterdir()):
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"no *{suffix} downloaded into {folder}: {os.listdir(folder)}")


def convert_with_infer(model, catalog, output, profile) -> tuple[pathlib.Path, str]:
    """Converts the catalog as an operator would; returns (output file, how)."""
    infer = REPO / "infer.py"
    if infer.exists():
        result = subprocess.run(
            [
                sys.executable,
                str(infer),
                f"--input={catalog}",
                f"--output={output}",
                f"--model={model}",
                f"--tone={profile}",
                "--format=png",
            ],
            cwd=REPO,
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        how = "infer.py"
    else:  # until infer.py lands: the library function behind it
        from gan_style.convert import convert_catalog

        convert_catalog(str(model), str(catalog), str(output), tone=str(profile), format="png")
        how = "gan_style.convert.convert_catalog"
    return output / "shot.png", how


# -- the test ------------------------------------------------------------------------


def test_studio_in_a_real_browser(browser, studio_url, model_path, tmp_path):
    driver = browser
    driver.get(studio_url)
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script("return document.body.dataset.ready === 'true'")
    )
    sliders = driver.find_elements(By.CSS_SELECTOR, "#sliders input[type=range]")
    assert [s.get_attribute("name") for s in sliders] == list(gan_style.tonal.PROFILE_VECTOR_NAMES)

    # A product image, in a one-file "catalog" that infer.py converts later.
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    source = product_image(96, 128, seed=11)
    Image.fromarray(source).save(catalog / "shot.png")

    # Bad input first: a text file posing as an image gets a message, and
    # the page and server go on working.
    fake = tmp_path / "notes.png"
    fake.write_text("not an image at all")
    driver.find_element(By.ID, "image-file").send_keys(str(fake))
    WebDriverWait(driver, WAIT).until(lambda d: "not an image" in message(d)[1])
    assert message(driver)[0] == "error" and "notes.png" in message(driver)[1]

    # An oversized file is refused before it is sent (the server would answer
    # 413 too; see studio_test.py), with the documented limit.
    limit_mb = gan_style.studio.DEFAULT_MAX_UPLOAD_BYTES / 2**20
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(b"\xff" * int((limit_mb + 1) * 2**20))
    driver.find_element(By.ID, "image-file").send_keys(str(huge))
    WebDriverWait(driver, WAIT).until(lambda d: "huge.jpg" in message(d)[1])
    assert f"up to {limit_mb:.0f} MB" in message(driver)[1]

    driver.find_element(By.ID, "image-file").send_keys(str(catalog / "shot.png"))
    wait_for_preview(driver)
    assert not driver.find_element(By.ID, "message").is_displayed()
    np.testing.assert_array_equal(shown_pixels(driver, "source"), source)
    before = shown_pixels(driver, "preview").astype(int)
    assert before.shape == source.shape

    # Move the brightness slider as a person would with the keyboard: 20
    # steps of 0.01 to the right.
    brightness = driver.find_element(By.ID, "slider-brightness")
    brightness.send_keys(Keys.ARROW_RIGHT * 20)
    assert brightness.get_attribute("value") == "0.2"
    assert driver.find_element(By.ID, "value-brightness").text == "0.20"
    wait_for_preview(driver, contains="brightness=0.2&")
    after = shown_pixels(driver, "preview").astype(int)
    # Brighter: +0.2 * 255 = 51 levels wherever the result does not clip.
    unclipped = before <= 255 - 52
    assert unclipped.mean() > 0.5
    assert np.all(np.abs((after - before)[unclipped] - 51) <= 1)
    assert after.mean() > before.mean() + 20

    # A profile with an unknown key is refused with a message naming it.
    bad_profile = tmp_path / "bad_profile.json"
    bad_profile.write_text(json.dumps({"brightness": 0.1, "sparkle": 1}))
    driver.find_element(By.ID, "profile-file").send_keys(str(bad_profile))
    WebDriverWait(driver, WAIT).until(lambda d: "sparkle" in message(d)[1])
    assert message(driver)[0] == "error" and "unknown key" in message(driver)[1]
    assert brightness.get_attribute("value") == "0.2"  # the sliders kept their values

    # Download the profile.
    driver.find_element(By.ID, "profile-name").send_keys("brighter")
    driver.find_element(By.ID, "download-profile").click()
    profile_path = wait_for_download(driver.downloads, ".json")
    assert profile_path.name == "brighter.json"
    profile = gan_style.tonal.load_profile(profile_path)
    assert profile.brightness == 0.2 and profile.name == "brighter"
    assert profile.to_vector() == [0.2, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0]

    # Everything the page loaded came from the studio itself.
    origins = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin);"
    )
    assert set(origins) <= {studio_url.rstrip("/")}, origins

    screenshot = pathlib.Path(os.environ.get("STUDIO_SCREENSHOT", tmp_path / "studio.png"))
    assert driver.save_screenshot(str(screenshot))
    assert Image.open(screenshot).size[0] >= 1000

    # The catalog tool with that profile gives the pixels the page showed.
    output_file, how = convert_with_infer(model_path, catalog, tmp_path / "styled", profile_path)
    converted = np.asarray(Image.open(output_file).convert("RGB")).astype(int)
    assert converted.shape == after.shape
    diff = np.abs(converted - after)
    print(
        f"\n{how} vs the studio's preview: max {diff.max()} level(s), "
        f"{(diff > 0).mean():.4%} of values differ; screenshot {screenshot}"
    )
    assert diff.max() <= 1

    # A loaded profile's values between the sliders' 0.01 steps are kept as
    # they are (a range input alone would round them), in the preview and in
    # the downloads, and so is its description.
    fine = tmp_path / "fine.json"
    fine.write_text(json.dumps({"contrast": 1.2345, "gamma": 0.8737, "description": "fitted"}))
    driver.find_element(By.ID, "profile-file").send_keys(str(fine))
    wait_for_preview(driver, contains="contrast=1.2345&")
    wait_for_preview(driver, contains="gamma=0.8737&")
    assert driver.find_element(By.ID, "value-contrast").text == "1.2345"
    link = driver.find_element(By.ID, "download-profile").get_attribute("href")
    assert "contrast=1.2345" in link and "description=fitted" in link
    # Moving a slider by hand puts it back on the grid.
    driver.find_element(By.ID, "slider-contrast").send_keys(Keys.ARROW_RIGHT)
    wait_for_preview(driver, contains="contrast=1.24&")
    # ... and the tone is no longer the one the description described.
    link = driver.find_element(By.ID, "download-profile").get_attribute("href")
    assert "contrast=1.24&" in link and "description" not in link
