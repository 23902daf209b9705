#!/usr/bin/env python
"""Combine a trained base stage and SR stage into one PETCTPipeline folder (save_pretrained, safetensors).

    python training/export.py --base runs/base --sr runs/sr --out checkpoints/my-pipeline

The demographic encoder, UNet and scheduler come from the base stage's output folder,
the SR UNet and scheduler from the SR stage's; both hold EMA weights. Either may instead be
an exported pipeline folder, to swap one retrained stage into a released cascade:

    python training/export.py --base runs/base_ft --sr checkpoints/petct-phantom-demo --out checkpoints/new

The pipeline's geometry (base grid, SR scale, SR noise level) comes from the stages' ``stage.json``
(a pipeline folder's ``model_index.json``),
which is checked for consistency (the SR stage must have been trained on the base
stage's grid). The folder is assembled under a temporary name and renamed into place.
``--model_card CARD.md`` writes the folder's README.md (its Hub model card) from a card
(training/model_card.py; the shipped folder's comes from the repository's model_card.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from petct_pipeline.errors import InputError
from training.script_errors import report_user_errors

__all__ = ["export_pipeline", "main"]

EDM_SCHEDULERS = ("EDMDPMSolverMultistepScheduler", "EDMEulerScheduler")
FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
#: stage facts copied into training_provenance.json (present ones only: a pipeline folder has fewer)
PROVENANCE_COMMON = ("config_name", "global_step", "world_size", "grid", "seed", "init_weights", "from_pipeline",
                     "posthoc_ema")


def _pipeline_stage_info(folder: Path, expected: str) -> dict[str, Any]:
    """A stage's facts as stage.json would give them, read from an exported pipeline folder."""
    index = json.loads((folder / "model_index.json").read_text())
    provenance_path = folder / "training_provenance.json"
    provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else {}
    base_grid = {"spacing": index["base_spacing"], "shape": index["base_shape"]}
    info: dict[str, Any] = {**provenance.get(expected, {}), "stage": expected, "from_pipeline": str(folder)}
    if expected == "base":
        info["grid"] = base_grid
        info["training_range"] = index.get("training_range")
    else:
        info.update(base_grid=base_grid, scale=index["sr_scale"], noise_augmentation=index["sr_noise_level"])
    return info


def _stage_info(folder: Path, expected: str) -> dict[str, Any]:
    path = folder / "stage.json"
    if not path.is_file() and (folder / "model_index.json").is_file():
        return _pipeline_stage_info(folder, expected)
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is neither a finished training output (no stage.json: train it to the "
                                "end) nor an exported pipeline (no model_index.json)")
    info = json.loads(path.read_text())
    if info.get("stage") != expected:
        raise InputError(f"{folder} holds stage {info.get('stage')!r}, expected {expected!r}")
    return info


def _scheduler(folder: Path):
    import diffusers

    config = json.loads((folder / "scheduler_config.json").read_text())
    name = config.get("_class_name")
    if name not in EDM_SCHEDULERS:
        raise InputError(f"{folder}: scheduler {name!r} is not one of {EDM_SCHEDULERS}")
    return getattr(diffusers, name).from_pretrained(folder)


def export_pipeline(base_dir: str | Path, sr_dir: str | Path, out_dir: str | Path, overwrite: bool = False,
                    model_card: str | Path | None = None) -> Path:
    """Build and save the pipeline, with ``model_card`` as its README.md if given; returns ``out_dir``."""
    from petct_pipeline.io import atomic_dir
    from petct_pipeline.models import DemographicEncoder
    from petct_pipeline.pipeline_petct import PETCTPipeline
    from training.pretrained import load_component

    base_dir, sr_dir, out_dir = Path(base_dir), Path(sr_dir), Path(out_dir)
    base, sr = _stage_info(base_dir, "base"), _stage_info(sr_dir, "sr")
    base_grid = {"spacing": float(base["grid"]["spacing"]), "shape": list(base["grid"]["shape"])}
    sr_base_grid = {"spacing": float(sr["base_grid"]["spacing"]), "shape": list(sr["base_grid"]["shape"])}
    if base_grid != sr_base_grid:
        raise InputError(f"the SR stage was trained on base grid {sr_base_grid}, but the base stage uses {base_grid}")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out_dir} exists and is not empty (pass --overwrite to replace it)")

    pipe = PETCTPipeline(
        demographic_encoder=DemographicEncoder.from_pretrained(base_dir / "demographic_encoder", use_safetensors=True),
        unet=load_component(base_dir / "unet"),  # the FiLM or the magnitude-preserving UNet, as saved
        scheduler=_scheduler(base_dir / "scheduler"),
        sr_unet=load_component(sr_dir / "sr_unet"),
        sr_scheduler=_scheduler(sr_dir / "sr_scheduler"),
        base_shape=base_grid["shape"],
        base_spacing=base_grid["spacing"],
        sr_scale=int(sr["scale"]),
        sr_noise_level=float(sr["noise_augmentation"]),
        training_range=base.get("training_range"),  # stage 1 reads the demographics; its data's range
    )
    with atomic_dir(out_dir) as staging:
        pipe.save_pretrained(staging, safe_serialization=True)
        provenance = {
            name: {k: info[k] for k in (*PROVENANCE_COMMON, *extra) if k in info}
            for name, info, extra in (("base", base, ("data",)),
                                      ("sr", sr, ("scale", "patch_size", "noise_augmentation", "sigma_data")))
        }
        (staging / "training_provenance.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")
        if model_card is not None:
            from training.model_card import write_model_card

            write_model_card(staging, model_card)
        unsafe = [p.name for p in staging.rglob("*") if p.suffix in FORBIDDEN_SUFFIXES]
        if unsafe:
            raise RuntimeError(f"refusing to export pickled weights: {unsafe}")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True,
                        help="output folder of `train.py --stage base` (or a pipeline folder to take it from)")
    parser.add_argument("--sr", type=Path, required=True,
                        help="output folder of `train.py --stage sr` (or a pipeline folder to take it from)")
    parser.add_argument("--out", type=Path, required=True, help="pipeline folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--model_card", type=Path, help="model card to write as the folder's README.md "
                        "(e.g. model_card.md for the shipped folder; default: none)")
    args = parser.parse_args(argv)

    def run() -> int:
        print(export_pipeline(args.base, args.sr, args.out, overwrite=args.overwrite, model_card=args.model_card))
        return 0

    return report_user_errors("export.py", run)


if __name__ == "__main__":
    sys.exit(main())
