"""Stage 1 from the training range's edge outward: demographics clamped to the range vs unbounded.

Outside the training range (recorded in the pipeline's model_index.json) both feature-dependent
terms of stage 1 extrapolate: the demographic encoder's embedding, which the UNet never saw there,
and the demographic prior, a linear model. The pipeline clamps the demographics to the range before
they reach either (the field of view still follows the true height). This benchmark walks a grid of
demographics from inside the range to far outside it (weight at fixed height, height at fixed
weight, both sexes) and reports, clamped (shipped) and unbounded, the prior shift's size (mean
|shift| in model units) and the stage-1 body's coarse anatomy (body volume, enclosed air), same
seed per row; ``--figure`` draws coronal CT slices of both:

    python benchmarks/bench_extrapolation.py [--steps 16] [--figure docs/extrapolation.png]
"""

from __future__ import annotations

from typing import Any

import harness
import numpy as np
import torch
from bench_conditioning import coarse_anatomy, measure_volumes

from petct_pipeline.demographics import Demographics

#: (varied field, values, fixed fields): weight at 170 cm, height at 80 kg; the shipped range ends near
#: 126 kg and 193 cm
GRID = (
    ("weight", (70.0, 120.0, 150.0, 200.0, 250.0), {"height": 170.0}),
    ("height", (170.0, 190.0, 205.0, 220.0), {"weight": 80.0}),
)
AGE = 55.0


def grid_subjects() -> list[Demographics]:
    subjects = []
    for name, values, fixed in GRID:
        for sex in ("F", "M"):
            for value in values:
                subjects.append(Demographics(age=AGE, sex=sex, **{**fixed, name: value}))
    return subjects


@torch.no_grad()
def measure(pipe, subjects: list[Demographics], steps: int, clamp: bool) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Stage-1 samples (seed = row) with the demographics clamped to the training range or not, and their measures."""
    recorded = pipe.training_range.to_dict()
    pipe.register_to_config(training_range=recorded if clamp else None)  # unbounded: as if none were recorded
    try:
        rows, volumes = [], []
        for position, subject in enumerate(subjects):
            condition = pipe.stage1_denoiser.condition([subject], prior_scale=pipe.default_prior_scale)
            volume = pipe.sample_base([subject], steps, generator=torch.Generator().manual_seed(position))
            volumes.append(volume[0].numpy())
            anatomy = measure_volumes(volume.numpy(), pipe.config.base_spacing, coarse_anatomy)[0]
            rows.append({"prior_shift": float(condition.prior_shift.abs().mean()), **anatomy})
    finally:
        pipe.register_to_config(training_range=recorded)
    return rows, np.stack(volumes)


def render_markdown(result: dict[str, Any]) -> str:
    lines = [f"Training range: {result['training_range']}.", "",
             *harness.markdown_table(*table(result))]
    return "\n".join(lines) + "\n"


def table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    header = ["sex", "age", "weight kg", "height cm", "outside range", "prior shift clamped", "prior shift unbounded",
              "body L clamped", "body L unbounded", "enclosed air L clamped", "enclosed air L unbounded"]
    rows = []
    for row in result["rows"]:
        clamped, free = row["clamped"], row["unbounded"]
        rows.append([row["sex"], row["age"], row["weight"], row["height"], row["outside"],
                     round(clamped["prior_shift"], 4), round(free["prior_shift"], 4),
                     round(clamped["body_ml"] / 1000, 2), round(free["body_ml"] / 1000, 2),
                     round(clamped["enclosed_air_ml"] / 1000, 2), round(free["enclosed_air_ml"] / 1000, 2)])
    return header, rows


BENCHMARK = harness.Benchmark("extrapolation", __doc__, __file__, render_markdown, table=table)


def draw_figure(path, subjects: list[Demographics], clamped: np.ndarray, unbounded: np.ndarray) -> None:
    """Coronal CT slices of the weight rows of one sex: clamped demographics (top) vs unbounded (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from petct_pipeline.intensity import from_model_space

    picked = [i for i, s in enumerate(subjects) if s.sex == "F" and s.height == 170.0][: len(GRID[0][1])]
    fig, axes = plt.subplots(2, len(picked), figsize=(2.2 * len(picked), 5.2))
    for column, index in enumerate(picked):
        for row, volumes in enumerate((clamped, unbounded)):
            ct, _ = from_model_space(volumes[index][0], volumes[index][1])
            axes[row, column].imshow(np.rot90(np.asarray(ct)[:, ct.shape[1] // 2, :]), cmap="gray", vmin=-400,
                                     vmax=400)
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
        axes[0, column].set_title(f"{subjects[index].weight:g} kg", fontsize=9)
    axes[0, 0].set_ylabel("clamped to the\ntraining range (shipped)", fontsize=9)
    axes[1, 0].set_ylabel("unbounded", fontsize=9)
    fig.suptitle("Stage 1, woman 55 y, 170 cm: weight from inside the training range (<= 126 kg) outward", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__, model=True, tag=True)
    parser.add_argument("--steps", type=int, default=16, help="stage-1 steps (the shipped default)")
    parser.add_argument("--figure", default=None, help="write the clamped vs unbounded CT figure here")
    args = parser.parse_args(argv)
    model, pipe = harness.load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    if pipe.training_range is None or pipe.demographic_prior is None:
        parser.error(f"{model} records no training range or has no demographic prior: nothing to clamp")
    subjects = grid_subjects()
    clamped, clamped_volumes = measure(pipe, subjects, args.steps, clamp=True)
    unbounded, unbounded_volumes = measure(pipe, subjects, args.steps, clamp=False)
    rows = [{"sex": s.sex, "age": s.age, "weight": s.weight, "height": s.height,
             "outside": ", ".join("combination" if reason.startswith("the combination") else reason.split(" ")[0]
                                  for reason in pipe.training_range.reasons(s)) or "-",
             "clamped": c, "unbounded": u} for s, c, u in zip(subjects, clamped, unbounded)]
    result = {"training_range": pipe.training_range.describe(), "rows": rows}
    if args.figure:
        draw_figure(args.figure, subjects, clamped_volumes, unbounded_volumes)
    config = {"model": harness.relative(model), "steps": args.steps, "prior_scale": pipe.default_prior_scale}
    print(BENCHMARK.save(args.tag, config, result, argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
