"""Read a DICOM image series back into a canonical RAS+ volume, independently of the exporter's own code.

The slices are sorted along the normal of ImageOrientationPatient, the voxel -> LPS affine is built from
ImagePositionPatient, ImageOrientationPatient and PixelSpacing as the DICOM standard defines them (C.7.6.2.1.1),
converted to RAS and reoriented with nibabel; pixel values go through each slice's RescaleSlope/Intercept.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom

__all__ = ["read_series", "suv_from_pet_headers"]


def read_series(folder: Path) -> tuple[np.ndarray, np.ndarray, list[pydicom.Dataset]]:
    """(values (x, y, z) RAS+ float64, RAS affine, datasets in slice order) of the series in ``folder``."""
    datasets = [pydicom.dcmread(path) for path in sorted(Path(folder).glob("*.dcm"))]
    row_cosines = np.array(datasets[0].ImageOrientationPatient[:3], float)
    column_cosines = np.array(datasets[0].ImageOrientationPatient[3:], float)
    normal = np.cross(row_cosines, column_cosines)
    datasets.sort(key=lambda ds: float(np.array(ds.ImagePositionPatient, float) @ normal))
    frames = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in datasets])
    row_spacing, column_spacing = (float(v) for v in datasets[0].PixelSpacing)
    first = np.array(datasets[0].ImagePositionPatient, float)
    step = (np.array(datasets[1].ImagePositionPatient, float) - first) if len(datasets) > 1 else normal
    lps = np.eye(4)
    lps[:3, 0] = row_cosines * column_spacing  # voxel index i = column
    lps[:3, 1] = column_cosines * row_spacing  # j = row
    lps[:3, 2] = step
    lps[:3, 3] = first
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    image = nib.as_closest_canonical(nib.Nifti1Image(np.transpose(frames, (2, 1, 0)), ras))
    return np.asarray(image.dataobj, dtype=np.float64), image.affine, datasets


def _datetime(date: str, time: str):
    from datetime import datetime

    text = (date + time).split(".")[0]
    moment = datetime.strptime(text, "%Y%m%d%H%M%S")
    fraction = (date + time).split(".")[1] if "." in time else ""
    return moment.replace(microsecond=int(fraction.ljust(6, "0")[:6]) if fraction else 0)


def suv_from_pet_headers(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """The standard SUVbw computation from a PET header (Units BQML, DecayCorrection START): activity times
    weight in g over the dose decayed from RadiopharmaceuticalStartDateTime to the series start."""
    assert ds.Units == "BQML" and ds.DecayCorrection == "START"
    assert {"ATTN", "DECY"} <= set(ds.CorrectedImage)
    item = ds.RadiopharmaceuticalInformationSequence[0]
    start_text = str(item.RadiopharmaceuticalStartDateTime)
    injection = _datetime(start_text[:8], start_text[8:])
    series = _datetime(str(ds.SeriesDate), str(ds.SeriesTime))
    decay = 2.0 ** (-(series - injection).total_seconds() / float(item.RadionuclideHalfLife))
    return values * float(ds.PatientWeight) * 1000.0 / (float(item.RadionuclideTotalDose) * decay)
