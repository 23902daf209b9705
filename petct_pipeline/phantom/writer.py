"""Write phantom studies in the exact AutoPET (TCIA FDG-PET-CT-Lesions, NIfTI) layout.

```
<out>/Metadata.csv                 AutoPET columns, one row per series (CT, PT, SEG)
<out>/demographics.csv             subject, study, age, sex, weight, height, dose, uptake time
<out>/README.txt                   states that the data are synthetic
<out>/PETCT_<10 hex>/<MM-DD-YYYY>-NA-PET-CT Ganzkoerper  primaer mit KM-<5 digits>/
    CT.nii.gz CTres.nii.gz PET.nii.gz SUV.nii.gz SEG.nii.gz
    organs.nii.gz organs.json acquisition.json truth.json
```

CT.nii.gz is on the same 2 mm grid as CTres.nii.gz (AutoPET's CT has the CT's own finer
grid; CTres is the CT resampled to the PET grid). Every file is written through
:mod:`petct_pipeline.io` and each study is assembled in a hidden temporary folder that
is renamed into place, so an interrupted run never leaves a half-written study.

The layout's pieces (``write_study_volumes``, ``acquisition_record``, ``series_rows``, ``demographics_row``,
``study_identity``, ``write_csv``) are public because ``petct export --format autopet``
(:mod:`petct_pipeline.export.autopet`) writes generated cohorts through them, in the same layout.
"""

from __future__ import annotations

import csv
import hashlib
import io as _io
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..cohort import check_subject_id
from ..data.suv import F18_HALF_LIFE_S
from ..demographics import Demographics
from ..errors import InputError, InputTypeError
from ..io import atomic_path, save_nifti, writable_dir, write_json
from ..organs import LABEL_IDS
from .anatomy import check_spacing
from .subject import PhantomSubject, generate_phantom

__all__ = [
    "METADATA_COLUMNS",
    "DEMOGRAPHICS_COLUMNS",
    "STUDY_DESCRIPTION",
    "SERIES",
    "write_population",
    "write_study",
    "write_study_volumes",
    "acquisition_record",
    "subject_identity",
    "study_identity",
    "age_string",
    "series_rows",
    "demographics_row",
    "write_csv",
    "merge_rows",
]

logger = logging.getLogger(__name__)

METADATA_COLUMNS = (
    "Subject ID",
    "Study UID",
    "Study Description",
    "Study Date",
    "Series Description",
    "diagnosis",
    "age",
    "sex",
    "Modality",
    "File Location",
)
#: ``cohort_id`` is the cohort CSV's ``id`` (empty without one), so phantom twins pair with generated subjects
DEMOGRAPHICS_COLUMNS = ("subject", "study", "age", "sex", "weight", "height", "injected_dose_bq", "uptake_time_s",
                        "cohort_id")
STUDY_DESCRIPTION = "PET-CT Ganzkoerper  primaer mit KM"  # AutoPET's double space
#: (Modality, Series Description, file) of the three series a study lists in Metadata.csv
SERIES = (
    ("CT", "GK p.v.3.0  B31f", "CT.nii.gz"),
    ("PT", "PET corr.", "PET.nii.gz"),
    ("SEG", "Segmentation", "SEG.nii.gz"),
)

README = """SYNTHETIC DATA - NOT FROM PATIENTS

These PET/CT studies were simulated by the petct-diffusion demographic phantom
(petct_pipeline.phantom). They follow the layout of the AutoPET / TCIA
FDG-PET-CT-Lesions NIfTI release so that AutoPET readers work unchanged, but every
volume, date, identifier and UID is synthetic. Anatomy and uptake follow published
reference values (ICRP Publication 89 organ masses, healthy-tissue FDG SUVs); see
docs/phantom.md in the petct-diffusion repository.

Per study: CT.nii.gz and CTres.nii.gz (HU, same grid), PET.nii.gz (Bq/mL at scan time),
SUV.nii.gz (SUVbw = PET * weight_g / (dose_Bq * 2**(-uptake_time_s / 6586.2))),
SEG.nii.gz (lesions, 1 = lesion), organs.nii.gz (TotalSegmentator "total" label ids,
names in organs.json), acquisition.json (dose, uptake time, weight), truth.json.
demographics.csv gives age, sex, weight (kg) and height (cm) of every subject.
"""


def subject_identity(seed: int, index: int, d: Demographics, subject_seed: int) -> dict[str, str]:
    """Deterministic AutoPET-style identifiers for one phantom subject."""
    return study_identity(f"petct-phantom|{seed}|{index}|{d.age:g}|{d.sex}|{d.weight:g}|{d.height:g}|{subject_seed}")


