"""How long ``petct evaluate`` takes for N subjects, and the Dice of a ``model:PATH`` organ segmenter.

Writes a phantom population (``petct_pipeline.phantom``, AutoPET layout with organ labels) at
``--spacing`` mm, then times ``evaluate()`` of the population against itself with the ``labels``
segmenter (``--workers`` processes; plots timed separately). With ``--seg-model PATH`` it also
times the model segmenter on the same subjects and reports its Dice per organ against the
phantoms' label maps (held-out data for a model trained on other phantoms).

    python benchmarks/bench_evaluation.py                                  # 16 subjects at 4 mm
    python benchmarks/bench_evaluation.py --n 32 --spacing 2 --workers 2
    python benchmarks/bench_evaluation.py --seg-model runs/seg/organ_segmenter --n 8 --spacing 8

Results: benchmarks/results/evaluation_cpu.{json,md} (``--tag`` changes the name).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="subjects (phantoms) per cohort")
    parser.add_argument("--spacing", type=float, default=4.0, help="phantom voxel size in mm")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--seg-model", type=Path, default=None, help="also time and score this model segmenter")
    parser.add_argument("--tag", default="cpu")
    parser.add_argument("--keep", type=Path, default=None, help="write phantoms and reports here instead of a temp dir")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from petct_pipeline.evaluation import evaluate
    from petct_pipeline.models import OrganSegmentationModel
    from petct_pipeline.organs import EVALUATION_ORGANS
    from petct_pipeline.phantom import sample_population, write_population
    from training.seg_validation import held_out_dice

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_evaluation_"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    studies = write_population(sample_population(args.n, seed=args.seed), work / "phantoms", seed=args.seed,
                               spacing=args.spacing, workers=args.workers)
    phantom_seconds = time.perf_counter() - started
    from petct_pipeline.io import load_nifti

    shape = load_nifti(studies[0] / "SUV.nii.gz")[0].shape

    rows = []
    for plots in (False, True):
        result = evaluate(work / "phantoms", work / "phantoms", out=work / f"report_plots{int(plots)}",
                          segmenter="labels", workers=args.workers, plots=plots)
        info = json.loads((result.out_dir / "evaluation.json").read_text())
        rows.append({"segmenter": "labels", "plots": plots, "subjects": info["timing"]["subjects"],
                     "wall_s": info["timing"]["wall_seconds"],
                     "s_per_subject": info["timing"]["seconds_per_subject"],
                     "measure_s_per_subject": info["timing"]["measure_seconds_per_subject"]})

    dice = None
    if args.seg_model is not None:
        result = evaluate(work / "phantoms", work / "phantoms", out=work / "report_model",
                          segmenter=f"model:{args.seg_model}", reference_segmenter="labels", workers=args.workers,
                          plots=False)
        info = json.loads((result.out_dir / "evaluation.json").read_text())
        rows.append({"segmenter": "model (generated side) + labels", "plots": False,
                     "subjects": info["timing"]["subjects"], "wall_s": info["timing"]["wall_seconds"],
                     "s_per_subject": info["timing"]["seconds_per_subject"],
                     "measure_s_per_subject": info["timing"]["measure_seconds_per_subject"]})
        model = OrganSegmentationModel.from_pretrained(args.seg_model)
        dice = held_out_dice(model, work / "phantoms", EVALUATION_ORGANS)
        dice["model"] = str(args.seg_model)
        dice["model_spacing_mm"] = model.spacing_mm
        dice["trained_info"] = model.info

    results = {
        "subjects_per_cohort": args.n,
        "phantom_spacing_mm": args.spacing,
        "phantom_shape_example": list(shape),
        "workers": args.workers,
        "phantom_write_s": round(phantom_seconds, 2),
        "evaluation": rows,
        "dice": dice,
        "platform": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "machine": platform.machine(), "threads": torch.get_num_threads()},
        "date": time.strftime("%Y-%m-%d"),
    }
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / f"evaluation_{args.tag}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"Evaluation of {args.n} + {args.n} phantom subjects at {args.spacing:g} mm (grid e.g. "
        f"{'x'.join(map(str, shape))}), {args.workers} worker(s):",
        "",
        "| segmenter | plots | subjects | wall s | s/subject | load+segment+measure s/subject |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['segmenter']} | {'yes' if r['plots'] else 'no'} | {r['subjects']} | {r['wall_s']} | "
              f"{r['s_per_subject']} | {r['measure_s_per_subject']} |" for r in rows]
    if dice:
        lines += ["", f"Dice of `{dice['model']}` ({dice['model_spacing_mm']:g} mm model grid) on {dice['studies']} "
                  "phantoms, measured on their own grid:", "",
                  "| " + " | ".join(dice["dice"]) + " |", "|" + "---|" * len(dice["dice"]),
                  "| " + " | ".join("–" if v is None else f"{v:.3f}" for v in dice["dice"].values()) + " |"]
    (out / f"evaluation_{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
