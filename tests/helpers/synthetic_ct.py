"""A small synthetic chest CT as a NIfTI image, in any orientation, spacing and dtype (CT-to-PET and Space tests)."""

from __future__ import annotations

import nibabel as nib
import numpy as np

__all__ = ["synthetic_ct"]


def synthetic_ct(extent_mm=(360.0, 280.0, 300.0), spacing=(4.0, 4.0, 4.0), orientation="RAS", dtype=np.int16,
                 top_mm=-200.0, hu_offset=0.0) -> nib.Nifti1Image:
    """A chest-like CT: an elliptic body of soft tissue (40 HU) with two lungs (-850 HU) in air (-1000 HU).

    ``top_mm`` is the scanner z of the top slice's upper edge; the axes follow ``orientation``.
    """
    shape = tuple(int(round(e / s)) for e, s in zip(extent_mm, spacing))
    x = (np.arange(shape[0]) - (shape[0] - 1) / 2) * spacing[0]
    y = (np.arange(shape[1]) - (shape[1] - 1) / 2) * spacing[1]
    z = np.arange(shape[2]) * spacing[2]  # from the bottom slice up, RAS
    xx, yy, zz = np.meshgrid(x, y, z, indexing="ij")
    hu = np.full(shape, -1000.0)
    hu[(xx / 160) ** 2 + (yy / 110) ** 2 <= 1] = 40.0
    for side in (-1, 1):
        lung = ((xx - side * 75) / 55) ** 2 + (yy / 70) ** 2 + ((zz - 0.6 * z[-1]) / 110) ** 2 <= 1
        hu[lung] = -850.0
    hu[(xx / 15) ** 2 + ((yy + 80) / 15) ** 2 <= 1] = 700.0  # a spine
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [x[0], y[0], top_mm - spacing[2] / 2 - z[-1]]
    image = nib.Nifti1Image((hu - hu_offset).astype(dtype), affine)
    if orientation != "RAS":
        image = image.as_reoriented(nib.orientations.ornt_transform(
            nib.io_orientation(affine), nib.orientations.axcodes2ornt(tuple(orientation))))
    return image