def study_identity(key: str) -> dict[str, str]:
    """AutoPET-style subject folder, study folder, date and Study UID that depend only on ``key``.

    Exports of generated subjects (``petct export --format autopet|dicom``) use it with the subject's id,
    so the same subject always gets the same names."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    rng = np.random.default_rng(int(digest[:16], 16))
    year = int(rng.integers(2002, 2021))
    month = int(rng.integers(1, 13))
    day = int(rng.integers(1, 29))
    number = int(rng.integers(10000, 100000))
    date = f"{month:02d}-{day:02d}-{year:04d}"
    return {
        "subject": f"PETCT_{digest[:10]}",
        "study": f"{date}-NA-{STUDY_DESCRIPTION}-{number:05d}",
        "study_date": date,
        "study_uid": "2.25." + str(int(digest[16:48], 16)),
    }


def age_string(age: float) -> str:
    """AutoPET's (DICOM's) age format: whole years as ``063Y``."""
    return f"{int(age):03d}Y"


def write_study_volumes(
    study_dir: Path,
    affine: np.ndarray,
    ct_hu: np.ndarray,
    pet_bqml: np.ndarray,
    suv: np.ndarray,
    seg: np.ndarray,
    organs: np.ndarray | None = None,
) -> None:
    """The AutoPET image files of one study on one grid: CT and CTres (int16 HU), PET (Bq/mL), SUV, SEG
    (uint8 lesions) and, when given, organs.nii.gz (uint8 TotalSegmentator ids) with organs.json."""
    study_dir.mkdir(parents=True, exist_ok=True)
    a = affine
    ct16 = np.rint(ct_hu).astype(np.int16)
    save_nifti(ct16, a, study_dir / "CT.nii.gz", description="synthetic CT (HU)")
    save_nifti(ct16, a, study_dir / "CTres.nii.gz", description="synthetic CT on PET grid (HU)")
    save_nifti(pet_bqml.astype(np.float32), a, study_dir / "PET.nii.gz", description="synthetic FDG PET (Bq/mL)")
    save_nifti(suv.astype(np.float32), a, study_dir / "SUV.nii.gz", description="synthetic PET SUVbw")
    save_nifti(seg.astype(np.uint8), a, study_dir / "SEG.nii.gz", description="synthetic lesions")
    if organs is not None:
        save_nifti(organs.astype(np.uint8), a, study_dir / "organs.nii.gz", description="TotalSegmentator total ids")
        write_json(dict(LABEL_IDS), study_dir / "organs.json")


def acquisition_record(d: Demographics, injected_dose_bq: float, uptake_time_s: float, decay_factor: float,
                       **extra: object) -> dict:
    """acquisition.json: what SUV.nii.gz was computed from, so it can be recomputed from PET.nii.gz."""
    return {
        "synthetic": True,
        "radiopharmaceutical": "18F-FDG",
        "injected_dose_bq": injected_dose_bq,
        "uptake_time_s": uptake_time_s,
        "decay_half_life_s": F18_HALF_LIFE_S,
        "decay_factor": decay_factor,
        "weight_kg": d.weight,
        "height_m": d.height_m,
        "age": d.age,
        "sex": d.sex,
        "pet_units": "Bq/mL",
        "suv_formula": "SUV = PET * weight_kg * 1000 / (injected_dose_bq * 2**(-uptake_time_s / half_life))",
        **extra,
    }


def write_study(subject: PhantomSubject, study_dir: Path) -> None:
    """Write one study's files into ``study_dir`` (which is created)."""
    write_study_volumes(study_dir, subject.affine, subject.ct_hu, subject.pet_bqml, subject.suv,
                        subject.lesion_mask, subject.organs)
    d = subject.demographics
    record = acquisition_record(
        d,
        subject.injected_dose_bq,
        subject.uptake_time_s,
        subject.acquisition.decay_factor,
        psf_fwhm_mm=subject.truth.get("psf_fwhm_mm"),
        spacing_mm=[subject.spacing] * 3,
        seed=subject.seed,
        diagnosis=subject.diagnosis,
    )
    write_json(record, study_dir / "acquisition.json")
    truth = {k: v for k, v in subject.truth.items() if k != "seconds"}
    write_json({"synthetic": True, **truth}, study_dir / "truth.json")


def series_rows(identity: dict[str, str], diagnosis: str | None, d: Demographics) -> list[dict]:
    """The study's Metadata.csv rows, one per series (CT, PT, SEG)."""
    return [
        {
            "Subject ID": identity["subject"],
            "Study UID": identity["study_uid"],
            "Study Description": STUDY_DESCRIPTION,
            "Study Date": identity["study_date"],
            "Series Description": series,
            "diagnosis": diagnosis,
            "age": age_string(d.age),
            "sex": d.sex,
            "Modality": modality,
            "File Location": f"./{identity['subject']}/{identity['study']}/{filename}",
        }
        for modality, series, filename in SERIES
    ]


def demographics_row(identity: dict[str, str], d: Demographics, injected_dose_bq: float, uptake_time_s: float,
                     cohort_id: str | None = None) -> dict:
    """The study's demographics.csv row (weight and height, which AutoPET keeps only in DICOM)."""
    return {
        "subject": identity["subject"],
        "study": identity["study"],
        "age": f"{d.age:g}",
        "sex": d.sex,
        "weight": f"{d.weight:g}",
        "height": f"{d.height:g}",
        "injected_dose_bq": f"{injected_dose_bq:.0f}",
        "uptake_time_s": f"{uptake_time_s:.0f}",
        "cohort_id": cohort_id or "",
    }


