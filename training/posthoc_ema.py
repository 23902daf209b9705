#!/usr/bin/env python
"""Rebuild a stage's weights for any EMA length from its power-function EMA snapshots (EDM2 post-hoc EMA).

    python -m training.posthoc_ema --run runs/base --sigma_rel 0.05 0.10 0.15 --out runs/base_phema
    python -m training.posthoc_ema --run runs/base --list

``--run`` is a finished (or stopped) ``train.py`` output with ``posthoc_ema/`` snapshots
(``training.posthoc_ema.snapshot_steps`` > 0). For each sigma_rel, ``OUT/sigma_rel-<value>/`` is a
stage output like the run's own: the saved components with their parameters replaced by the
reconstruction at ``--step`` (default: the newest snapshot), the scheduler and ``stage.json``
(with a ``posthoc_ema`` entry). ``training/export.py --base OUT/sigma_rel-0.100 --sr ...`` then makes
a pipeline of it, so the EMA length is chosen by benchmarking a few of them, without retraining.
Karras et al. 2024, section 3.1 and appendix C.3 (Algorithm 3).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from petct_pipeline.errors import InputError
from training.power_ema import SNAPSHOT_PATTERN, solve_posthoc_coefficients
from training.script_errors import report_user_errors

__all__ = ["Snapshot", "find_snapshots", "reconstruct", "write_reconstructions", "main"]

SNAPSHOT_DIR = "posthoc_ema"


class Snapshot:
    """One snapshot file: the power-function EMA of sigma_rel ``std`` after optimiser step ``step``."""

    def __init__(self, path: Path, step: int, std: float) -> None:
        self.path, self.step, self.std = path, step, std

    def __repr__(self) -> str:
        return f"Snapshot(step={self.step}, std={self.std:.3f})"


def find_snapshots(run: Path, step: int | None = None) -> list[Snapshot]:
    """The run's snapshots up to ``step`` (all if None), oldest first; ValueError if there are none."""
    folder = Path(run) / SNAPSHOT_DIR
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = SNAPSHOT_PATTERN.match(path.name)
            if match and (step is None or int(match.group(1)) <= step):
                found.append(Snapshot(path, int(match.group(1)), float(match.group(2))))
    if not found:
        raise InputError(f"{folder}: no power-function EMA snapshots{'' if step is None else f' up to step {step}'} "
                         "(train with training.posthoc_ema.snapshot_steps > 0)")
    return sorted(found, key=lambda s: (s.step, s.std))


def reconstruct(snapshots: Sequence[Snapshot], sigma_rel: float, step: int | None = None) -> dict[str, torch.Tensor]:
    """The parameters of the EMA with relative length ``sigma_rel`` at ``step`` (default: the last snapshot)."""
    from safetensors.torch import load_file

    step = max(s.step for s in snapshots) if step is None else step
    weights = solve_posthoc_coefficients([s.step for s in snapshots], [s.std for s in snapshots], [step],
                                         [sigma_rel])[:, 0]
    total: dict[str, torch.Tensor] = {}
    for snapshot, weight in zip(snapshots, weights):
        for name, tensor in load_file(str(snapshot.path)).items():
            term = tensor.double() * float(weight)
            total[name] = total[name] + term if name in total else term
    return {name: tensor.float() for name, tensor in total.items()}


def _stage_components(run: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from training.stages import get_stage

    info_path = run / "stage.json"
    if not info_path.is_file():
        raise InputError(f"{run}: no stage.json (a run writes it when it finishes or stops at its time budget)")
    info = json.loads(info_path.read_text())
    return info, dict(get_stage(info["stage"]).pretrained_components)


def write_reconstructions(run: Path, out: Path, sigma_rels: Sequence[float], step: int | None = None) -> list[Path]:
    """One stage-output folder per sigma_rel under ``out`` (see the module docstring); returns them."""
    from training.pretrained import load_component

    run, out = Path(run), Path(out)
    info, components = _stage_components(run)
    snapshots = find_snapshots(run, step)
    step = max(s.step for s in snapshots) if step is None else step
    written = []
    for sigma_rel in sigma_rels:
        params = reconstruct(snapshots, float(sigma_rel), step)
        target = out / f"sigma_rel-{float(sigma_rel):.3f}"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for attribute, folder in components.items():
            module = load_component(run / folder)
            with torch.no_grad():
                for name, parameter in module.named_parameters():
                    key = f"{attribute}.{name}"
                    if key not in params:
                        raise InputError(f"snapshot of {run} has no parameter {key!r}: it is of another model")
                    parameter.copy_(params[key].to(parameter.dtype))
            module.save_pretrained(target / folder, safe_serialization=True)
        for name in info.get("components", []):
            if name not in components.values() and (run / name).is_dir():
                shutil.copytree(run / name, target / name)  # schedulers
        used = [{"step": s.step, "sigma_rel": s.std} for s in snapshots]
        info_out = {**info, "posthoc_ema": {"sigma_rel": float(sigma_rel), "step": step, "snapshots": len(used)}}
        (target / "stage.json").write_text(json.dumps(info_out, indent=2, default=str) + "\n")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="train.py output folder with posthoc_ema/")
    parser.add_argument("--sigma_rel", type=float, nargs="+", default=[0.10],
                        help="relative EMA lengths to rebuild (EDM2's optimum is often 0.05-0.15)")
    parser.add_argument("--step", type=int, default=None, help="training step to rebuild at (default: the last)")
    parser.add_argument("--out", type=Path, default=None, help="output root (default RUN/posthoc)")
    parser.add_argument("--list", action="store_true", help="list the snapshots and exit")
    args = parser.parse_args(argv)

    def run() -> int:
        if args.list:
            for snapshot in find_snapshots(args.run, args.step):
                print(f"step {snapshot.step:7d}  sigma_rel {snapshot.std:.3f}  {snapshot.path}")
            return 0
        if any(not 0 < s < 0.28 for s in args.sigma_rel) or not np.all(np.isfinite(args.sigma_rel)):
            raise InputError(f"--sigma_rel values must be in (0, 0.28), got {args.sigma_rel}")
        for folder in write_reconstructions(args.run, args.out or args.run / "posthoc", args.sigma_rel, args.step):
            print(folder)
        return 0

    return report_user_errors("posthoc_ema.py", run)


if __name__ == "__main__":
    sys.exit(main())
