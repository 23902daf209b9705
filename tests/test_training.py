"""End to end: two real CPU ranks train the base stage, resume, the SR stage trains, export, load, generate.

The configuration is the phantom_demo layout shrunk to toy sizes; data is a small
population written in the AutoPET layout (tests/helpers/autopet.py).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.autopet import DEFAULT_SUBJECTS, write_autopet_population

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "training" / "train.py"
EXPORT = REPO / "training" / "export.py"

TINY_CONFIG = {
    "name": "tiny",
    "seed": 0,
    "data": {"preprocess": {"include_organs": False}, "preprocess_workers": 0},
    "encoder": {"embedding_dim": 16, "hidden_dim": 16},
    "training": {"batch_size": 1, "learning_rate": 1e-3, "max_train_steps": 2, "checkpointing_steps": 2,
                 "validation_steps": 0, "log_steps": 1, "ema": {"decay": 0.9}},
    "base": {
        "grid": {"spacing": 16, "shape": [8, 8, 16]},
        "unet": {"block_out_channels": [8, 16], "layers_per_block": 1, "attention_levels": [False, True],
                 "attention_head_dim": 8, "norm_num_groups": 4},
        "scheduler": {"class": "EDMDPMSolverMultistepScheduler", "sigma_data": 0.5},
        "cfg_dropout": 0.3,
        "validation": {"num_inference_steps": 2},
    },
    "sr": {
        "grid": {"spacing": 8, "shape": [16, 16, 32]},
        "patch_size": [8, 8, 16],
        "unet": {"block_out_channels": [8, 16], "layers_per_block": 1, "attention_levels": [False, False],
                 "norm_num_groups": 4},
        "scheduler": {"class": "EDMEulerScheduler", "sigma_data": "auto", "sigma_max": 10.0},
        "noise_augmentation": 0.02,
        "validation": {"num_inference_steps": 2},
    },
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # the scripts import `training` and `petct_pipeline` as installed (pip install -e .), like a user's run
    env.update({"ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    return env


def _run(command: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    report = f"{' '.join(command)}\nSTDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-6000:]}"
    assert result.returncode == 0, report
    return result


def _launch_two_ranks(*args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                 "--num_machines", "1", "--main_process_port", "0", "--mixed_precision", "no",
                 "--dynamo_backend", "no", str(TRAIN), *args])


def write_training_population(folder: Path) -> tuple[Path, str]:
    """Four studies, the third without a weight (skipped): the phantom population when available."""
    try:
        from petct_pipeline.phantom import sample_population, write_population
    except ImportError:
        subjects = DEFAULT_SUBJECTS[:3] + [{"age": 30, "sex": "F", "weight": 55.0, "height": 160.0}]
        return write_autopet_population(folder, subjects), "fixture"
    write_population(sample_population(4, seed=0), folder, seed=0, spacing=8.0)
    table = folder / "demographics.csv"
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[2]["weight"] = ""
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder, "phantom"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    data, kind = write_training_population(root / "data")
    skipped_subject = [row for row in csv.DictReader((data / "demographics.csv").open()) if not row["weight"]]
    config = root / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIG))
    return {"root": root, "data": data, "config": config, "cache": root / "cache", "kind": kind,
            "skipped_subject": skipped_subject[0]["subject"]}


def _common(workspace, stage: str, out: Path) -> list[str]:
    return ["--config", str(workspace["config"]), "--stage", stage, "--data_dir", str(workspace["data"]),
            "--output_dir", str(out), "--cache_dir", str(workspace["cache"])]


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_resume_sr_export_generate(workspace):
    base = workspace["root"] / "base"
    first = _launch_two_ranks(*_common(workspace, "base", base))
    assert "world size 2 (DistributedType.MULTI_CPU" in first.stderr
    log = json.loads((base / "train_log.json").read_text())
    assert log["world_size"] == 2 and log["runs"][0]["end_step"] == 2 and log["runs"][0]["samples"] == 3
    saved = json.loads((base / "checkpoints" / "checkpoint-2" / "petct_state.json").read_text())
    assert saved["step"] == 2 and saved["world_size"] == 2
    assert (base / "checkpoints" / "checkpoint-2" / "model.safetensors").is_file()
    losses = [json.loads(line) for line in (base / "logs" / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in losses] == [1, 2] and all(np.isfinite(r["loss"]) for r in losses)
    stage = json.loads((base / "stage.json").read_text())
    assert stage["data"]["studies"] == 3
    assert [s["path"].split("/")[0] for s in stage["data"]["skipped"]] == [workspace["skipped_subject"]]
    assert "weight" in stage["data"]["skipped"][0]["reason"]
    assert (base / "validation" / "base_step_0000002.png").stat().st_size > 1000
    assert (base / "unet" / "diffusion_pytorch_model.safetensors").is_file()

    # resume: continues at step 2 with exactly the saved optimiser and EMA state
    _launch_two_ranks(*_common(workspace, "base", base), "--max_train_steps", "3", "--resume_from_checkpoint", "latest")
    run = json.loads((base / "train_log.json").read_text())["runs"][-1]
    assert run["world_size"] == 2 and run["start_step"] == 2 and run["end_step"] == 3
    resumed = run["resumed"]
    assert resumed["step"] == 2 and resumed["checkpoint"].endswith("checkpoint-2")
    for key in ("model_sha256", "optimizer_sha256", "ema_sha256"):
        assert resumed[key] == saved[key], key
    # ... and lands exactly where an uninterrupted 3-step run lands (data order and noise are step-seeded)
    straight = workspace["root"] / "straight"
    _launch_two_ranks(*_common(workspace, "base", straight), "--max_train_steps", "3")
    after_resume = json.loads((base / "checkpoints" / "checkpoint-3" / "petct_state.json").read_text())
    uninterrupted = json.loads((straight / "checkpoints" / "checkpoint-3" / "petct_state.json").read_text())
    assert after_resume == uninterrupted

    # SR stage, one process, same cache (the 16 mm arrays are reused)
    sr = workspace["root"] / "sr"
    _run([sys.executable, str(TRAIN), *_common(workspace, "sr", sr)])
    sr_stage = json.loads((sr / "stage.json").read_text())
    assert sr_stage["scale"] == 2 and 0.001 <= sr_stage["sigma_data"] < 0.5
    scheduler_config = json.loads((sr / "sr_scheduler" / "scheduler_config.json").read_text())
    assert scheduler_config["sigma_data"] == sr_stage["sigma_data"]

    out = workspace["root"] / "pipeline"
    _run([sys.executable, str(EXPORT), "--base", str(base), "--sr", str(sr), "--out", str(out)])
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"model_index.json", "unet/diffusion_pytorch_model.safetensors",
            "sr_unet/diffusion_pytorch_model.safetensors",
            "demographic_encoder/diffusion_pytorch_model.safetensors"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]

    from petct_pipeline.pipeline_petct import PETCTPipeline

    pipe = PETCTPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    assert list(pipe.config.base_shape) == [8, 8, 16] and pipe.config.base_spacing == 16.0
    assert pipe.config.sr_scale == 2 and pipe.config.sr_noise_level == 0.02
    # the demographic range of the studies stage 1 trained on travels with the weights
    assert pipe.training_range is not None and pipe.training_range.count == 3  # the fourth study is skipped
    # the exported encoder is the base stage's EMA encoder
    from petct_pipeline.models import DemographicEncoder

    trained = DemographicEncoder.from_pretrained(base / "demographic_encoder")
    for a, b in zip(pipe.demographic_encoder.parameters(), trained.parameters()):
        torch.testing.assert_close(a, b)
    output = pipe({"age": 50, "sex": "F", "weight": 70, "height": 168}, num_inference_steps=2,
                  sr_num_inference_steps=2, sr_chunk_size=16, sr_chunk_overlap=4,
                  generator=torch.Generator().manual_seed(0))
    ct, pet = output.ct[0], output.pet[0]
    assert ct.shape[:2] == (16, 16) and 16 <= ct.shape[2] <= 32 and pet.shape == ct.shape
    assert output.spacing == (8.0, 8.0, 8.0)
    assert np.isfinite(ct).all() and np.isfinite(pet).all() and pet.min() >= 0.0

    # fine-tune stage 1 from the exported pipeline; a resume without the flag still reports the source
    tuned = workspace["root"] / "tuned"
    _run([sys.executable, str(TRAIN), *_common(workspace, "base", tuned), "--init_weights", str(out),
          "--max_train_steps", "1", "--checkpointing_steps", "1"])
    _run([sys.executable, str(TRAIN), *_common(workspace, "base", tuned), "--max_train_steps", "2",
          "--checkpointing_steps", "1", "--resume_from_checkpoint", "latest"])
    tuned_stage = json.loads((tuned / "stage.json").read_text())
    assert tuned_stage["global_step"] == 2 and tuned_stage["init_weights"]["path"] == str(out)
    assert tuned_stage["init_weights"]["source"]["base"]["global_step"] == 3


def test_export_rejects_mismatched_stages(tmp_path, capsys):
    from training.export import main as export_main

    base, sr = tmp_path / "base", tmp_path / "sr"
    base.mkdir()
    sr.mkdir()
    (base / "stage.json").write_text(json.dumps({"stage": "base", "grid": {"spacing": 16, "shape": [8, 8, 16]}}))
    (sr / "stage.json").write_text(json.dumps({"stage": "sr", "base_grid": {"spacing": 8, "shape": [16, 16, 32]}}))
    assert export_main(["--base", str(base), "--sr", str(sr), "--out", str(tmp_path / "o")]) == 2
    assert "trained on base grid" in capsys.readouterr().err
    assert export_main(["--base", str(sr), "--sr", str(sr), "--out", str(tmp_path / "o")]) == 2
    assert "expected 'base'" in capsys.readouterr().err
    assert export_main(["--base", str(tmp_path), "--sr", str(sr), "--out", str(tmp_path / "o")]) == 2
    assert "no stage.json" in capsys.readouterr().err
    # a released pipeline can supply either stage
    shipped = REPO / "checkpoints" / "petct-phantom-demo"
    out = tmp_path / "swapped"
    assert export_main(["--base", str(shipped), "--sr", str(shipped), "--out", str(out)]) == 0
    provenance = json.loads((out / "training_provenance.json").read_text())
    assert provenance["sr"]["from_pipeline"] == str(shipped) and provenance["base"]["global_step"] == 6000
    # the trained stages only: a demographic prior is added by training/fit_prior.py
    released = json.loads((shipped / "model_index.json").read_text())
    exported = json.loads((out / "model_index.json").read_text())
    assert released.pop("demographic_prior") == ["petct_pipeline.models.demographic_prior", "DemographicPrior"]
    assert exported.pop("demographic_prior", [None, None]) == [None, None]
    released.pop("_name_or_path", None)
    assert exported == released
    assert not (out / "demographic_prior").exists() and "prior" not in provenance
