"""Organ label ids and names of the TotalSegmentator v2 "total" task (117 classes).

The ids are those of ``class_map["total"]`` in TotalSegmentator's
``totalsegmentator/map_to_binary.py`` (v2), so a label map written by the phantom and a
segmentation produced by TotalSegmentator on a generated CT can be compared id for id.
Evaluation organs that TotalSegmentator splits into parts (the lungs into five lobes,
for example) are unions listed in :data:`ORGAN_GROUPS`.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError, InputTypeError

__all__ = [
    "LABELS",
    "LABEL_IDS",
    "ORGAN_GROUPS",
    "EVALUATION_ORGANS",
    "organ_ids",
    "organ_mask",
]

_NAMES_1_TO_24 = (
    "spleen",
    "kidney_right",
    "kidney_left",
    "gallbladder",
    "liver",
    "stomach",
    "pancreas",
    "adrenal_gland_right",
    "adrenal_gland_left",
    "lung_upper_lobe_left",
    "lung_lower_lobe_left",
    "lung_upper_lobe_right",
    "lung_middle_lobe_right",
    "lung_lower_lobe_right",
    "esophagus",
    "trachea",
    "thyroid_gland",
    "small_bowel",
    "duodenum",
    "colon",
    "urinary_bladder",
    "prostate",
    "kidney_cyst_left",
    "kidney_cyst_right",
)
# 25 sacrum, then the vertebrae from S1 (26) up to C1 (50)
_VERTEBRAE = (
    ("S1", "L5", "L4", "L3", "L2", "L1")
    + tuple(f"T{i}" for i in range(12, 0, -1))
    + tuple(f"C{i}" for i in range(7, 0, -1))
)
_NAMES_51_TO_91 = (
    "heart",
    "aorta",
    "pulmonary_vein",
    "brachiocephalic_trunk",
    "subclavian_artery_right",
    "subclavian_artery_left",
    "common_carotid_artery_right",
    "common_carotid_artery_left",
    "brachiocephalic_vein_left",
    "brachiocephalic_vein_right",
    "atrial_appendage_left",
    "superior_vena_cava",
    "inferior_vena_cava",
    "portal_vein_and_splenic_vein",
    "iliac_artery_left",
    "iliac_artery_right",
    "iliac_vena_left",
    "iliac_vena_right",
    "humerus_left",
    "humerus_right",
    "scapula_left",
    "scapula_right",
    "clavicula_left",
    "clavicula_right",
    "femur_left",
    "femur_right",
    "hip_left",
    "hip_right",
    "spinal_cord",
    "gluteus_maximus_left",
    "gluteus_maximus_right",
    "gluteus_medius_left",
    "gluteus_medius_right",
    "gluteus_minimus_left",
    "gluteus_minimus_right",
    "autochthon_left",
    "autochthon_right",
    "iliopsoas_left",
    "iliopsoas_right",
    "brain",
    "skull",
)
_NAMES = (
    _NAMES_1_TO_24
    + ("sacrum",)
    + tuple(f"vertebrae_{v}" for v in _VERTEBRAE)
    + _NAMES_51_TO_91
    + tuple(f"rib_left_{i}" for i in range(1, 13))  # 92-103
    + tuple(f"rib_right_{i}" for i in range(1, 13))  # 104-115
    + ("sternum", "costal_cartilages")  # 116, 117
)

#: label id -> TotalSegmentator v2 "total" class name (0 is background and not listed)
LABELS: dict[int, str] = {index + 1: name for index, name in enumerate(_NAMES)}
#: class name -> label id
LABEL_IDS: dict[str, int] = {name: index for index, name in LABELS.items()}

assert len(LABELS) == 117 and LABEL_IDS["urinary_bladder"] == 21 and LABEL_IDS["vertebrae_C1"] == 50
assert LABEL_IDS["heart"] == 51 and LABEL_IDS["brain"] == 90 and LABEL_IDS["rib_right_12"] == 115

#: organs that are unions of several TotalSegmentator classes
ORGAN_GROUPS: dict[str, tuple[str, ...]] = {
    "lungs": (
        "lung_upper_lobe_left",
        "lung_lower_lobe_left",
        "lung_upper_lobe_right",
        "lung_middle_lobe_right",
        "lung_lower_lobe_right",
    ),
    "lung_left": ("lung_upper_lobe_left", "lung_lower_lobe_left"),
    "lung_right": ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right"),
    "kidneys": ("kidney_left", "kidney_right"),
    "adrenal_glands": ("adrenal_gland_left", "adrenal_gland_right"),
    "vertebrae": tuple(f"vertebrae_{v}" for v in _VERTEBRAE),
    "ribs": tuple(f"rib_left_{i}" for i in range(1, 13)) + tuple(f"rib_right_{i}" for i in range(1, 13)),
    "femurs": ("femur_left", "femur_right"),
    "hips": ("hip_left", "hip_right"),
    "humeri": ("humerus_left", "humerus_right"),
    "gluteus": tuple(f"gluteus_{m}_{s}" for m in ("maximus", "medius", "minimus") for s in ("left", "right")),
    "iliopsoas": ("iliopsoas_left", "iliopsoas_right"),
    "autochthon": ("autochthon_left", "autochthon_right"),
}

#: the organs the evaluation reports (volume, SUVmean, SUVmax), in report order
EVALUATION_ORGANS: tuple[str, ...] = (
    "liver",
    "spleen",
    "kidney_left",
    "kidney_right",
    "heart",
    "lungs",
    "brain",
    "urinary_bladder",
    "aorta",
)


def organ_ids(organ: str) -> tuple[int, ...]:
    """Label ids that make up ``organ`` (a TotalSegmentator class name or a group name)."""
    if not isinstance(organ, str):
        raise InputTypeError(f"organ must be a name (str), got {organ!r}")
    if organ in ORGAN_GROUPS:
        return tuple(LABEL_IDS[name] for name in ORGAN_GROUPS[organ])
    if organ in LABEL_IDS:
        return (LABEL_IDS[organ],)
    raise InputError(
        f"unknown organ {organ!r}: expected a TotalSegmentator 'total' class name (e.g. 'liver') "
        f"or a group ({', '.join(sorted(ORGAN_GROUPS))})"
    )


def organ_mask(labels: np.ndarray, organ: str) -> np.ndarray:
    """Boolean mask of ``organ`` in an integer label map with TotalSegmentator "total" ids."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise InputTypeError(f"labels must be an integer label map, got dtype {labels.dtype}")
        labels = labels.astype(np.int32)
    ids = organ_ids(organ)
    if len(ids) == 1:
        return labels == ids[0]
    return np.isin(labels, ids)
