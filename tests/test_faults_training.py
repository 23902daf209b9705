"""Training killed with SIGKILL at a random step, even while it writes a checkpoint, resumes to the same weights.

A checkpoint is saved under a temporary name and renamed when complete, and older ones are removed
only after that (training/train.py ``save_checkpoint``), so ``--resume_from_checkpoint latest``
always finds a complete one; data order and noise are step-seeded, so the resumed run ends where an
uninterrupted run of the same length ends (model, optimiser and EMA fingerprints equal).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.test_training import TINY_CONFIG, write_training_population

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "training" / "train.py"
STEPS = 24


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _command(config: Path, data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, str(TRAIN), "--config", str(config), "--stage", "base", "--data_dir", str(data),
            "--output_dir", str(out), "--cache_dir", str(cache), *extra]


def _run(command: list[str]) -> None:
    result = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


def _killed_at(out: Path, step: int, process: subprocess.Popen) -> str:
    """Poll until training reaches ``step`` (its checkpoint being written or written), then SIGKILL it."""
    folder = out / "checkpoints"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        partial = [n for n in names if n.startswith(".checkpoint-") and int(n.split("-")[1].split(".")[0]) >= step]
        done = [n for n in names if n.startswith("checkpoint-") and int(n.split("-")[1]) >= step]
        if partial or done:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
            return "while saving" if partial else "between steps"
        time.sleep(0.002)
    process.kill()
    pytest.fail(f"training ended (rc {process.returncode}) or stalled before step {step}")


@pytest.mark.slow
def test_training_killed_at_a_random_step_resumes_to_the_uninterrupted_weights(tmp_path):
    data, _ = write_training_population(tmp_path / "data")
    config = {**TINY_CONFIG, "training": {**TINY_CONFIG["training"], "max_train_steps": STEPS,
                                          "checkpointing_steps": 1, "checkpoints_total_limit": 2}}
    config["base"] = {**TINY_CONFIG["base"], "validation": {**TINY_CONFIG["base"]["validation"]}}
    config_path = tmp_path / "tiny.json"
    config_path.write_text(json.dumps(config))
    cache = tmp_path / "cache"
    straight = tmp_path / "straight"
    _run(_command(config_path, data, straight, cache))

    kill_step = int(np.random.default_rng(int(time.time())).integers(3, STEPS - 2))
    killed = tmp_path / "killed"
    process = subprocess.Popen(_command(config_path, data, killed, cache), cwd=REPO, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    when = _killed_at(killed, kill_step, process)
    _run(_command(config_path, data, killed, cache, "--resume_from_checkpoint", "latest"))

    run = json.loads((killed / "train_log.json").read_text())["runs"][-1]
    assert 0 < run["start_step"] < STEPS and run["end_step"] == STEPS, (kill_step, when, run["start_step"])
    final = f"checkpoints/checkpoint-{STEPS}/petct_state.json"
    assert json.loads((killed / final).read_text()) == json.loads((straight / final).read_text()), (kill_step, when)
    assert not [p for p in (killed / "checkpoints").iterdir() if p.name.startswith(".")]
