"""Figures for docs/phantom.md: organ volume / SUV table vs references, timing, montage.

``python -m petct_pipeline.phantom.report --out docs`` prints the Markdown tables and
writes ``docs/phantom_montage.png`` (coronal CT, coronal PET MIP, axial slices).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..demographics import Demographics
from ..organs import EVALUATION_ORGANS, organ_mask
from .organ_sizes import REFERENCE_ADULT, reference_volume_ml
from .subject import PhantomSubject, generate_phantom
from .uptake import LITERATURE_SUV_RANGES

__all__ = ["montage", "volume_table", "suv_table", "time_subjects", "MONTAGE_SUBJECTS"]

MONTAGE_SUBJECTS = (
    ("M 35 y, 73 kg, 176 cm (ICRP ref.)", Demographics(age=35, sex="M", weight=73, height=176)),
    ("F 35 y, 60 kg, 163 cm (ICRP ref.)", Demographics(age=35, sex="F", weight=60, height=163)),
    ("M 74 y, 112 kg, 181 cm", Demographics(age=74, sex="M", weight=112, height=181)),
    ("F 58 y, 95 kg, 158 cm", Demographics(age=58, sex="F", weight=95, height=158)),
)
_ICRP = {"liver": "liver", "spleen": "spleen", "kidneys": "kidneys", "heart": "heart", "lungs": "lungs",
         "brain": "brain"}


def volume_table(n_seeds: int = 20, spacing: float = 4.0) -> str:
    lines = ["| organ | sex | ICRP-89 reference (mL) | phantom mean +/- SD (mL) | deviation |",
             "|---|---|---|---|---|"]
    for sex in ("M", "F"):
        d = REFERENCE_ADULT[sex]
        values = {k: [] for k in _ICRP}
        for seed in range(n_seeds):
            s = generate_phantom(d, seed, spacing=spacing)
            for key, organ in _ICRP.items():
                values[key].append(organ_mask(s.organs, organ).sum() * spacing**3 / 1000.0)
        for key in _ICRP:
            ref = reference_volume_ml(key, sex)
            mean, sd = float(np.mean(values[key])), float(np.std(values[key]))
            lines.append(f"| {key} | {sex} | {ref:.0f} | {mean:.0f} +/- {sd:.0f} | {100 * (mean / ref - 1):+.1f} % |")
    return "\n".join(lines)


def suv_table(n: int = 40, seed: int = 0, spacing: float = 4.0) -> str:
    from .population import sample_population

    pop = sample_population(n, seed)
    rows: dict[str, dict[str, list[float]]] = {o: {"M": [], "F": []} for o in EVALUATION_ORGANS}
    vols: dict[str, dict[str, list[float]]] = {o: {"M": [], "F": []} for o in EVALUATION_ORGANS}
    for i, d in enumerate(pop):
        s = generate_phantom(d, 1000 + i, spacing=spacing)
        for organ in EVALUATION_ORGANS:
            m = organ_mask(s.organs, organ)
            rows[organ][d.sex].append(float(s.suv[m].mean()))
            vols[organ][d.sex].append(float(m.sum() * spacing**3 / 1000.0))
    lines = ["| organ | volume M (mL) | volume F (mL) | SUVmean M | SUVmean F | literature SUVmean range |",
             "|---|---|---|---|---|---|"]
    for organ in EVALUATION_ORGANS:
        lo, hi = LITERATURE_SUV_RANGES[organ]
        lines.append(
            f"| {organ} | {np.mean(vols[organ]['M']):.0f} | {np.mean(vols[organ]['F']):.0f} | "
            f"{np.mean(rows[organ]['M']):.2f} +/- {np.std(rows[organ]['M']):.2f} | "
            f"{np.mean(rows[organ]['F']):.2f} +/- {np.std(rows[organ]['F']):.2f} | {lo}-{hi} |")
    n_m, n_f = len(rows["liver"]["M"]), len(rows["liver"]["F"])
    return "\n".join(lines) + f"\n\n(N = {n_m} men, {n_f} women sampled like AutoPET, seed {seed}, {spacing:g} mm)"


def time_subjects(n: int = 3, spacing: float = 2.0) -> list[float]:
    seconds = []
    for i, (_, d) in enumerate(MONTAGE_SUBJECTS[:n]):
        start = time.perf_counter()
        generate_phantom(d, i, spacing=spacing)
        seconds.append(time.perf_counter() - start)
    return seconds


def montage(path: Path, spacing: float = 2.0) -> list[PhantomSubject]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subjects = [generate_phantom(d, 3 + i, spacing=spacing) for i, (_, d) in enumerate(MONTAGE_SUBJECTS)]
    nz_max = max(s.ct_hu.shape[2] for s in subjects)
    fig, axes = plt.subplots(len(subjects), 5, figsize=(15, 4.2 * len(subjects)),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 1]})
    for row, ((title, d), s) in enumerate(zip(MONTAGE_SUBJECTS, subjects)):
        nz = s.ct_hu.shape[2]
        y_mid = s.ct_hu.shape[1] // 2 - int(10 / spacing)
        cor_ct = s.ct_hu[::-1, y_mid, :].T[::-1]  # radiological: patient right on image left
        mip = s.suv[::-1].max(axis=1).T[::-1]
        pad = nz_max - nz
        cor_ct = np.pad(cor_ct, ((0, pad), (0, 0)), constant_values=-1000)
        mip = np.pad(mip, ((0, pad), (0, 0)))
        ax = axes[row]
        ax[0].imshow(cor_ct, cmap="gray", vmin=-400, vmax=600, aspect="equal")
        ax[0].set_title(f"{title}\ncoronal CT (W 1000 / L 100)", fontsize=9)
        ax[1].imshow(mip, cmap="gray_r", vmin=0, vmax=8, aspect="equal")
        ax[1].set_title("coronal PET MIP (SUV 0-8)", fontsize=9)
        h = d.height * 10
        for col, (t, label) in enumerate(((0.27, "axial heart"), (0.35, "axial liver/kidneys")), start=2):
            k = int(round((nz - 1) - t * h / spacing))
            ax[col].imshow(s.ct_hu[::-1, :, k].T[::-1], cmap="gray", vmin=-400, vmax=600)
            ax[col].imshow(np.ma.masked_less(s.suv[::-1, :, k].T[::-1], 1.2), cmap="hot", vmin=0, vmax=6, alpha=0.45)
            ax[col].set_title(f"{label} CT + PET (z = {-t * h:.0f} mm)", fontsize=9)
        k = int(round((nz - 1) - 0.06 * h / spacing))
        ax[4].imshow(s.suv[::-1, :, k].T[::-1], cmap="gray_r", vmin=0, vmax=12)
        ax[4].set_title(f"axial brain PET (SUV 0-12), age {d.age:g}", fontsize=9)
        for a in ax:
            a.set_xticks([])
            a.set_yticks([])
    fig.suptitle("Synthetic demographic phantoms (petct_pipeline.phantom) - SYNTHETIC DATA; image left = patient "
                 "right (radiological)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return subjects


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs", help="folder for phantom_montage.png")
    parser.add_argument("--skip-tables", action="store_true")
    args = parser.parse_args(argv)
    montage(Path(args.out) / "phantom_montage.png")
    seconds = time_subjects()
    print(f"seconds per subject at 2 mm (generation, 1 process): {', '.join(f'{s:.2f}' for s in seconds)}")
    if not args.skip_tables:
        print(volume_table())
        print()
        print(suv_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
