"""Tiny studies written exactly like AutoPET, for the reader, preprocessing-cache and training tests.

Crude synthetic bodies (trunk, lungs, spine, liver, brain, bladder, a patient table) on a
coarse grid: CT, CTres, PET (Bq/mL), SUV, SEG and organ labels per study, plus the
Metadata.csv and demographics.csv of the population.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from petct_pipeline.data.suv import suv_to_activity
from petct_pipeline.io import save_nifti

__all__ = [
    "STUDY_NAME", "METADATA_COLUMNS", "DOSE_BQ", "UPTAKE_S", "DEFAULT_SUBJECTS",
    "synthetic_body", "to_lps", "write_autopet_study", "write_autopet_population", "truncate_gzip",
]

STUDY_NAME = "09-13-2001-NA-PET-CT Ganzkoerper  primaer mit KM-{:05d}"
METADATA_COLUMNS = [
    "Subject ID", "Study UID", "Study Description", "Study Date", "Series Description",
    "diagnosis", "age", "sex", "Modality", "File Location",
]
DOSE_BQ = 3.147e8
UPTAKE_S = 3600.0


def synthetic_body(
    shape: tuple[int, int, int] = (24, 24, 40),
    spacing: tuple[float, float, float] = (8.0, 8.0, 8.0),
    height_cm: float = 175.0,
    liver_suv: float = 2.3,
    table: bool = True,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(CT in HU, SUV, organ labels, RAS affine) of a crude body whose vertex sits 2 voxels below the top."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    sx, sy, sz = spacing
    x = (np.arange(nx) - (nx - 1) / 2) * sx
    y = (np.arange(ny) - (ny - 1) / 2) * sy
    top = (nz - 3) * sz  # vertex height (mm above slice 0)
    z = np.arange(nz) * sz
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij")
    depth = top - Z  # mm below the vertex
    length = min(2.0 * (146.629 * height_cm / 100 + 110.419), top)
    head = (X**2 + Y**2) / 80.0**2 + (depth - 100.0) ** 2 / 110.0**2 <= 1.0
    trunk = (X / 150.0) ** 2 + (Y / 100.0) ** 2 <= 1.0
    trunk &= (depth > 200.0) & (depth <= length)
    body = head | trunk
    ct = np.full(shape, -1000.0, np.float32)
    suv = np.zeros(shape, np.float32)
    organs = np.zeros(shape, np.uint8)
    ct[body], suv[body] = 40.0, 0.8
    lungs = trunk & ((np.abs(X) - 60.0) ** 2 / 45.0**2 + Y**2 / 55.0**2 <= 1.0) & (depth > 260) & (depth < 480)
    ct[lungs], suv[lungs] = -800.0, 0.4
    organs[lungs] = 10  # lung_upper_lobe_left (TotalSegmentator id)
    liver = trunk & ((X + 60.0) ** 2 + Y**2 + (depth - 540.0) ** 2 <= 60.0**2)
    ct[liver], suv[liver] = 110.0, liver_suv
    organs[liver] = 5
    brain = head & ((X**2 + Y**2) / 65.0**2 + (depth - 100.0) ** 2 / 90.0**2 <= 1.0)
    ct[brain], suv[brain] = 35.0, 8.0
    organs[brain] = 90
    spine = trunk & (X**2 + (Y + 60.0) ** 2 <= 20.0**2)
    ct[spine] = 700.0
    bladder = trunk & (X**2 + Y**2 + (depth - (length - 60.0)) ** 2 <= 35.0**2)
    suv[bladder] = 20.0
    organs[bladder] = 21
    if table:  # a patient table touching the back of the body: not part of the body
        ct[:, 0:2, :] = np.where(np.abs(X[:, 0:2, :]) < 200.0, 150.0, ct[:, 0:2, :])
    ct[body] += rng.normal(0.0, 5.0, int(body.sum())).astype(np.float32)
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = [x[0], y[0], -top]
    return ct, suv, organs, affine


def to_lps(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored left-posterior: x and y flipped in the data and in the affine."""
    nx, ny, _ = array.shape
    flip = np.array([[-1, 0, 0, nx - 1], [0, -1, 0, ny - 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    return array[::-1, ::-1, :].copy(), affine @ flip


def write_autopet_study(
    root: Path,
    subject: str,
    index: int,
    *,
    height_cm: float = 175.0,
    shape: tuple[int, int, int] = (24, 24, 40),
    spacing: tuple[float, float, float] = (8.0, 8.0, 8.0),
    lps: bool = False,
    with_ctres: bool = True,
    weight_kg: float = 75.0,
    seed: int = 0,
) -> Path:
    """One study folder with CT, CTres, PET (Bq/mL), SUV, SEG, organs and acquisition.json."""
    study_dir = root / subject / STUDY_NAME.format(index)
    study_dir.mkdir(parents=True, exist_ok=True)
    ct, suv, organs, affine = synthetic_body(shape, spacing, height_cm, seed=seed)
    pet = suv_to_activity(suv, DOSE_BQ, UPTAKE_S, weight_kg)
    seg = (suv > 15).astype(np.uint8)
    images = {"CT": (ct, np.int16), "PET": (pet, np.float32), "SUV": (suv, np.float32),
              "SEG": (seg, np.uint8), "organs": (organs, np.uint8)}
    if with_ctres:
        images["CTres"] = (ct, np.int16)
    for name, (array, dtype) in images.items():
        data, aff = to_lps(array, affine) if lps else (array, affine)
        save_nifti(data, aff, study_dir / f"{name}.nii.gz", dtype=dtype)
    (study_dir / "acquisition.json").write_text(
        json.dumps({"injected_dose_bq": DOSE_BQ, "uptake_time_s": UPTAKE_S, "weight_kg": weight_kg})
    )
    return study_dir


def write_autopet_population(root: Path, subjects: list[dict], **study_kwargs) -> Path:
    """Studies plus Metadata.csv (age as "063Y") and demographics.csv; dict keys: age, sex, weight, height."""
    root.mkdir(parents=True, exist_ok=True)
    meta_rows, demo_rows = [], []
    for i, subject in enumerate(subjects):
        sid = subject.get("id", f"PETCT_{i:010x}")
        study_dir = write_autopet_study(
            root, sid, 10000 + i, height_cm=subject.get("height") or 175.0,
            weight_kg=subject.get("weight") or 75.0, seed=i, lps=subject.get("lps", False), **study_kwargs
        )
        for modality, series in (("CT", "CT"), ("PT", "PET corr.")):
            meta_rows.append({
                "Subject ID": sid, "Study UID": f"1.2.3.{i}", "Study Description": "PET-CT Ganzkoerper",
                "Study Date": "09-13-2001", "Series Description": series, "diagnosis": "NEGATIVE",
                "age": f"{int(subject['age']):03d}Y", "sex": subject["sex"], "Modality": modality,
                "File Location": f"./FDG-PET-CT-Lesions/{sid}/{study_dir.name}/{i}.000000-{series}-{i:05d}",
            })
        demo_rows.append({"subject": sid, "study": study_dir.name, "age": subject["age"], "sex": subject["sex"],
                          "weight": subject.get("weight") or "", "height": subject.get("height") or "",
                          "injected_dose_bq": DOSE_BQ, "uptake_time_s": UPTAKE_S})
    with open(root / "Metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        writer.writerows(meta_rows)
    with open(root / "demographics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["subject", "study", "age", "sex", "weight", "height",
                                                    "injected_dose_bq", "uptake_time_s"])
        writer.writeheader()
        writer.writerows(demo_rows)
    return root


def truncate_gzip(path: Path, keep_fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


DEFAULT_SUBJECTS = [
    {"age": 63, "sex": "M", "weight": 82.0, "height": 180.0},
    {"age": 41, "sex": "F", "weight": 61.0, "height": 164.0, "lps": True},
    {"age": 70, "sex": "F", "weight": None, "height": 158.0},  # missing weight
    {"age": 55, "sex": "M", "weight": 90.0, "height": 185.0},  # SUV.nii.gz truncated below
    {"age": 35, "sex": "M", "weight": 80.0, "height": 1.80},  # height in metres: implausible
]
