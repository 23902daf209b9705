"""A user's CT for the CT-to-PET path: read (NIfTI file or DICOM series folder), checked, kept unchanged.

Why a module of its own: the PET must come back on exactly the input's grid and the CT must be
written back with its values unchanged, so the file's own voxel order, affine, dtype and header
are kept beside a canonical RAS+ copy in HU that the model side works on. Every check that can
refuse the input (missing or empty file, not an image, a 2D image, a spacing or value range that
is not a CT's) runs here, before anything is loaded or written, and raises one ``InputError``
line naming ``--ct``.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputError
from ..geometry import spacing_from_affine
from ..io import atomic_path, save_nifti

__all__ = ["InputCT", "read_ct", "check_ct_values", "SPACING_RANGE_MM", "AIR_LEVEL_HU", "HU_OFFSET"]

#: voxel sizes accepted (mm): thin-slice diagnostic CTs to coarse PET-grid CTs, with margin
SPACING_RANGE_MM = (0.3, 10.0)
#: a CT holds air (outside the body, in the lungs or bowel): some voxels must lie below this
AIR_LEVEL_HU = -850.0
#: the unsigned storage convention: stored = HU + 1024 with no rescale intercept recorded
HU_OFFSET = 1024.0
_MAX_HU = 5000.0  # metal and contrast stay below; a PET in Bq/mL or a label map scaled up does not
_SOFT_TISSUE_HU = (-200.0, 250.0)
_MIN_SOFT_TISSUE_FRACTION = 0.02  # of all voxels: a body is in the field of view
_MIN_EXTENT_MM = 32.0  # two stage-1 voxels along every axis


@dataclass
class InputCT:
    """The input CT: ``hu`` and ``affine`` canonical RAS+ (float32 HU), plus what writes it back unchanged.

    ``file_shape``/``file_affine`` are the input's own grid (the PET is written on it);
    ``hu_offset`` is what was added to the stored values to get HU (0, or -1024 for the unsigned
    convention); ``image`` the NIfTI to write back byte-for-value (None for a DICOM series, whose
    ``file_values`` are written instead).
    """

    hu: np.ndarray
    affine: np.ndarray
    file_shape: tuple[int, int, int]
    file_affine: np.ndarray
    source: str
    path: Path
    dtype: str
    hu_offset: float
    image: nib.Nifti1Image | None = None
    file_values: np.ndarray | None = None
    header: dict | None = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        return spacing_from_affine(self.affine)

    def describe(self) -> dict:
        """The input's grid and conventions, for metadata.json."""
        return {
            "path": str(self.path),
            "format": self.source,
            "shape": list(self.file_shape),
            "spacing_mm": [round(s, 4) for s in spacing_from_affine(self.file_affine)],
            "orientation": "".join(nib.aff2axcodes(self.file_affine)),
            "affine": np.round(self.file_affine, 6).tolist(),
            "dtype": self.dtype,
            "hu_offset_applied": self.hu_offset,
        }

    def to_file_grid(self, volume: np.ndarray) -> np.ndarray:
        """A canonical-grid array reoriented exactly (flips and axis swaps only) onto the input's own grid."""
        transform = nib.orientations.ornt_transform(nib.io_orientation(self.affine),
                                                    nib.io_orientation(self.file_affine))
        return np.ascontiguousarray(nib.orientations.apply_orientation(volume, transform))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the CT as given: the NIfTI's own data, dtype and header; a DICOM series' values (HU) on its grid."""
        path = Path(path)
        if self.image is not None:
            image = nib.Nifti1Image(self.image.dataobj, self.image.affine, self.image.header)
            with atomic_path(path) as tmp:
                nib.save(image, tmp)
            return path
        values = self.file_values
        integral = bool(np.all(np.mod(values, 1) == 0)) and values.min() >= -32768 and values.max() <= 32767
        return save_nifti(values, self.file_affine, path, dtype=np.int16 if integral else np.float32,
                          description="input CT (HU), from a DICOM series")


def read_ct(path: str | os.PathLike) -> InputCT:
    """The CT at ``path`` (a NIfTI file, or a folder holding one DICOM series), checked to be a 3D CT."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"--ct {path}: no such file or folder")
    if path.is_dir():
        from ..data.dicom_series import read_dicom_series

        series = read_dicom_series(path)
        if series.modality and series.modality != "CT":
            raise InputError(f"--ct {path}: the DICOM series is modality {series.modality}, not CT")
        values, affine, source, dtype, image, header = (series.values, series.affine, "dicom", "float32", None,
                                                        series.header)
    else:
        if path.stat().st_size == 0:
            raise InputError(f"--ct {path}: the file is empty")
        try:
            image = nib.load(str(path))
            values = np.asarray(image.dataobj)
        except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error) as error:
            raise InputError(f"--ct {path}: not a readable NIfTI image or DICOM folder ({error})") from None
        if values.ndim == 4 and values.shape[3] == 1:
            values = values[..., 0]
        affine, source, dtype, header = image.affine, "nifti", str(values.dtype), None
    return _checked(values, affine, path, source, dtype, image if source == "nifti" else None, header)


