"""Figures of the shipped model: generated subjects beside phantoms (README.md), an age counterfactual (docs/usage.md).

    python docs/make_figures.py            # writes docs/generated_vs_phantom.png, docs/counterfactual_age.png

Each panel is a coronal CT slice through the body's centre and a coronal PET MIP, drawn with
the Space's renderer (space/rendering.py), so the pictures look like the demo.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from petct_pipeline import Demographics, PETCTPipeline
from petct_pipeline.checkpoints import default_model
from petct_pipeline.phantom import generate_phantom

REPO = Path(__file__).resolve().parent.parent


def load_space_renderer() -> ModuleType:
    """space/rendering.py, loaded from its file: it ships beside the Space's app.py, not in the installed package."""
    spec = importlib.util.spec_from_file_location("rendering", REPO / "space" / "rendering.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rendering = load_space_renderer()

PAIRS = (
    Demographics(age=63, sex="F", weight=70, height=165),
    Demographics(age=55, sex="M", weight=85, height=178),
)
COUNTERFACTUAL = Demographics(age=30, sex="M", weight=80, height=178)
SEED = 0


def panel(ct: np.ndarray, pet: np.ndarray, spacing: float, label: str, px_per_mm: float):
    """Coronal CT slice at the body's centre beside the coronal PET MIP, captioned."""
    body = ct > -500
    y = int(np.argmax(body.sum(axis=(0, 2)))) if body.any() else ct.shape[1] // 2
    indices = {"axial": ct.shape[2] // 2, "coronal": y, "sagittal": ct.shape[0] // 2}
    sp = (spacing,) * 3
    ct_view = rendering.render_plane(ct, pet, "coronal", indices, sp, mode="CT", px_per_mm=px_per_mm, crosshair=False)
    mip_view = rendering.render_mip(pet, sp, suv_max=8.0, px_per_mm=px_per_mm)
    return rendering.caption(rendering.side_by_side([ct_view, mip_view], gap=2), label)


def generated(pipe: PETCTPipeline, d: Demographics, seed: int):
    out = pipe(d, generator=torch.Generator().manual_seed(seed), output_type="np")
    return out.ct[0], out.pet[0], out.spacing[0]


def describe(d: Demographics) -> str:
    return f"{d.sex} {d.age:g} y {d.weight:g} kg {d.height:g} cm"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped weights)")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    args = parser.parse_args(argv)
    pipe = PETCTPipeline.from_pretrained(args.model or default_model())
    pipe.set_progress_bar_config(disable=True)

    rows = []
    for d in PAIRS:
        ct, pet, spacing = generated(pipe, d, SEED)
        px = rendering.display_scale(ct.shape, (spacing,) * 3, longest_px=520)
        phantom = generate_phantom(d, SEED, spacing=spacing, fov="model")
        rows.append(rendering.side_by_side([panel(ct, pet, spacing, f"generated: {describe(d)}", px),
                                  panel(phantom.ct_hu, phantom.suv, spacing, "phantom, same demographics", px)],
                                 gap=12))
    _stack(rows).save(args.out / "generated_vs_phantom.png")

    panels = []
    for age in (30.0, 80.0):
        d = Demographics(age=age, sex=COUNTERFACTUAL.sex, weight=COUNTERFACTUAL.weight, height=COUNTERFACTUAL.height)
        ct, pet, spacing = generated(pipe, d, SEED)
        px = rendering.display_scale(ct.shape, (spacing,) * 3, longest_px=520)
        panels.append(panel(ct, pet, spacing, f"seed {SEED}: {describe(d)}", px))
    rendering.side_by_side(panels, gap=12).save(args.out / "counterfactual_age.png")
    print(args.out / "generated_vs_phantom.png", args.out / "counterfactual_age.png")
    return 0


def _stack(images):
    from PIL import Image

    width = max(im.size[0] for im in images)
    canvas = Image.new("RGB", (width, sum(im.size[1] for im in images) + 12 * (len(images) - 1)), (255, 255, 255))
    y = 0
    for im in images:
        canvas.paste(im, (0, y))
        y += im.size[1] + 12
    return canvas


if __name__ == "__main__":
    raise SystemExit(main())
