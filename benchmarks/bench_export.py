"""Export speed: seconds per subject of ``petct export`` in each format (nnU-Net v2, AutoPET layout, DICOM).

Builds a cohort in the layout ``petct generate --cohort`` writes from ``--n`` phantoms (demographics drawn like
AutoPET, ``--spacing`` mm, whole body: vertex to mid-thigh, longer than the shipped model's field of view, so
these are upper bounds for generated subjects), every other subject with LYMPHOMA lesions inserted by
``insert_lesions`` (lesions.nii.gz + lesions.json, as ``petct generate --diagnosis`` writes them). Then times
``export_dataset`` for each format and label set into a fresh folder: everything a subject costs (reading its
NIfTI files, converting, writing, the atomic rename) plus the index files, divided by the subjects. The
issue's targets on 2 CPU cores: <= 2 s per 4 mm subject for the NIfTI formats, <= 10 s for DICOM.

    python benchmarks/bench_export.py                  # 4 subjects at 4 mm
    python benchmarks/bench_export.py --n 8 --tag cpu_n8

Results: benchmarks/results/export.{json,md}, one run per configuration (``--tag`` labels it).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import numpy as np

from petct_pipeline.evaluation.inputs import discover_inputs
from petct_pipeline.export import export_dataset
from petct_pipeline.io import load_nifti, save_nifti, write_json
from petct_pipeline.lesions import insert_lesions
from petct_pipeline.organs import LABEL_IDS
from petct_pipeline.phantom import sample_population, write_population

#: (format, label set) pairs timed, and the issue's target seconds per subject for each format
RUNS = (("nnunet", "lesions"), ("nnunet", "organs"), ("autopet", "lesions"), ("dicom", "lesions"),
        ("dicom", "organs"))
TARGET_S = {"nnunet": 2.0, "autopet": 2.0, "dicom": 10.0}
HEADER = ["format", "labels", "subjects", "s/subject", "target s/subject", "within target", "MB/subject"]


def write_generated_cohort(phantoms: Path, out: Path) -> dict[str, Any]:
    """The phantoms' CT, SUV and organ labels in the generate layout; lesions in every other subject."""
    shapes = []
    for index, subject in enumerate(discover_inputs(phantoms).subjects):
        folder = out / f"s{index:03d}"
        ct, affine = load_nifti(subject.ct)
        suv, _ = load_nifti(subject.pet)
        organs, _ = load_nifti(subject.labels)
        metadata = {"demographics": subject.demographics.to_dict(), "seed": index, "synthetic": True}
        if index % 2 == 0:
            result = insert_lesions(ct, suv, affine, organs.astype(np.int16), diagnosis="LYMPHOMA", generator=index)
            ct, suv = result.ct, result.suv
            result.save(folder, volumes=False)
            metadata.update(diagnosis="LYMPHOMA", lesion_spec=None, lesion_seed=index)
        save_nifti(np.rint(ct).astype(np.int16), affine, folder / "ct.nii.gz")
        save_nifti(suv.astype(np.float32), affine, folder / "pet_suv.nii.gz")
        save_nifti(organs.astype(np.uint8), affine, folder / "organs.nii.gz")
        write_json(dict(LABEL_IDS), folder / "organs.json")
        write_json(metadata, folder / "metadata.json")
        shapes.append(ct.shape)
    return {"shape_min": list(np.min(shapes, axis=0)), "shape_max": list(np.max(shapes, axis=0))}


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def render_markdown(result: dict[str, Any]) -> str:
    return "\n".join([
        f"{result['subjects']} whole-body phantom subjects at {result['spacing_mm']:g} mm in the generate layout "
        f"(grids {'x'.join(map(str, result['shape_min']))} to {'x'.join(map(str, result['shape_max']))} voxels), "
        "every other one with LYMPHOMA lesions; seconds per subject of `export_dataset` (reading, converting, "
        "writing, renaming, index files) on 2 CPU cores shared with other work:", "",
        *harness.markdown_table(HEADER, result["rows"])]) + "\n"


def headline_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"format": f"{row[0]} ({row[1]})", "s/subject": row[3], "within target": row[5]}
            for row in result["rows"]]


BENCHMARK = harness.Benchmark("export", __doc__, __file__, render_markdown, headline_rows)


def main() -> None:
    parser = harness.argument_parser(__doc__, tag=True)
    parser.add_argument("--n", type=int, default=4, help="subjects")
    parser.add_argument("--spacing", type=float, default=4.0, help="voxel size in mm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        root = Path(tmp)
        write_population(sample_population(args.n, seed=args.seed), root / "phantoms", seed=args.seed,
                         spacing=args.spacing)
        grids = write_generated_cohort(root / "phantoms", root / "generated")
        for fmt, labels in RUNS:
            out = root / f"{fmt}_{labels}"
            started = time.perf_counter()
            result = export_dataset(root / "generated", out, fmt, labels=labels, progress=False)
            seconds = (time.perf_counter() - started) / args.n
            assert len(result.written) == args.n
            rows.append([fmt, labels, args.n, round(seconds, 3), TARGET_S[fmt], seconds <= TARGET_S[fmt],
                         round(_size_mb(out) / args.n, 2)])
            print(f"{fmt} {labels}: {seconds:.3f} s/subject", flush=True)
    result = {"subjects": args.n, "spacing_mm": args.spacing, **grids, "rows": rows}
    config = {"subjects": args.n, "spacing_mm": args.spacing, "seed": args.seed}
    print(BENCHMARK.save(args.tag, config, result))


if __name__ == "__main__":
    main()
