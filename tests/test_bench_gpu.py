"""benchmarks/bench_gpu.py (what gpu_check.sh runs on a GPU) at a toy size on CPU: every code path it uses --
bf16 autocast training of both stages with the MP UNet, fused AdamW, forced weight norm, gradient checkpointing,
the bf16 cascade, FLOP counting -- and torch.compile (slow). Its figures on CPU mean nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _bench(*args: str) -> list[dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--tiny", "--device", "cpu", "--steps", "1",
               "--warmup", "1", "--repeats", "1", "--no-save", *args]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"STDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-6000:]}"
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_gpu_check_code_paths_run_on_cpu():
    rows = _bench()
    assert [r["measure"] for r in rows] == ["train base", "train sr", "cascade inference"]
    assert all(r["mixed_precision"] in ("bf16", "bf16 weights") for r in rows)
    assert all(r["seconds"] > 0 and r["tflop"] > 0 for r in rows)
    assert rows[0]["gradient_checkpointing"] is True  # autopet_paper's setting
    assert rows[2]["nfe"]["unet"] >= rows[2]["steps"]["base"] and rows[2]["nfe"]["sr_unet"] >= 1


@pytest.mark.slow
def test_gpu_check_compiles_on_cpu():
    # aot_eager: dynamo capture and AOTAutograd of forward and backward without inductor's C++ code
    # generation, which takes many minutes on 2 shared cores (gpu_check.sh uses inductor on the GPU)
    rows = _bench("--compile", "aot_eager", "--skip", "sr")
    assert [r["measure"] for r in rows] == ["train base", "cascade inference"]
    assert all(r["compile"] == "aot_eager" for r in rows)
