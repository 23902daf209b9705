"""Lesion insertion: truth recovery by diameter and cost per whole-body subject (``petct_pipeline.lesions``).

Generates ``--n`` phantoms (demographics drawn like AutoPET, ``--spacing`` mm, no lesions of
their own), then per subject:

* cost: ``insert_lesions`` by diagnosis (LYMPHOMA, MELANOMA, LUNG_CANCER; 1-8 lesions each),
  wall time of the call (body mask, sites, placement, PET/CT, measurement; not the file I/O);
* recovery: three spec lists of five spheres (liver, lung, lung, node, bone), one asking
  ``suv_max``, one ``suv_mean``, one ``lesion_to_background``, the diameters cycling through
  6, 8, 10, 13, 17, 22, 28, 37 mm (the NEMA IEC spheres and two smaller; at most 17 mm in bone
  and 22 mm for nodes, the largest the phantom's bones and perivascular fat hold). Per diameter: the
  written value's error against the request (lesions >= 10 mm are calibrated to it), and the
  recovery coefficient of the PSF and grid, written value / the inserted activity's value
  (RCmax from the suv_max lesions, RCmean from the suv_mean ones).

    python benchmarks/bench_lesions.py                 # 6 subjects at 4 mm
    python benchmarks/bench_lesions.py --n 10 --spacing 2 --tag cpu_2mm

Results: benchmarks/results/lesions.{json,md}, one run per configuration (``--tag`` labels it).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import harness
import numpy as np

from petct_pipeline.lesions import PSF_FWHM_MM, insert_lesions
from petct_pipeline.phantom import generate_phantom, sample_population

DIAMETERS_MM = (6, 8, 10, 13, 17, 22, 28, 37)
SITES = ({"organ": "liver"}, {"site": "lung"}, {"site": "lung"}, {"site": "node"}, {"site": "bone"})
RECOVERY_HEADER = ["diameter mm", "lesions", "within 10 %", "median abs error %", "max abs error %", "RCmax",
                   "RCmean"]
COST_HEADER = ["diagnosis", "subjects", "lesions/subject", "mean s", "max s"]


def _spec_lists(rng: np.random.Generator, start: int) -> list[list[dict[str, Any]]]:
    """Three spec lists (one per requested quantity) of five spheres; diameters cycle from ``start``."""
    lists, k = [], start
    for quantity in ("suv_max", "suv_mean", "lesion_to_background"):
        items = []
        for where in SITES:
            diameter = DIAMETERS_MM[k % len(DIAMETERS_MM)]
            k += 1
            # the phantom's bones hold no bigger sphere, nor its fat beside the vessels a bulkier node
            diameter = min(diameter, {"bone": 17, "node": 22}.get(where.get("site"), diameter))
            value = float(rng.uniform(3.0, 10.0) if quantity == "lesion_to_background" else rng.uniform(5.0, 20.0))
            items.append({**where, "diameter_mm": diameter, quantity: round(value, 2)})
        lists.append(items)
    return lists


def _recovery_rows(records: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for diameter in DIAMETERS_MM:
        group = [r for r in records if r["requested"]["diameter_mm"] == diameter]
        if not group:
            continue
        errors = [abs(r["error_pct"]) for r in group]
        rc_max = [1 - r["partial_volume_loss_pct"] / 100 for r in group if r["requested_quantity"] == "suv_max"]
        rc_mean = [1 - r["partial_volume_loss_pct"] / 100 for r in group if r["requested_quantity"] == "suv_mean"]
        rows.append([diameter, len(group), f"{sum(e < 10 for e in errors)}/{len(group)}",
                     round(statistics.median(errors), 2), round(max(errors), 2),
                     round(statistics.mean(rc_max), 3) if rc_max else "", round(statistics.mean(rc_mean), 3)
                     if rc_mean else ""])
    return rows


def render_markdown(result: dict[str, Any]) -> str:
    lines = [f"{result['subjects']} phantoms at {result['spacing_mm']:g} mm, PSF FWHM {result['psf_fwhm_mm']:g} mm; "
             f"{result['recovery_lesions']} spheres for recovery (lesions >= 10 mm are calibrated to the request; "
             f"smaller ones keep the requested value as their activity, RC = written / activity):", "",
             *harness.markdown_table(RECOVERY_HEADER, result["recovery"]), "",
             "Cost of `insert_lesions` per whole-body subject (2 CPU cores shared with other work):", "",
             *harness.markdown_table(COST_HEADER, result["cost"])]
    if result["not_placed"]:
        lines += ["", f"Sampled lesions that fit nowhere and were left out: {result['not_placed']}"]
    return "\n".join(lines) + "\n"


def headline_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    calibrated = [r for r in result["recovery"] if r[0] >= 10]
    within = sum(int(r[2].split("/")[0]) for r in calibrated)
    total = sum(r[1] for r in calibrated)
    costs = [row[3] for row in result["cost"]]
    return [{"lesions >= 10 mm within 10 %": f"{within}/{total}",
             "max abs error % (>= 10 mm)": max(r[4] for r in calibrated),
             "mean s/subject": round(statistics.mean(costs), 3),
             "max s/subject": max(row[4] for row in result["cost"])}]


BENCHMARK = harness.Benchmark("lesions", __doc__, __file__, render_markdown, headline_rows)


def main() -> None:
    parser = harness.argument_parser(__doc__, tag=True)
    parser.add_argument("--n", type=int, default=6, help="phantom subjects")
    parser.add_argument("--spacing", type=float, default=4.0, help="phantom voxel size in mm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    recovery, cost, not_placed = [], {}, 0
    for index, demographics in enumerate(sample_population(args.n, args.seed)):
        subject_seed = args.seed + index
        subject = generate_phantom(demographics, subject_seed, spacing=args.spacing)
        volumes = (subject.ct_hu, subject.suv, subject.affine, subject.organs)
        for diagnosis in ("LYMPHOMA", "MELANOMA", "LUNG_CANCER"):
            started = time.perf_counter()
            result = insert_lesions(*volumes, diagnosis=diagnosis, generator=subject_seed)
            cost.setdefault(diagnosis, []).append((time.perf_counter() - started, len(result.records)))
            not_placed += len(result.not_placed)
        for items in _spec_lists(rng, start=index):
            recovery += insert_lesions(*volumes, lesions=items, generator=subject_seed).records
        print(f"subject {index + 1}/{args.n} done", flush=True)
    cost_rows = [[d, len(v), round(statistics.mean(n for _, n in v), 2), round(statistics.mean(t for t, _ in v), 3),
                  round(max(t for t, _ in v), 3)] for d, v in cost.items()]
    result = {"subjects": args.n, "spacing_mm": args.spacing, "psf_fwhm_mm": PSF_FWHM_MM,
              "recovery_lesions": len(recovery), "recovery": _recovery_rows(recovery), "cost": cost_rows,
              "not_placed": not_placed, "records": recovery}
    config = {"subjects": args.n, "spacing_mm": args.spacing, "seed": args.seed}
    print(BENCHMARK.save(args.tag, config, result))


if __name__ == "__main__":
    main()
