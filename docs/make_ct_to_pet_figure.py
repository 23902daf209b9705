"""Figure of docs/ct_to_pet.md: the PET the shipped model generates for a given CT, on a phantom and on real CTs.

    python docs/make_ct_to_pet_figure.py --reference data/phantoms_wb4_heldout \\
        --real-ct totalsegmentator-2.18.0/tests/reference_files/example_ct.nii.gz \\
        --real-ct totalsegmentator-2.18.0/tests/reference_files/aorta_report/example_ct.nii.gz

Top row: a held-out phantom's CT (coronal slice), its own PET, the PET generated from its CT and
the PET generated from its demographics alone (coronal MIPs, SUV 0-8). Below: each real CT beside
the PET generated for it. The real CTs come from TotalSegmentator's sdist
(``pip download --no-deps --no-binary :all: totalsegmentator==2.18.0``). Also prints the organ
SUVmeans of each real CT's output by the shipped segmenter's labels (the table in the docs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from petct_pipeline import Demographics, PETCTPipeline  # noqa: E402
from petct_pipeline.checkpoints import default_model  # noqa: E402
from petct_pipeline.conditional import read_ct  # noqa: E402
from petct_pipeline.data.preprocess import resample, target_affine  # noqa: E402
from petct_pipeline.data.scan import scan_dataset  # noqa: E402
from petct_pipeline.organ_labels import organ_segmenter  # noqa: E402
from petct_pipeline.organs import organ_mask  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REAL_DEMOGRAPHICS = Demographics(age=60, sex="M", weight=80, height=175)
REPORTED = ("brain", "heart", "lungs", "liver", "spleen", "kidneys", "urinary_bladder")
SUV_MAX = 8.0


def coronal(ct_hu: np.ndarray, pet: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """(CT slice through the body's centre, PET MIP) in the coronal plane, both (z, x) for imshow, and the extent."""
    body = ct_hu > -500
    ys = np.nonzero(body.any(axis=(0, 2)))[0]
    y = int((ys.min() + ys.max()) // 2) if ys.size else ct_hu.shape[1] // 2
    sx, _, sz = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    extent = [0, ct_hu.shape[0] * sx, 0, ct_hu.shape[2] * sz]
    return ct_hu[:, y, :].T, pet.max(axis=1).T, extent


def show(axis, image: np.ndarray, extent: list[float], title: str, ct: bool) -> None:
    if ct:
        axis.imshow(image, cmap="gray", vmin=-400, vmax=600, origin="lower", extent=extent)
    else:
        axis.imshow(image, cmap="gray_r", vmin=0, vmax=SUV_MAX, origin="lower", extent=extent)
    axis.set_title(title, fontsize=8)
    axis.set_axis_off()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="held-out phantoms (AutoPET layout)")
    parser.add_argument("--subject", type=int, default=0)
    parser.add_argument("--real-ct", type=Path, action="append", default=[])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "ct_to_pet.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pipe = PETCTPipeline.from_pretrained(default_model())
    pipe.set_progress_bar_config(disable=True)
    segmenter = organ_segmenter()
    study = scan_dataset(args.reference).studies[args.subject]
    subject = study.demographics
    ct = read_ct(study.ctres)
    truth = np.asarray(nib.as_closest_canonical(nib.load(study.suv)).dataobj, dtype=np.float32)
    result = pipe.pet_from_ct(ct, subject, generator=torch.Generator().manual_seed(args.seed))
    free = pipe(subject, generator=torch.Generator().manual_seed(args.seed)).pet[0]
    placement = result.placement
    free_affine = target_affine(free.shape, pipe.output_spacing, placement.center_xy_mm, placement.vertex_mm)
    free = resample(free, free_affine, ct.hu.shape, ct.affine, order=1, cval=0.0)

    rows = 1 + len(args.real_ct)
    figure, axes = plt.subplots(rows, 4, figsize=(10, 4.2 * rows), squeeze=False)
    name = f"phantom {study.subject_id[-6:]} ({subject.sex}, {subject.age:g} y, {subject.weight:g} kg)"
    ct_slice, _, extent = coronal(ct.hu, truth, ct.affine)
    show(axes[0, 0], ct_slice, extent, f"{name}: CT", ct=True)
    for column, (volume, title) in enumerate(((truth, "its own PET (truth)"), (result.pet_canonical, "PET from its CT"),
                                              (free, "PET from demographics only")), start=1):
        show(axes[0, column], coronal(ct.hu, volume, ct.affine)[1], extent, title, ct=False)

    report = {}
    for row, path in enumerate(args.real_ct, start=1):
        real = read_ct(path)
        output = pipe.pet_from_ct(real, REAL_DEMOGRAPHICS, generator=torch.Generator().manual_seed(args.seed),
                                  segmenter=segmenter)
        labels = segmenter.predict(real.hu, output.pet_canonical, real.affine)
        suv = {}
        for organ in REPORTED:
            mask = organ_mask(labels, organ)
            suv[organ] = round(float(output.pet_canonical[mask].mean()), 2) if mask.sum() > 20 else None
        report[path.name if path.parent.name == "reference_files" else f"{path.parent.name}/{path.name}"] = {
            "shape": list(real.file_shape), "orientation": real.describe()["orientation"],
            "spacing_mm": real.describe()["spacing_mm"], "placement": output.placement.to_dict(), "organ_suv": suv,
            "finite": bool(np.isfinite(output.pet).all()), "suv_max": round(float(output.pet.max()), 2)}
        ct_slice, pet_mip, extent = coronal(real.hu, output.pet_canonical, real.affine)
        label = f"{path.parent.name}/{path.name}"
        show(axes[row, 0], ct_slice, extent, f"real CT {label}", ct=True)
        show(axes[row, 1], pet_mip, extent, f"PET from it (offset {output.placement.offset_mm:.0f} mm)", ct=False)
        fused = axes[row, 2]
        fused.imshow(ct_slice, cmap="gray", vmin=-400, vmax=600, origin="lower", extent=extent)
        fused.imshow(np.ma.masked_less(coronal(real.hu, output.pet_canonical, real.affine)[1], 0.5), cmap="hot",
                     vmin=0, vmax=SUV_MAX, alpha=0.6, origin="lower", extent=extent)
        fused.set_title("fused (PET MIP over the CT slice)", fontsize=8)
        fused.set_axis_off()
        axes[row, 3].set_axis_off()
        axes[row, 3].text(0, 0.5, "\n".join(f"{k}: {v}" for k, v in suv.items() if v is not None), fontsize=8,
                          transform=axes[row, 3].transAxes, va="center")
    figure.suptitle("PET generated for a given CT by the shipped model (synthetic phantom training; SUV 0-8)",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