def _job(args: tuple) -> tuple[list[dict], dict, float]:
    out, index, seed, d, subject_seed, spacing, lesions, fov, diagnosis_rng_seed, cohort_id = args
    identity = subject_identity(seed, index, d, subject_seed)
    diagnosis = None
    if lesions:
        from .lesions import sample_diagnosis

        diagnosis = sample_diagnosis(np.random.default_rng([diagnosis_rng_seed, 7]))
    subject = generate_phantom(
        d,
        subject_seed,
        spacing=spacing,
        lesions=bool(lesions and diagnosis != "NEGATIVE"),
        fov=fov,
        diagnosis=diagnosis,
    )
    final = out / identity["subject"]
    tmp = Path(tempfile.mkdtemp(prefix=f".{identity['subject']}.", suffix=".tmp", dir=out))
    try:
        write_study(subject, tmp / identity["study"])
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{identity['subject']}.", suffix=".old", dir=out))
            os.replace(final, trash / "old")
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    rows = series_rows(identity, subject.diagnosis, subject.demographics)
    demo = demographics_row(identity, subject.demographics, subject.injected_dose_bq, subject.uptake_time_s,
                            cohort_id)
    return rows, demo, float(subject.truth.get("seconds", 0.0))


def write_csv(path: Path, columns: Sequence[str], rows: list[dict]) -> None:
    """Write a CSV atomically (temporary name, then renamed)."""
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def merge_rows(path: Path, key: str, new_rows: list[dict]) -> list[dict]:
    """``new_rows`` after the rows of ``path`` whose ``key`` column names another subject (earlier runs' rows)."""
    if not path.exists():
        return new_rows
    new_keys = {row[key] for row in new_rows}
    with path.open(newline="") as handle:
        old = [row for row in csv.DictReader(handle) if row.get(key) not in new_keys]
    return old + new_rows


def write_population(
    subjects: Sequence[Demographics | tuple[Demographics, int | None]],
    out_dir: str | os.PathLike,
    seed: int = 0,
    workers: int = 1,
    lesions: bool = False,
    spacing: float = 2.0,
    fov: str = "whole_body",
    ids: Sequence[str] | None = None,
) -> list[Path]:
    """Simulate and write one study per entry of ``subjects`` in the AutoPET layout.

    ``ids`` (one per subject, e.g. a cohort CSV's ``id`` column) go into demographics.csv's
    ``cohort_id`` column, so twins pair with generated subjects.

    ``subjects`` holds Demographics (or (Demographics, subject_seed) pairs, e.g. from a
    cohort CSV). Per-subject seeds default to a deterministic function of ``seed`` and the
    index. With ``lesions`` each study is positive with AutoPET's probability (501/1014)
    and gets a cancer diagnosis with AutoPET's proportions. Returns the study folders.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers={workers!r} is out of range: must be an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    entries: list[tuple[Demographics, int]] = []
    for index, item in enumerate(subjects):
        d, subject_seed = item if isinstance(item, tuple) else (item, None)
        if not isinstance(d, Demographics):
            raise InputTypeError(f"subjects[{index}] must be Demographics, got {type(d).__name__}")
        if subject_seed is None:
            subject_seed = int(np.random.SeedSequence([int(seed), index]).generate_state(1)[0])
        entries.append((d, int(subject_seed)))
    if not entries:
        raise InputError("no subjects to write: the population is empty")
    if ids is not None and len(ids) != len(entries):
        raise InputError(f"ids: got {len(ids)} ids for {len(entries)} subjects")
    cohort_ids = [None] * len(entries) if ids is None else [check_subject_id(str(i), f"ids[{n}]")
                                                            for n, i in enumerate(ids)]
    spacing = check_spacing(spacing)
    out = writable_dir(out_dir, what="--out")
    jobs = [
        (
            out,
            i,
            int(seed),
            d,
            s,
            spacing,
            lesions,
            fov,
            int(np.random.SeedSequence([int(seed), i, 1]).generate_state(1)[0]),
            cohort_ids[i],
        )
        for i, (d, s) in enumerate(entries)
    ]
    results = []
    if workers == 1 or len(jobs) == 1:
        results = [_job(job) for job in jobs]
    else:
        with get_context("fork" if hasattr(os, "fork") else "spawn").Pool(min(workers, len(jobs))) as pool:
            results = list(pool.imap(_job, jobs))
    meta = [row for rows, _, _ in results for row in rows]
    demo = [d for _, d, _ in results]
    write_csv(out / "Metadata.csv", METADATA_COLUMNS, merge_rows(out / "Metadata.csv", "Subject ID", meta))
    write_csv(out / "demographics.csv", DEMOGRAPHICS_COLUMNS, merge_rows(out / "demographics.csv", "subject", demo))
    with atomic_path(out / "README.txt") as tmp:
        tmp.write_text(README)
    logger.info(
        "wrote %d synthetic studies to %s (%.1f s/subject simulation)",
        len(results),
        out,
        float(np.mean([r[2] for r in results])),
    )
    return [out / row["subject"] / row["study"] for row in demo]
