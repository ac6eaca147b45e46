r"""Takes the README's screenshot of the tone studio: a sample image with a preset.

    python scripts/studio_screenshot.py [--model=assets/default_translator.keras] \
        [--image=assets/samples/vase.jpg] [--preset=warm] [--out=assets/studio.png]

Starts ``python -m gan_style.studio`` on a free port, opens it in headless
Chromium through Selenium (Debian's ``chromium`` and ``chromium-driver``, the
``selenium`` package), uploads the image, picks the preset, waits for the
preview and saves a screenshot of a 1360x900 window's page area (1360x757
with Debian's Chromium in headless mode).
"""

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
WAIT = 120


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "assets" / "default_translator.keras"))
    parser.add_argument("--image", default=str(REPO / "assets" / "samples" / "vase.jpg"))
    parser.add_argument("--preset", default="warm")
    parser.add_argument("--out", default=str(REPO / "assets" / "studio.png"))
    args = parser.parse_args(argv)
    # The studio runs in the repository; paths given relative to here must still work.
    model, image, out = (pathlib.Path(p).resolve() for p in (args.model, args.image, args.out))

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    os.environ.setdefault("SE_OFFLINE", "true")  # never download a driver
    log = tempfile.TemporaryFile("w+")  # the studio's stderr, for when it does not start
    server = subprocess.Popen(
        [sys.executable, "-m", "gan_style.studio", f"--model={model}", "--port=0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    try:
        banner = server.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", banner)
        if not match:
            server.wait(timeout=WAIT)
            log.seek(0)
            said = log.read().strip().splitlines()
            print(f"studio_screenshot: the studio did not start: {said[-1] if said else banner!r}",
                  file=sys.stderr)
            return 1
        with tempfile.TemporaryDirectory() as profile:
            options = webdriver.ChromeOptions()
            options.binary_location = "/usr/bin/chromium"
            for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-dev-shm-usage", "--window-size=1360,900",
                         "--force-device-scale-factor=1", f"--user-data-dir={profile}"):
                options.add_argument(flag)
            driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
            try:
                driver.get(match.group(0))
                wait = WebDriverWait(driver, WAIT)
                wait.until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
                driver.find_element(By.ID, "image-file").send_keys(str(image))
                preview_ready = (
                    "const p = document.getElementById('preview');"
                    "return p.dataset.state === 'ready' && p.complete && !p.hidden"
                    " && (p.dataset.query || '').includes(arguments[0]);"
                )
                wait.until(lambda d: d.execute_script(preview_ready, ""))
                if args.preset:
                    query = "return document.getElementById('preview').dataset.query"
                    neutral = driver.execute_script(query)
                    Select(driver.find_element(By.ID, "preset")).select_by_value(args.preset)
                    # Redrawn with the preset's values: another query, then ready.
                    wait.until(lambda d: d.execute_script(query) != neutral)
                    wait.until(lambda d: d.execute_script(preview_ready, ""))
                driver.save_screenshot(str(out))
            finally:
                driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
