"""Read one DICOM image series (a folder of slices) into a volume with its RAS affine.

The CT-to-PET path (``petct generate --ct FOLDER``) accepts a DICOM series as well as a NIfTI
file. Slices are sorted along the normal of ImageOrientationPatient and the voxel -> LPS
affine is built from ImagePositionPatient, ImageOrientationPatient and PixelSpacing as the
standard defines them (PS3.3 C.7.6.2.1.1), then converted to RAS; stored values go through
each slice's RescaleSlope/RescaleIntercept, so the volume is in the series' real units (HU for
CT). Files that are not DICOM (a README, a LICENSE) are skipped; a folder with several series
is refused, since which one was meant cannot be guessed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .dicom_demographics import header_values, require_pydicom

__all__ = ["DicomSeries", "read_dicom_series"]


@dataclass(frozen=True)
class DicomSeries:
    """A series as a volume: ``values`` (i = column, j = row, k = slice) in real units, ``affine`` voxel -> RAS mm.

    ``modality`` is the header's Modality ("CT", "PT", "MR", ...); ``header`` the values
    ``dicom_demographics.header_values`` reads (PatientWeight, PatientSize, ...) of the first slice.
    """

    values: np.ndarray
    affine: np.ndarray
    modality: str
    header: dict
    slices: int


def read_dicom_series(folder: str | os.PathLike) -> DicomSeries:
    """The one image series in ``folder``; ``InputError`` naming the folder and the problem otherwise."""
    pydicom = require_pydicom()
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    datasets = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            dataset = pydicom.dcmread(path)
        except (InvalidDicomError, OSError, EOFError):
            continue  # not DICOM (a README, a LICENSE): skipped
        if "PixelData" in dataset and "ImagePositionPatient" in dataset:
            datasets.append(dataset)
    if not datasets:
        raise InputError(f"--ct {folder}: no DICOM image slices found in the folder")
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds in datasets}
    if len(series) > 1:
        raise InputError(f"--ct {folder}: the folder holds {len(series)} DICOM series; give a folder with one")
    if len(datasets) < 2:
        raise InputError(f"--ct {folder}: one DICOM slice is a 2D image; a CT volume needs at least 2 slices")
    orientation = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    row_cosines, column_cosines = orientation[:3], orientation[3:]
    normal = np.cross(row_cosines, column_cosines)
    datasets.sort(key=lambda ds: float(np.asarray(ds.ImagePositionPatient, dtype=float) @ normal))
    try:
        frames = np.stack([ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1) or 1)
                           + float(getattr(ds, "RescaleIntercept", 0) or 0) for ds in datasets])
    except (ValueError, RuntimeError) as error:  # slices of different size, or pixel data pydicom cannot decode
        raise InputError(f"--ct {folder}: cannot read the pixel data ({error}); JPEG-2000 series need pillow>=10 "
                         "or pylibjpeg-openjpeg") from None
    positions = np.asarray([np.asarray(ds.ImagePositionPatient, dtype=float) for ds in datasets])
    steps = np.diff(positions @ normal)
    if np.any(steps <= 1e-3):
        raise InputError(f"--ct {folder}: two slices share a position; the folder mixes volumes or repeats slices")
    if np.ptp(steps) > 0.05 * float(np.median(steps)) + 0.01:
        raise InputError(f"--ct {folder}: the slices are unevenly spaced ({steps.min():.2f}-{steps.max():.2f} mm); "
                         "resample the series to even spacing first")
    row_spacing, column_spacing = (float(v) for v in datasets[0].PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = row_cosines * column_spacing  # voxel index i runs along a row (columns)
    lps[:3, 1] = column_cosines * row_spacing  # j runs down a column (rows)
    lps[:3, 2] = (positions[-1] - positions[0]) / (len(datasets) - 1)
    lps[:3, 3] = positions[0]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    values = np.transpose(frames, (2, 1, 0))  # (slice, row, column) -> (i, j, k)
    return DicomSeries(values=np.ascontiguousarray(values), affine=ras,
                       modality=str(getattr(datasets[0], "Modality", "") or ""), header=header_values(datasets[0]),
                       slices=len(datasets))
