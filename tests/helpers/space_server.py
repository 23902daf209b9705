"""The Space (``python space/app.py``) as a subprocess on 127.0.0.1 serving a tiny random pipeline, for the tests
that drive it through a browser or gradio_client (test_space_browser.py, test_space_load.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.pipelines import make_tiny_pipeline

__all__ = ["SpaceServer", "run_space_server", "REPO"]

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SpaceServer:
    """A running app: its URL, process and log."""

    def __init__(self, url: str, process: subprocess.Popen, log_path: Path, model_dir: Path):
        self.url, self.process, self.log_path, self.model_dir = url, process, log_path, model_dir

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    has_segmenter: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def generations(self) -> int:
        """How many subjects the app sampled (it logs one 'generate:' line per Generate)."""
        return self.log().count("petct_space INFO generate:")


def run_space_server(root: Path) -> Iterator[SpaceServer]:
    """Start the app in ``root`` (its model, segmenter, temporary files and log); yield it; stop it."""
    model_dir = root / "tiny_pipeline"
    make_tiny_pipeline().save_pretrained(model_dir)
    segmenter_dir = root / "tiny_segmenter"
    has_segmenter = _save_tiny_segmenter(segmenter_dir)
    port = _free_port()
    env = {
        **os.environ,
        "PETCT_MODEL": str(model_dir),
        # with the evaluation's segmenter module: a tiny random organ segmenter, so the table shows;
        # without it: a folder that does not exist, so the table hides itself with a note
        "PETCT_SEGMENTER": str(segmenter_dir if has_segmenter else root / "no-segmenter"),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(root / "gradio"),
        "TMPDIR": str(root),
        "OMP_NUM_THREADS": "1",
    }
    log_path = root / "app.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "space/app.py", "--server-name", "127.0.0.1", "--server-port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    server = SpaceServer(url, process, log_path, model_dir)
    server.has_segmenter = has_segmenter
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"space/app.py exited with {process.returncode}:\n{server.log()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"space/app.py did not answer on {url} within {STARTUP_TIMEOUT_S} s:\n{server.log()[-3000:]}"
                )
            time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _save_tiny_segmenter(path: Path) -> bool:
    """Save a tiny random ``model:PATH`` organ segmenter; False when the evaluation module is absent."""
    try:
        from petct_pipeline.models import OrganSegmentationModel, class_ids_for
    except ImportError:
        return False
    model = OrganSegmentationModel.build(
        class_ids_for(), spacing_mm=32.0, block_out_channels=(8, 16), attention_levels=(False, False), norm_num_groups=4
    )
    model.save_pretrained(path)
    return True
