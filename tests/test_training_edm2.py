"""train.py with EDM2's recipe: the MP UNet, learned loss weighting, inverse-sqrt LR, post-hoc EMA snapshots,
bf16 autocast and gradient checkpointing on CPU, resume, and torch.compile (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.autopet import DEFAULT_SUBJECTS, write_autopet_population

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "training" / "train.py"

MP_UNET = {"class": "PETCTMPUNet3DModel", "block_out_channels": [8, 16], "layers_per_block": 1,
           "attention_levels": [False, True], "attention_head_dim": 8}
FILM_UNET = {"block_out_channels": [8, 16], "layers_per_block": 1, "attention_levels": [False, True],
             "attention_head_dim": 8, "norm_num_groups": 4}


def _config(unet: dict, **training) -> dict:
    return {
        "name": "tiny_edm2",
        "data": {"preprocess": {"include_organs": False}, "preprocess_workers": 0},
        "encoder": {"embedding_dim": 16, "hidden_dim": 16},
        "training": {"batch_size": 2, "learning_rate": 1e-2, "lr_scheduler": "edm2_inverse_sqrt",
                     "lr_warmup_steps": 1, "lr_ref_steps": 2, "max_train_steps": 2, "checkpointing_steps": 2,
                     "validation_steps": 0, "log_steps": 1, "adam_fused": True,
                     "posthoc_ema": {"stds": [0.05, 0.1], "snapshot_steps": 1}, **training},
        "base": {"grid": {"spacing": 16, "shape": [8, 8, 16]}, "unet": unet,
                 "loss": {"P_mean": -0.4, "P_std": 1.0, "learned_weighting": True},
                 "validation": {"num_inference_steps": 1}},
    }


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args}\nSTDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-6000:]}"
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_autopet_population(tmp_path_factory.mktemp("edm2_data"), DEFAULT_SUBJECTS[:2])


def _train(tmp_path: Path, data: Path, config: dict, out: str, *extra: str) -> Path:
    path = tmp_path / f"{out}.json"
    path.write_text(json.dumps(config))
    output = tmp_path / out
    _run(str(TRAIN), "--config", str(path), "--stage", "base", "--data_dir", str(data), "--output_dir", str(output),
         "--cache_dir", str(tmp_path / "cache"), *extra)
    return output


def test_mp_unet_trains_in_bf16_with_checkpointing_resumes_and_rebuilds_any_ema(tmp_path, data):
    config = _config(MP_UNET, mixed_precision="bf16", gradient_checkpointing=True)
    out = _train(tmp_path, data, config, "mp")
    run = json.loads((out / "train_log.json").read_text())["runs"][-1]
    assert run["mixed_precision"] == "bf16"
    records = [json.loads(line) for line in (out / "logs" / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all("logvar_mean" in r and "weighted_mse" in r for r in records)  # learned weighting active
    assert records[0]["lr"] == pytest.approx(1e-2) and records[1]["lr"] == pytest.approx(1e-2)
    unet = json.loads((out / "unet" / "config.json").read_text())
    assert unet["_class_name"] == "PETCTMPUNet3DModel"
    # forced weight normalisation after every step: the saved (EMA of normalised) weights stay near unit rows
    from petct_pipeline.models import PETCTMPUNet3DModel

    model = PETCTMPUNet3DModel.from_pretrained(out / "unet")
    rows = model.conv_in.weight.flatten(1)
    assert torch.allclose(rows.norm(dim=1), torch.full((rows.shape[0],), rows.shape[1] ** 0.5), rtol=0.05)

    _train(tmp_path, data, config, "mp", "--resume_from_checkpoint", "latest", "--max_train_steps", "3")
    resumed = json.loads((out / "train_log.json").read_text())["runs"][-1]
    assert resumed["resumed"]["step"] == 2 and resumed["end_step"] == 3
    last = json.loads((out / "logs" / "loss.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3 and last["lr"] == pytest.approx(1e-2 / (3 / 2) ** 0.5)  # 1/sqrt(t / t_ref)
    names = sorted(p.name for p in (out / "posthoc_ema").iterdir())
    assert names == [f"phema-{s:07d}-{d:.3f}.safetensors" for s in (1, 2, 3) for d in (0.05, 0.1)]

    _run("-m", "training.posthoc_ema", "--run", str(out), "--sigma_rel", "0.07", "--out", str(tmp_path / "phema"))
    folder = tmp_path / "phema" / "sigma_rel-0.070"
    assert {p.name for p in folder.iterdir()} >= {"unet", "demographic_encoder", "scheduler", "stage.json"}
    assert PETCTMPUNet3DModel.from_pretrained(folder / "unet").config.block_out_channels == [8, 16]


@pytest.mark.slow
@pytest.mark.parametrize("unet", [MP_UNET, FILM_UNET], ids=["mp", "film"])
def test_torch_compile_trains_on_cpu(tmp_path, data, unet):
    out = _train(tmp_path, data, _config(unet, compile=True, compile_backend="aot_eager", max_train_steps=1,
                                          checkpointing_steps=1), "compiled")
    assert json.loads((out / "train_log.json").read_text())["runs"][-1]["end_step"] == 1
    from safetensors.torch import load_file

    keys = load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors")).keys()
    assert not any("_orig_mod" in key for key in keys)  # nn.Module.compile keeps the parameter names
