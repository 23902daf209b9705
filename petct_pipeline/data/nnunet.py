"""Reader for the nnU-Net raw-data layout that AutoPET challenge datasets ship in.

::

    <root>/imagesTr/<case>_0000.nii.gz   CT on the PET grid (AutoPET's CTres)
    <root>/imagesTr/<case>_0001.nii.gz   PET in SUVbw
    <root>/labelsTr/<case>.nii.gz        lesion mask (optional)
    [<root>/imagesTs/...]                scanned too with ``include_test=True``

Demographics come from a ``demographics.csv`` (default ``<root>/demographics.csv``)
whose row matches the case by a ``case`` column, by ``subject`` equal to the case id,
by ``<subject>_<study>``, or by a unique ``subject`` that prefixes the case id
(``PETCT_0011f3deaf_...``).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from ..errors import InputError
from .demographics_csv import DemographicsTable, normalise_name, parse_row, read_demographics_csv
from .study import ScanResult, StudyRecord, check_nifti, resolve_demographics

__all__ = ["scan_nnunet", "is_nnunet_layout"]

logger = logging.getLogger(__name__)
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii(\.gz)?$")


def is_nnunet_layout(root: str | os.PathLike) -> bool:
    return (Path(root) / "imagesTr").is_dir()


def scan_nnunet(
    root: str | os.PathLike,
    demographics_csv: str | os.PathLike | None = None,
    include_test: bool = False,
    verify: str = "header",
) -> ScanResult:
    """Cases of an nnU-Net dataset folder; channel 0000 = CTres, 0001 = SUV."""
    if verify not in ("header", "full"):
        raise InputError(f"verify must be 'header' or 'full', got {verify!r}")
    root = Path(root)
    if not (root / "imagesTr").is_dir():
        raise NotADirectoryError(f"nnU-Net layout expected: {root / 'imagesTr'} does not exist")
    if demographics_csv is not None:
        table = read_demographics_csv(demographics_csv)
    elif (root / "demographics.csv").is_file():
        table = read_demographics_csv(root / "demographics.csv")
    else:
        logger.warning("no demographics.csv in %s: every case will be skipped for missing demographics", root)
        table = DemographicsTable()
    result = ScanResult(layout="nnunet", root=str(root))
    splits = [("imagesTr", "labelsTr")] + ([("imagesTs", "labelsTs")] if include_test else [])
    for images, labels in splits:
        folder = root / images
        if not folder.is_dir():
            continue
        cases: dict[str, dict[int, Path]] = {}
        for path in sorted(folder.iterdir()):
            match = _CHANNEL.match(path.name)
            if match:
                cases.setdefault(match["case"], {})[int(match["channel"])] = path
        for case, channels in sorted(cases.items()):
            _scan_case(result, root, case, channels, root / labels, table, verify)
    logger.info("%s", result.summary_text().splitlines()[0])
    return result


def _row_for_case(table: DemographicsTable, case: str) -> dict[str, str] | None:
    key = normalise_name(case)
    for column in ("case", "subject"):
        hits = [row for row in table.rows if normalise_name(row.get(column, "")) == key]
        if hits:
            return hits[0]
    hits = [r for r in table.rows if normalise_name(f"{r.get('subject', '')}_{r.get('study', '')}") == key]
    if hits:
        return hits[0]
    hits = [r for r in table.rows if r.get("subject") and key.startswith(normalise_name(r["subject"]) + "_")]
    return hits[0] if len(hits) == 1 else None


def _scan_case(
    result: ScanResult,
    root: Path,
    case: str,
    channels: dict[int, Path],
    labels: Path,
    table: DemographicsTable,
    verify: str,
) -> None:
    if 0 not in channels or 1 not in channels:
        missing = [f"{case}_{c:04d}.nii.gz" for c in (0, 1) if c not in channels]
        result.skip(case, f"images: missing {', '.join(missing)} (0000 = CTres, 0001 = SUV)")
        return
    row = _row_for_case(table, case)
    if row is None:
        result.skip(case, "demographics: no row in demographics.csv matches this case")
        return
    try:
        values: dict[str, Any] = parse_row(row, where=f"demographics row for {case}")
        demographics = resolve_demographics(values)
    except (ValueError, TypeError) as error:
        result.skip(case, f"demographics: {error}")
        return
    for path in (channels[0], channels[1]):
        problem = check_nifti(path, full=verify == "full")
        if problem:
            result.skip(case, f"images: {problem}")
            return
    label = next((p for p in (labels / f"{case}.nii.gz", labels / f"{case}.nii") if p.is_file()), None)
    result.studies.append(
        StudyRecord(
            subject_id=row.get("subject") or case,
            study_id=case,
            directory=root,
            demographics=demographics,
            ctres=channels[0],
            suv=channels[1],
            seg=label,
            injected_dose_bq=values.get("injected_dose_bq"),
            uptake_time_s=values.get("uptake_time_s"),
            layout="nnunet",
        )
    )
