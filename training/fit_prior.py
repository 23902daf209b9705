#!/usr/bin/env python
"""Fit a pipeline's demographic prior on training data and write the pipeline with it.

    python training/fit_prior.py --pipeline checkpoints/petct-phantom-demo --data_dir data/phantoms_train \\
        --config training/configs/phantom_demo.yaml --cache_dir data/cache --out checkpoints/with-prior

The prior (petct_pipeline/models/demographic_prior.py) is a least-squares fit, per voxel, of
the training volumes on the pipeline's demographic features, on the pipeline's stage-1 grid;
it needs no GPU and takes seconds once the preprocessing cache exists (the same cache as
``train.py --stage base`` with the same ``--cache_dir``). Everything else in the pipeline
folder is copied unchanged; its ``training_provenance.json`` gains a ``prior`` record. The
new folder is assembled under a temporary name and renamed into place, so a failed fit
leaves ``--out`` as it was.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from petct_pipeline.errors import InputError
from training.script_errors import report_user_errors

if TYPE_CHECKING:
    from training.config import DataOptions

__all__ = ["fit_prior", "main"]

PRIOR_FOLDER = "demographic_prior"
PROVENANCE_FILE = "training_provenance.json"


def _cached_training_set(pipe, data_dir: Path, data: DataOptions, cache_dir: Path, demographics_csv, workers):
    """(features (N, F), volumes (N, 2, X, Y, Z)) of the data on the pipeline's stage-1 grid."""
    import numpy as np
    import torch

    from petct_pipeline.data.cache import build_cache
    from petct_pipeline.data.scan import scan_dataset
    from training.stage_options import GridOptions

    preprocess = data.preprocess_config(GridOptions(spacing=pipe.config.base_spacing, shape=tuple(pipe.base_shape)))
    scan = scan_dataset(data_dir, demographics_csv=demographics_csv or data.demographics_csv,
                        layout=data.layout, verify=data.verify)
    index = build_cache(scan, cache_dir, preprocess, num_workers=workers)
    if len(index) == 0:
        raise InputError(f"{data_dir} holds no usable study ({len(index.skipped)} skipped; see {index.directory})")
    features = pipe.demographic_encoder.features([index.demographics(i) for i in range(len(index))]).cpu()
    volumes = torch.from_numpy(np.stack([index.load_volume(i).astype(np.float32) for i in range(len(index))]))
    return features, volumes, index


def fit_prior(
    pipeline_dir: str | Path,
    data_dir: str | Path,
    config_path: str | Path,
    out_dir: str | Path,
    cache_dir: str | Path | None = None,
    channels: tuple[str, ...] = ("ct",),
    sigma_min: float = 0.5,
    demographics_csv: str | Path | None = None,
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Fit, save the pipeline with its prior to ``out_dir`` and return it."""
    from petct_pipeline.io import atomic_dir
    from petct_pipeline.models import DemographicPrior
    from petct_pipeline.pipeline_petct import PETCTPipeline
    from training.config import load_config

    pipeline_dir, out_dir = Path(pipeline_dir), Path(out_dir)
    if not (pipeline_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"--pipeline {pipeline_dir} is not a pipeline folder (no model_index.json)")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out_dir} exists and is not empty (pass --overwrite to replace it)")
    data = load_config(config_path).data
    workers = data.preprocess_workers if workers is None else workers
    cache_dir = Path(cache_dir) if cache_dir is not None else out_dir.parent / "cache"
    pipe = PETCTPipeline.from_pretrained(pipeline_dir)
    features, volumes, index = _cached_training_set(pipe, Path(data_dir), data, cache_dir, demographics_csv, workers)
    prior = DemographicPrior.fit(features, volumes, channels=channels, sigma_min=sigma_min)
    pipe.register_modules(demographic_prior=prior)

    with atomic_dir(out_dir) as staging:
        pipe.save_pretrained(staging, safe_serialization=True)
        for extra in sorted(pipeline_dir.iterdir()):  # the card, provenance: whatever save_pretrained does not write
            if not (staging / extra.name).exists() and extra.name != PRIOR_FOLDER:
                copy = shutil.copytree if extra.is_dir() else shutil.copy2
                copy(extra, staging / extra.name)
        provenance_path = staging / PROVENANCE_FILE
        provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else {}
        provenance["prior"] = {
            "data_dir": str(data_dir), "cache": str(index.directory), "studies": len(index),
            "channels": list(prior.config.channels), "sigma_min": sigma_min, "from_pipeline": str(pipeline_dir),
        }
        provenance_path.write_text(json.dumps(provenance, indent=2) + "\n")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    from petct_pipeline.models.demographic_prior import PRIOR_CHANNELS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", type=Path, required=True, help="exported pipeline folder to add the prior to")
    parser.add_argument("--data_dir", type=Path, required=True, help="training data (AutoPET or nnU-Net layout)")
    parser.add_argument("--config", type=Path, required=True, help="training config whose data: section to use")
    parser.add_argument("--out", type=Path, required=True, help="pipeline folder to write (may equal --pipeline "
                                                                "with --overwrite)")
    parser.add_argument("--cache_dir", type=Path, default=None, help="preprocessing cache root (default OUT/../cache)")
    parser.add_argument("--channels", nargs="+", choices=PRIOR_CHANNELS, default=["ct"],
                        help="volume channels the prior shifts (default: ct)")
    parser.add_argument("--sigma_min", type=float, default=0.5, help="apply the prior only above this noise level")
    parser.add_argument("--demographics_csv", type=Path, default=None, help="weight/height table")
    parser.add_argument("--preprocess_workers", type=int, default=None, help="override data.preprocess_workers")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    args = parser.parse_args(argv)

    def run() -> int:
        print(fit_prior(args.pipeline, args.data_dir, args.config, args.out, cache_dir=args.cache_dir,
                        channels=tuple(args.channels), sigma_min=args.sigma_min,
                        demographics_csv=args.demographics_csv, workers=args.preprocess_workers,
                        overwrite=args.overwrite))
        return 0

    return report_user_errors("fit_prior.py", run)


if __name__ == "__main__":
    sys.exit(main())