def _checked(values: np.ndarray, affine: np.ndarray, path: Path, source: str, dtype: str,
             image: nib.Nifti1Image | None, header: dict | None) -> InputCT:
    if values.ndim != 3 or min(values.shape) < 2:
        raise InputError(f"--ct {path}: a 2D image (shape {tuple(values.shape)}); a CT volume needs 3 axes of at "
                         "least 2 voxels")
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
        raise InputError(f"--ct {path}: voxel type {values.dtype} is not a real number type")
    spacing = spacing_from_affine(affine)
    low, high = SPACING_RANGE_MM
    if not all(low <= s <= high for s in spacing):
        raise InputError(f"--ct {path}: voxel spacing {tuple(round(s, 3) for s in spacing)} mm is outside the "
                         f"allowed [{low:g}, {high:g}] mm per axis")
    extent = [n * s for n, s in zip(values.shape, spacing)]
    if min(extent) < _MIN_EXTENT_MM:
        raise InputError(f"--ct {path}: field of view {tuple(round(e) for e in extent)} mm; every axis must span at "
                         f"least {_MIN_EXTENT_MM:g} mm")
    hu, offset = check_ct_values(np.asarray(values, dtype=np.float32), f"--ct {path}",
                                 integral=np.issubdtype(values.dtype, np.integer))
    file_affine = np.asarray(affine, dtype=np.float64)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(hu, file_affine))
    return InputCT(hu=np.asarray(canonical.dataobj, dtype=np.float32), affine=canonical.affine,
                   file_shape=tuple(int(n) for n in values.shape), file_affine=file_affine, source=source, path=path,
                   dtype=dtype, hu_offset=offset, image=image,
                   file_values=None if image is not None else np.asarray(values), header=header)


def check_ct_values(values: np.ndarray, what: str, integral: bool = True) -> tuple[np.ndarray, float]:
    """(HU volume, offset added) if ``values`` look like a CT, else ``InputError`` naming ``what`` and the range.

    A CT has air (below ``AIR_LEVEL_HU``), soft tissue and nothing far above dense bone. Integer
    volumes stored with the unsigned convention (air near 0, soft tissue near 1024, no intercept)
    are shifted by -1024 when that makes them a CT. NaN voxels (outside a reconstruction) become air.
    """
    finite = np.isfinite(values)
    if not finite.any():
        raise InputError(f"{what}: no finite voxel value")
    values = np.where(finite, values, -1000.0).astype(np.float32, copy=False)
    sample = values.ravel()[:: max(1, values.size // 2_000_000)]
    low, high = float(sample.min()), float(sample.max())
    if _looks_like_ct(sample):
        return values, 0.0
    if integral and low >= 0 and _looks_like_ct(sample - HU_OFFSET):
        return values - HU_OFFSET, -HU_OFFSET
    found = f"values in [{low:.4g}, {high:.4g}]"
    if np.ptp(sample) == 0:
        raise InputError(f"{what}: not a CT: every voxel is {low:.4g} (an empty image)")
    if low > AIR_LEVEL_HU:
        raise InputError(f"{what}: not a CT: no air (no voxel below {AIR_LEVEL_HU:g} HU), {found}: a PET, a label "
                         "map or an MR? Give a CT in HU (or stored as HU + 1024)")
    raise InputError(f"{what}: not a CT: {found} is not a CT's HU range (air near -1000, soft tissue 0-100, "
                     f"bone up to ~3000, nothing above {_MAX_HU:g})")


def _looks_like_ct(sample: np.ndarray) -> bool:
    p_low, p_high = np.percentile(sample, [0.5, 99.9])
    soft = np.mean((sample >= _SOFT_TISSUE_HU[0]) & (sample <= _SOFT_TISSUE_HU[1]))
    return bool(p_low <= AIR_LEVEL_HU and p_high <= _MAX_HU and sample.min() >= -3000 and
                soft >= _MIN_SOFT_TISSUE_FRACTION)
