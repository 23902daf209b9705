"""Screenshot of the Space serving the shipped default weights, for docs/space.md.

    python docs/make_space_screenshot.py          # writes docs/space.png (needs /usr/bin/chromium)

Starts ``space/app.py`` on a free local port, lets headless Chromium pick an example subject and a
diagnosis (lesions with known truth) and press Generate, waits for the viewer, the organ table and the
lesion table, turns the organ overlay on, and saves the page.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"space/app.py exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"space/app.py did not answer on {url} within {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--example", default="Elder man (80 y)", help="label of the example to click")
    parser.add_argument("--diagnosis", default="LYMPHOMA", help="NEGATIVE, LYMPHOMA, MELANOMA or LUNG_CANCER")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "space.png")
    args = parser.parse_args(argv)

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": tmp}
        process = subprocess.Popen([sys.executable, "space/app.py", "--server-name", "127.0.0.1",
                                    "--server-port", str(port)], cwd=REPO, env=env)
        try:
            _wait_until_up(url, process)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1480, "height": 1000})
                page.set_default_timeout(300_000)
                page.goto(url)
                before = page.locator("#age input[type=number]").input_value()
                page.get_by_text(args.example).click()
                # Generate only once the example has filled the inputs, or it samples the old subject
                page.wait_for_function(f"document.querySelector('#age input[type=number]').value !== '{before}'")
                page.wait_for_timeout(1000)
                label = args.diagnosis.replace("_", " ").capitalize()  # the radio's label of a diagnosis
                page.locator(f'#diagnosis [data-testid="{label}-radio-label"]').click()
                page.locator("#generate").click()
                page.locator("#status").filter(has_text="Generated in").wait_for()
                for elem_id in ("axial-image", "coronal-image", "sagittal-image", "mip-image"):
                    page.locator(f"#{elem_id} img").wait_for()
                if args.diagnosis.upper() != "NEGATIVE":
                    page.locator("#lesions").wait_for()
                page.locator("#show-organs input").check()
                page.wait_for_timeout(2000)  # let the last re-render land
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
