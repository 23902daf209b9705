#!/usr/bin/env python
"""Record the demographic range of a pipeline's training data in its model_index.json.

``train.py`` writes the range of the data it trained on into stage.json and ``export.py`` carries
it into the pipeline folder; this script adds it to a folder exported before that existed, from
the same data:

    python training/record_training_range.py --pipeline checkpoints/petct-phantom-demo \\
        --data_dir data/phantoms_train
    python training/record_training_range.py --pipeline checkpoints/petct-phantom-demo \\
        --phantom_population 400 0     # the demographics `petct phantom --n 400 --seed 0` draws

The second form reads no volumes: the phantom population's demographics are a function of N and
the seed, so the shipped demo's range is reproducible without its 400 training studies.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from petct_pipeline.demographic_range import DemographicRange
from petct_pipeline.errors import InputError
from petct_pipeline.io import atomic_path
from training.script_errors import report_user_errors

__all__ = ["record_training_range", "main"]


def training_subjects(data_dir: Path | None, phantom_population: tuple[int, int] | None) -> tuple[list, str]:
    """The training subjects' demographics and a note of where they came from."""
    if (data_dir is None) == (phantom_population is None):
        raise InputError("give exactly one of --data_dir DATA or --phantom_population N SEED")
    if data_dir is not None:
        from petct_pipeline.data.scan import scan_dataset

        scan = scan_dataset(data_dir)
        return [study.demographics for study in scan.studies], str(data_dir)
    from petct_pipeline.phantom.population import sample_population

    count, seed = phantom_population
    return sample_population(count, seed), f"petct phantom --n {count} --seed {seed}"


def record_training_range(pipeline: Path, subjects: list, source: str) -> DemographicRange:
    """Write the range of ``subjects`` into ``pipeline``/model_index.json as ``training_range``."""
    index_path = Path(pipeline) / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{pipeline} has no model_index.json: pass a pipeline folder")
    index = json.loads(index_path.read_text())
    recorded = DemographicRange.from_subjects(subjects, source=source)
    index["training_range"] = recorded.to_dict()
    with atomic_path(index_path) as tmp:
        tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", type=Path, required=True, help="pipeline folder (model_index.json)")
    parser.add_argument("--data_dir", type=Path, help="the training data (AutoPET or nnU-Net layout)")
    parser.add_argument("--phantom_population", type=int, nargs=2, metavar=("N", "SEED"),
                        help="the phantom population `petct phantom --n N --seed SEED` wrote")
    args = parser.parse_args(argv)

    def run() -> int:
        subjects, source = training_subjects(args.data_dir, args.phantom_population)
        print(record_training_range(args.pipeline, subjects, source).describe())
        return 0

    return report_user_errors("record_training_range.py", run)


if __name__ == "__main__":
    raise SystemExit(main())
