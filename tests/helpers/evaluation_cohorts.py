"""Tiny synthetic cohorts for the evaluation tests, written in both layouts ``petct evaluate`` reads.

Small box-shaped bodies at 8 mm with ellipsoid organs carrying TotalSegmentator label ids;
organ sizes follow weight and SUVs follow age, so subgroups and trends have something to
find. ``conftest.py`` builds the shared ``reference_dir`` and ``self_report`` fixtures from them.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from petct_pipeline.demographics import Demographics
from petct_pipeline.geometry import ras_affine
from petct_pipeline.io import save_nifti, write_json
from petct_pipeline.organs import LABEL_IDS

__all__ = ["SPACING", "ORGANS", "DEMOGRAPHICS", "make_volumes", "crop_inferior", "write_generated", "write_autopet",
           "read_csv"]

SPACING = 8.0
# organ: (centre as fraction of (x, y, z), semi-axes in mm at 70 kg, CT HU, SUV)
ORGANS = {
    "brain": ((0.5, 0.5, 0.93), (70, 80, 55), 35, 8.0),
    "lung_upper_lobe_left": ((0.68, 0.5, 0.72), (45, 55, 50), -820, 0.4),
    "lung_lower_lobe_left": ((0.68, 0.5, 0.64), (45, 55, 35), -820, 0.45),
    "lung_upper_lobe_right": ((0.32, 0.5, 0.73), (45, 55, 45), -820, 0.4),
    "lung_middle_lobe_right": ((0.3, 0.42, 0.67), (35, 35, 20), -820, 0.42),
    "lung_lower_lobe_right": ((0.32, 0.55, 0.63), (45, 50, 30), -820, 0.45),
    "heart": ((0.55, 0.4, 0.66), (45, 40, 45), 40, 2.5),
    "aorta": ((0.5, 0.6, 0.55), (10, 10, 90), 40, 1.8),
    "liver": ((0.33, 0.45, 0.53), (75, 65, 60), 60, 2.2),
    "spleen": ((0.72, 0.6, 0.53), (30, 30, 40), 45, 2.0),
    "kidney_left": ((0.68, 0.65, 0.45), (25, 25, 45), 30, 2.6),
    "kidney_right": ((0.32, 0.65, 0.44), (25, 25, 45), 30, 2.6),
    "urinary_bladder": ((0.5, 0.4, 0.2), (35, 30, 30), 5, 20.0),
}
DEMOGRAPHICS = [
    Demographics(age=45, sex="M", weight=80, height=180),
    Demographics(age=72, sex="M", weight=95, height=175),
    Demographics(age=58, sex="M", weight=68, height=172),
    Demographics(age=80, sex="M", weight=60, height=170),
    Demographics(age=35, sex="F", weight=55, height=165),
    Demographics(age=68, sex="F", weight=85, height=160),
    Demographics(age=50, sex="F", weight=70, height=168),
    Demographics(age=77, sex="F", weight=62, height=158),
]


def make_volumes(d: Demographics, seed: int, liver_suv_scale: float = 1.0):
    """(ct, suv, labels, affine) of a tiny synthetic subject."""
    rng = np.random.default_rng(seed)
    nx, ny = 44, 30
    nz = int(round(d.height * 10 * 0.55 / SPACING))
    affine = ras_affine((nx, ny, nz), (SPACING,) * 3)
    x, y, z = np.meshgrid(*(np.arange(n) * SPACING for n in (nx, ny, nz)), indexing="ij")
    width = 150 * math.sqrt(d.weight / 70)
    body = ((x - nx * SPACING / 2) / width) ** 2 + ((y - ny * SPACING / 2) / 95) ** 2 <= 1
    inner = ((x - nx * SPACING / 2) / (width - 16)) ** 2 + ((y - ny * SPACING / 2) / 80) ** 2 <= 1
    ct = np.full((nx, ny, nz), -1000.0, np.float32)
    suv = np.zeros((nx, ny, nz), np.float32)
    ct[body] = -100.0  # subcutaneous fat
    suv[body] = 0.3
    ct[inner] = 40.0
    suv[inner] = 0.8
    labels = np.zeros((nx, ny, nz), np.int16)
    scale = (d.weight / 70) ** (1 / 3) * (1.05 if d.sex == "M" else 0.95)
    for organ, (centre, semi, hu, uptake) in ORGANS.items():
        c = [f * n * SPACING for f, n in zip(centre, (nx, ny, nz))]
        s = [a * scale for a in semi]
        mask = sum(((v - cv) / sv) ** 2 for v, cv, sv in zip((x, y, z), c, s)) <= 1
        labels[mask] = LABEL_IDS[organ]
        ct[mask] = hu
        value = uptake * (1 + 0.004 * (d.age - 60)) if organ in ("liver", "spleen") else uptake
        suv[mask] = value * (liver_suv_scale if organ == "liver" else 1.0)
    noise = rng.normal(1.0, 0.05, suv.shape).astype(np.float32)
    suv = np.clip(suv * noise, 0, None)
    ct = ct + rng.normal(0, 5, ct.shape).astype(np.float32)
    ct[~body] = -1000.0
    suv[~body] = 0.0
    return ct, suv, labels, affine


def crop_inferior(ct, suv, labels, affine, fraction: float):
    """The volumes without their inferior ``fraction`` of slices (a field of view that stops higher up)."""
    start = int(round(fraction * ct.shape[2]))
    affine = affine.copy()
    affine[:3, 3] += start * affine[:3, 2]
    return ct[..., start:], suv[..., start:], labels[..., start:], affine


def write_generated(root: Path, subjects=DEMOGRAPHICS, seeds=None, liver_suv_scale: float = 1.0,
                    with_labels: bool = True, crop_below: float = 0.0, drop_organs=()) -> Path:
    """Generated-layout cohort; ``crop_below``: share of each volume's slices cut off at the feet end,
    ``drop_organs``: organs left out of the label maps (their voxels keep their intensities)."""
    for i, d in enumerate(subjects):
        seed = i if seeds is None else seeds[i]
        ct, suv, labels, affine = crop_inferior(*make_volumes(d, seed, liver_suv_scale), crop_below)
        for organ in drop_organs:
            labels[labels == LABEL_IDS[organ]] = 0
        folder = root / f"s{i:03d}"
        save_nifti(np.round(ct).astype(np.int16), affine, folder / "ct.nii.gz")
        save_nifti(suv.astype(np.float32), affine, folder / "pet_suv.nii.gz")
        if with_labels:
            save_nifti(labels, affine, folder / "organs.nii.gz")
        write_json({"demographics": d.to_dict(), "seed": seed}, folder / "metadata.json")
    return root


def write_autopet(root: Path, subjects=DEMOGRAPHICS) -> Path:
    rows = []
    for i, d in enumerate(subjects):
        ct, suv, labels, affine = make_volumes(d, i)
        subject = f"PETCT_{i:010x}"
        study = f"01-0{1 + i % 9}-2010-NA-PET-CT Ganzkoerper  primaer mit KM-{10000 + i}"
        folder = root / subject / study
        save_nifti(np.round(ct).astype(np.int16), affine, folder / "CTres.nii.gz")
        save_nifti(suv, affine, folder / "SUV.nii.gz")
        save_nifti(np.zeros(ct.shape, np.uint8), affine, folder / "SEG.nii.gz")
        save_nifti(labels, affine, folder / "organs.nii.gz")
        rows.append([subject, study, f"{int(d.age):03d}Y", d.sex, d.weight, d.height])
    with open(root / "demographics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject", "study", "age", "sex", "weight", "height"])
        writer.writerows(rows)
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
