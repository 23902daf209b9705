"""PET from a given CT: organ SUVmean and voxel-wise error against held-out phantoms, placement, anatomy, cost.

Each held-out phantom's CT (``CTres.nii.gz``, whole body at 4 mm) goes in with its demographics, and its
own PET (``SUV.nii.gz``) is the truth. Compared on the same voxels (the phantom's body inside the
model's frame, vertex down a length that follows height: the only place any method generates):

* ``conditional``: ``pipe.pet_from_ct`` (stage 1 inpainted by replacement through the known-voxels
  seam, stage 2 with the 4 mm CT known, placement estimated), the shipped default;
* ``repaint``: the same with RePaint resampling in stage 1 (2 passes per step), on ``--repaint-limit``
  subjects (it doubles stage 1's cost);
* ``unconditional``: ``pipe(demographics)`` with the same seed, placed in the CT's frame at the same
  vertex: what the cascade gives without the CT;
* ``baseline``: every structure of the phantom's own label map (an oracle segmentation of the CT)
  filled with the training population's mean SUV for that label (TotalSegmentator ids), the rest of
  the body with the population's mean SUV of unlabelled body voxels; no model at all.

Figures per method: organ SUVmean absolute error (%) per organ, voxel-wise mean absolute error
(SUV) inside the body, and the Dice of the hot voxels (SUV >= ``HOT_SUV``) against the union of the
CT's hot organs (brain, heart, kidneys), the truth PET's own Dice being the ceiling its blur allows.
Placement: the estimated ``offset_mm`` of the whole-body CT against the truth (the top of its body is
the vertex), and of a chest crop and an abdomen crop of the same CT. Cost: seconds of
``pet_from_ct`` per whole-body 4 mm CT (``--threads`` torch threads; the machine is shared).

    python benchmarks/bench_ct_to_pet.py --reference /work/main/data/phantoms_wb4_heldout \\
        --train /work/main/data/phantoms_wb4_train --limit 40

Results: benchmarks/results/ct_to_pet.{json,md}, one run per configuration (``--tag`` labels it);
per-subject records under --work (a rerun resumes from them).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import harness
import nibabel as nib
import numpy as np
import torch

ORGANS = ("brain", "heart", "liver", "spleen", "kidneys", "lungs")
HOT_ORGANS = ("brain", "heart", "kidneys")
HOT_SUV = 3.0
METHODS = ("conditional", "repaint", "unconditional", "baseline")
#: chest and abdomen crops of the whole-body CT, as fractions of the model's body length below the vertex
CROPS = {"chest": (0.28, 0.62), "abdomen": (0.55, 0.95)}


def organ_masks(labels: np.ndarray) -> dict[str, np.ndarray]:
    from petct_pipeline.organs import organ_mask

    return {name: organ_mask(labels, name) for name in ORGANS}


def population_means(train: Path, limit: int) -> dict[str, float]:
    """Mean SUV per label id (keys "1".."117"), per evaluation organ and of unlabelled body voxels ("other") over the
    first ``limit`` training phantoms (each subject's mean, averaged over subjects)."""
    from petct_pipeline.data.scan import scan_dataset

    sums: dict[str, list[float]] = {}
    for study in scan_dataset(train).studies[:limit]:
        suv = np.asarray(nib.load(study.suv).dataobj, dtype=np.float32)
        labels = np.asarray(nib.load(study.organs).dataobj).astype(np.int32)
        ct = np.asarray(nib.load(study.ctres).dataobj)
        for name, mask in organ_masks(labels).items():
            if mask.any():
                sums.setdefault(name, []).append(float(suv[mask].mean()))
        counts = np.bincount(labels.ravel())
        totals = np.bincount(labels.ravel(), weights=suv.ravel())
        for label in np.nonzero(counts)[0][1:]:
            sums.setdefault(str(int(label)), []).append(float(totals[label] / counts[label]))
        sums.setdefault("other", []).append(float(suv[filled_body(ct) & (labels == 0)].mean()))
    return {name: statistics.mean(values) for name, values in sums.items()}


def filled_body(hu: np.ndarray) -> np.ndarray:
    """Voxels above -500 HU with every axial slice's holes (lungs, bowel gas) filled."""
    from scipy import ndimage

    body = hu > -500
    for k in range(body.shape[2]):
        body[:, :, k] = ndimage.binary_fill_holes(body[:, :, k])
    return body


def baseline_pet(labels: np.ndarray, body: np.ndarray, means: dict[str, float]) -> np.ndarray:
    """Each labelled structure at the population's mean SUV for its label, the rest of the body at that of the
    population's unlabelled body voxels."""
    table = np.zeros(int(labels.max()) + 1, np.float32)
    table[0] = means["other"]
    for label in range(1, len(table)):
        table[label] = means.get(str(label), means["other"])
    return np.where(body, table[labels.astype(np.int64)], 0.0).astype(np.float32)


def unconditional_pet(pipe: Any, subject: Any, seed: int, ct: Any, vertex_mm: float, center_xy: tuple[float, float]
                      ) -> np.ndarray:
    """``pipe(subject)`` placed with its vertex at ``vertex_mm`` and its axis at ``center_xy`` of the CT's grid."""
    from petct_pipeline.data.preprocess import resample, target_affine

    output = pipe(subject, generator=torch.Generator().manual_seed(seed))
    pet = output.pet[0]
    affine = target_affine(pet.shape, pipe.output_spacing, center_xy, vertex_mm)
    return resample(pet, affine, ct.hu.shape, ct.affine, order=1, cval=0.0)


def metrics(pet: np.ndarray, truth: np.ndarray, masks: dict[str, np.ndarray], region: np.ndarray) -> dict[str, Any]:
    organs = {}
    for name, mask in masks.items():
        inside = mask & region
        if inside.sum() >= 0.5 * max(1, mask.sum()) and inside.sum() > 8:
            true_mean = float(truth[inside].mean())
            organs[name] = {"truth": true_mean, "value": float(pet[inside].mean()),
                            "abs_error_pct": 100.0 * abs(float(pet[inside].mean()) - true_mean) / true_mean}
    hot_organs = np.zeros_like(region)
    for name in HOT_ORGANS:
        hot_organs |= masks[name] & region
    hot = (pet >= HOT_SUV) & region
    dice = 2.0 * float((hot & hot_organs).sum()) / max(1.0, float(hot.sum() + hot_organs.sum()))
    return {"organs": organs, "voxel_mae": float(np.abs(pet - truth)[region].mean()), "hot_dice": dice}


def crop(ct: Any, top_fraction: float, bottom_fraction: float, vertex_mm: float, length_mm: float) -> Any:
    """The CT's slices between ``top_fraction`` and ``bottom_fraction`` of ``length_mm`` below the vertex."""
    from petct_pipeline.conditional import InputCT

    z = ct.affine[2, 3] + ct.affine[2, 2] * np.arange(ct.hu.shape[2])
    keep = (z <= vertex_mm - top_fraction * length_mm) & (z >= vertex_mm - bottom_fraction * length_mm)
    first = int(np.nonzero(keep)[0][0])
    affine = ct.affine.copy()
    affine[:3, 3] = ct.affine[:3, :3] @ np.array([0.0, 0.0, first]) + ct.affine[:3, 3]
    hu = np.ascontiguousarray(ct.hu[:, :, keep])
    return InputCT(hu=hu, affine=affine, file_shape=hu.shape, file_affine=affine, source="crop", path=ct.path,
                   dtype="float32", hu_offset=0.0, file_values=hu)


def run_subject(pipe: Any, study: Any, means: dict[str, float], seed: int, repaint: bool, crops: bool,
                unconditional: bool) -> dict[str, Any]:
    from petct_pipeline.conditional import expected_profiles, place_ct, read_ct
    from petct_pipeline.geometry import body_length_mm

    subject = study.demographics
    ct = read_ct(study.ctres)
    truth = np.asarray(nib.as_closest_canonical(nib.load(study.suv)).dataobj, dtype=np.float32)
    labels = np.asarray(nib.as_closest_canonical(nib.load(study.organs)).dataobj)
    masks = organ_masks(labels)
    started = time.perf_counter()
    conditional = pipe.pet_from_ct(ct, subject, generator=torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - started
    pet = conditional.pet_canonical
    body_top = float(ct.affine[2, 3] + ct.affine[2, 2] * (np.nonzero((ct.hu > -500).any(axis=(0, 1)))[0].max() + 0.5))
    placement = conditional.placement
    true_offset = body_top - placement.ct_top_mm  # the vertex is the top of the body; negative: CT top above it
    low, high = conditional.metadata["ct_to_pet"]["pet_generated_where"]["z_mm"]
    z = ct.affine[2, 3] + ct.affine[2, 2] * np.arange(ct.hu.shape[2])
    region = filled_body(ct.hu) & ((z > low) & (z < high))[None, None, :]  # lungs are body
    record: dict[str, Any] = {
        "subject": study.subject_id, "demographics": subject.to_dict(), "seconds": seconds,
        "placement": {"estimated_offset_mm": placement.offset_mm, "true_offset_mm": true_offset,
                      "error_mm": placement.offset_mm - true_offset, "body_size_ratio": placement.body_size_ratio},
        "methods": {"conditional": metrics(pet, truth, masks, region)},
        "truth_hot_dice": metrics(truth, truth, masks, region)["hot_dice"],
    }
    record["methods"]["baseline"] = metrics(baseline_pet(labels, filled_body(ct.hu), means), truth, masks, region)
    if unconditional:
        uncond = unconditional_pet(pipe, subject, seed, ct, placement.vertex_mm, placement.center_xy_mm)
        record["methods"]["unconditional"] = metrics(uncond, truth, masks, region)
    if repaint:
        started = time.perf_counter()
        result = pipe.pet_from_ct(ct, subject, ct_offset_mm=placement.offset_mm, method="repaint", jumps=2,
                                  generator=torch.Generator().manual_seed(seed))
        record["repaint_seconds"] = time.perf_counter() - started
        record["methods"]["repaint"] = metrics(result.pet_canonical, truth, masks, region)
    if crops:
        vertex = body_top
        length = body_length_mm(subject.height)
        expected = expected_profiles(pipe, subject, 1.0, pipe.default_prior_scale, seed + 1)  # as pet_from_ct's
        for name, (top, bottom) in CROPS.items():
            part = crop(ct, top, bottom, vertex, length)
            truth_offset = vertex - (part.affine[2, 3] + part.affine[2, 2] * (part.hu.shape[2] - 0.5))
            placed = place_ct(pipe, part, subject, None, 1.0, pipe.default_prior_scale, seed + 1, expected)
            record["placement"][name] = {"estimated_offset_mm": placed.offset_mm, "true_offset_mm": truth_offset,
                                         "error_mm": placed.offset_mm - truth_offset,
                                         "body_size_ratio": placed.body_size_ratio}
    return record


def read_records(work: Path, seed: int) -> dict[str, dict[str, Any]]:
    """Every subject recorded under ``work`` for ``seed`` (all shards)."""
    found = {}
    for path in sorted(work.glob(f"records_seed{seed}_shard*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                found[record["subject"]] = record
    return found


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    methods = [m for m in METHODS if any(m in r["methods"] for r in records)]
    organ_rows, overall = [], []
    for method in methods:
        rows = [r["methods"][method] for r in records if method in r["methods"]]
        row: list[Any] = [method, len(rows)]
        for organ in ORGANS:
            errors = [m["organs"][organ]["abs_error_pct"] for m in rows if organ in m["organs"]]
            row.append(round(statistics.mean(errors), 1) if errors else "-")
        all_errors = [o["abs_error_pct"] for m in rows for o in m["organs"].values()]
        row.append(round(statistics.mean(all_errors), 1))
        organ_rows.append(row)
        maes = [m["voxel_mae"] for m in rows]
        dice = [m["hot_dice"] for m in rows]
        overall.append([method, len(rows), round(statistics.mean(maes), 3), round(statistics.median(maes), 3),
                        round(statistics.mean(dice), 3), round(statistics.mean(all_errors), 1)])
    overall.append(["the truth PET itself", len(records), 0.0, 0.0,
                    round(statistics.mean(r["truth_hot_dice"] for r in records), 3), 0.0])
    placement_rows = []
    for name in ("whole body", *CROPS):
        errors = [abs(r["placement"]["error_mm"] if name == "whole body" else r["placement"][name]["error_mm"])
                  for r in records if name == "whole body" or name in r["placement"]]
        if errors:
            placement_rows.append([name, len(errors), round(statistics.mean(errors), 1),
                                   round(statistics.median(errors), 1), round(max(errors), 1),
                                   f"{sum(e <= 40 for e in errors)}/{len(errors)}"])
    seconds = [r["seconds"] for r in records]
    repaint_seconds = [r["repaint_seconds"] for r in records if "repaint_seconds" in r]
    wins = {}
    for organ in ORGANS:
        pairs = [(r["methods"]["conditional"]["organs"][organ]["abs_error_pct"],
                  r["methods"]["baseline"]["organs"][organ]["abs_error_pct"]) for r in records
                 if organ in r["methods"]["conditional"]["organs"] and organ in r["methods"]["baseline"]["organs"]]
        if pairs:
            wins[organ] = f"{sum(c < b for c, b in pairs)}/{len(pairs)}"
    return {"subjects": len(records), "organ_rows": organ_rows, "overall_rows": overall,
            "placement_rows": placement_rows, "conditional_beats_baseline": wins,
            "seconds_mean": round(statistics.mean(seconds), 2), "seconds_max": round(max(seconds), 2),
            "repaint_seconds_mean": round(statistics.mean(repaint_seconds), 2) if repaint_seconds else None}


ORGAN_HEADER = ["method", "subjects", *[f"{o} %" for o in ORGANS], "all organs %"]
OVERALL_HEADER = ["method", "subjects", "voxel MAE SUV (mean)", "voxel MAE SUV (median)", "hot-organ Dice",
                  "organ SUVmean abs error %"]
PLACEMENT_HEADER = ["CT", "subjects", "mean abs error mm", "median mm", "max mm", "within 40 mm"]


def render_markdown(result: dict[str, Any]) -> str:
    summary = result["summary"]
    lines = [f"{summary['subjects']} held-out phantoms (4 mm whole-body CTs), seed {result['seed']}; sampling "
             f"{result['sampling']}; compared inside the body within the model's frame. Organ SUVmean absolute "
             "error (%) against the phantom's own PET:", "",
             *harness.markdown_table(ORGAN_HEADER, summary["organ_rows"]), "",
             f"Voxel-wise error inside the body and anatomical agreement (Dice of SUV >= {HOT_SUV:g} against the "
             f"CT's {', '.join(HOT_ORGANS)}):", "", *harness.markdown_table(OVERALL_HEADER, summary["overall_rows"]),
             "", "Conditional beats the baseline (subjects, per organ): " + ", ".join(
                 f"{k} {v}" for k, v in summary["conditional_beats_baseline"].items()), "",
             "Placement (estimated offset from the vertex against the truth):", "",
             *harness.markdown_table(PLACEMENT_HEADER, summary["placement_rows"]), "",
             f"Cost of `pet_from_ct` per whole-body 4 mm CT: mean {summary['seconds_mean']} s, max "
             f"{summary['seconds_max']} s ({result['threads']} torch threads, load average {result['load_average']})"
             + (f"; with RePaint {summary['repaint_seconds_mean']} s" if summary["repaint_seconds_mean"] else "") + "."]
    return "\n".join(lines) + "\n"


def headline_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in result["summary"]["overall_rows"]:
        rows.append({"method": row[0], "subjects": row[1], "voxel MAE SUV": row[2], "hot-organ Dice": row[4],
                     "organ SUVmean abs error %": row[5]})
    return rows


BENCHMARK = harness.Benchmark("ct_to_pet", __doc__, __file__, render_markdown, headline_rows)


def main() -> None:
    import os

    from petct_pipeline.data.scan import scan_dataset

    parser = harness.argument_parser(__doc__, model=True, reference="--reference", tag=True)
    parser.add_argument("--train", type=Path, required=True, help="training phantoms (population mean SUVs)")
    parser.add_argument("--train-limit", type=int, default=40)
    parser.add_argument("--limit", type=int, default=40, help="held-out subjects")
    parser.add_argument("--repaint-limit", type=int, default=10, help="subjects that also run RePaint")
    parser.add_argument("--crop-limit", type=int, default=40, help="subjects whose chest/abdomen crops are placed")
    parser.add_argument("--unconditional-limit", type=int, default=40, help="subjects also generated unconditionally")
    parser.add_argument("--shard", default="1/1", metavar="K/N",
                        help="run only subjects K, K+N, ... (1-based; several processes share the subjects, each with "
                        "its own records file; the last to finish, or --summarise, writes the results)")
    parser.add_argument("--reverse", action="store_true",
                        help="take the shard's subjects from the last: a second process on the same shard meets the "
                        "first in the middle (each skips what the other recorded)")
    parser.add_argument("--summarise", action="store_true",
                        help="only write the results from the subjects recorded under --work (all, or those so far)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_ct_to_pet"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    means_file = args.work / "population_means.json"
    if not means_file.exists():
        means_file.write_text(json.dumps(population_means(args.train, args.train_limit)))
    means = json.loads(means_file.read_text())
    model, pipe = harness.load_pipeline(args.model)
    shard, shards = (int(v) for v in args.shard.split("/"))
    records_file = args.work / f"records_seed{args.seed}_shard{shard}of{shards}.jsonl"
    studies = scan_dataset(args.reference).studies[: args.limit]
    order = list(enumerate(studies))
    for index, study in reversed(order) if args.reverse else order:
        if args.summarise or index % shards != shard - 1 or study.subject_id in read_records(args.work, args.seed):
            continue
        record = run_subject(pipe, study, means, args.seed + index, index < args.repaint_limit,
                             index < args.crop_limit, index < args.unconditional_limit)
        with open(records_file, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        maes = {name: round(m["voxel_mae"], 3) for name, m in record["methods"].items()}
        print(f"{index + 1}/{len(studies)} {study.subject_id}: {record['seconds']:.1f} s, MAE {maes}, placement "
              f"error {record['placement']['error_mm']:.0f} mm", flush=True)
    found = read_records(args.work, args.seed)
    records = [found[study.subject_id] for study in studies if study.subject_id in found]
    if not records:
        raise SystemExit(f"bench_ct_to_pet.py: no subject recorded under {args.work} yet (run without --summarise)")
    if len(records) < len(studies) and not args.summarise:
        print(f"{len(records)}/{len(studies)} subjects recorded; the results are written when all are (or with "
              "--summarise)", flush=True)
        return
    from petct_pipeline.pipeline_petct import DEFAULT_BACK_PROJECTION_ITERATIONS, DEFAULT_SR_STEPS, DEFAULT_STEPS

    result = {"summary": summarise(records), "population_means": means, "seed": args.seed, "threads": args.threads,
              "load_average": round(os.getloadavg()[0], 2), "model": harness.relative(model),
              "sampling": f"{DEFAULT_STEPS} stage-1 / {DEFAULT_SR_STEPS} SR steps, "
                          f"{DEFAULT_BACK_PROJECTION_ITERATIONS} back-projection iterations (the defaults)",
              "records": records}
    config = {"subjects": len(records), "seed": args.seed, "model": harness.relative(model)}
    print(BENCHMARK.save(args.tag, config, result))


if __name__ == "__main__":
    main()
