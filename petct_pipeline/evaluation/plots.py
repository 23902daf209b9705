"""Report figures (matplotlib, Agg backend; PNG).

* :func:`box_plot`: one figure per metric, one panel per organ, subgroups along x with the
  generated box beside the reference box (orange = generated, blue = reference).
* :func:`trend_plot`: one figure per (metric, predictor), one panel per organ: subjects as
  points, an ordinary least-squares line per side.
* :func:`histogram_plot`: pooled body HU and SUV histograms of both cohorts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..io import atomic_path

__all__ = ["GENERATED_COLOR", "REFERENCE_COLOR", "box_plot", "trend_plot", "histogram_plot", "METRIC_LABELS"]

GENERATED_COLOR = "#e6822e"
REFERENCE_COLOR = "#2f6db3"
METRIC_LABELS = {
    "volume_ml": "volume (mL)",
    "suv_mean": "SUVmean (g/mL)",
    "suv_max": "SUVmax (g/mL)",
    "suv_peak": "SUVpeak, 1 mL (g/mL)",
    "hu_mean": "mean CT (HU)",
    "fat_fraction": "fat fraction",
    "height": "height (cm)",
    "weight": "weight (kg)",
    "age": "age (years)",
    "bmi": "BMI (kg/m^2)",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _grid(count: int) -> tuple[int, int]:
    cols = min(count, 3 if count <= 9 else 4)
    return math.ceil(count / cols), cols


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


def _layout(fig, top_inches: float, bottom_inches: float, hspace: float) -> None:
    """Fixed margins (tight_layout measures every label and costs more than drawing the figure)."""
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.07, right=0.97, top=1 - top_inches / height, bottom=bottom_inches / height,
                        hspace=hspace, wspace=0.3)


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]


def box_plot(values: Mapping[tuple[str, str, str, str], Sequence[float]], organs: Sequence[str],
             subgroups: Sequence[str], metric: str, path: str | Path, title: str | None = None) -> Path:
    """``values[(side, subgroup, organ, metric)]``, side in {"generated", "reference"}."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    rows, cols = _grid(len(organs))
    width = max(3.2, 0.55 * len(subgroups) + 1.0)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * width, rows * 2.9), squeeze=False)
    for ax, organ in zip(axes.flat, organs):
        positions, data, colors = [], [], []
        for i, subgroup in enumerate(subgroups):
            for offset, side, color in ((-0.2, "generated", GENERATED_COLOR), (0.2, "reference", REFERENCE_COLOR)):
                sample = _finite(values.get((side, subgroup, organ, metric), ()))
                if sample.size:
                    positions.append(i + offset)
                    data.append(sample)
                    colors.append(color)
        if data:
            parts = ax.boxplot(data, positions=positions, widths=0.35, patch_artist=True, showfliers=True,
                               flierprops={"markersize": 2})
            for patch, color in zip(parts["boxes"], colors):
                patch.set_facecolor(color)
                patch.set_alpha(0.75)
            for median in parts["medians"]:
                median.set_color("black")
        ax.set_xticks(range(len(subgroups)))
        ax.set_xticklabels(subgroups, rotation=35, ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(subgroups) - 0.4)
        ax.set_title(organ, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(organs):]:
        ax.set_visible(False)
    fig.legend(handles=[Patch(color=GENERATED_COLOR, label="generated"), Patch(color=REFERENCE_COLOR,
                                                                                 label="reference")],
               loc="upper right", fontsize=8)
    fig.suptitle(title or f"{METRIC_LABELS.get(metric, metric)} by subgroup", fontsize=11)
    _layout(fig, top_inches=0.55, bottom_inches=0.75, hspace=0.6)
    out = _save(fig, path)
    plt.close(fig)
    return out


def trend_plot(points: Mapping[tuple[str, str], tuple[Sequence[float], Sequence[float]]], organs: Sequence[str],
               metric: str, predictor: str, path: str | Path) -> Path:
    """``points[(side, organ)] = (x values, y values)``; one OLS line per side and organ."""
    plt = _pyplot()
    rows, cols = _grid(len(organs))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.3, rows * 2.8), squeeze=False)
    for ax, organ in zip(axes.flat, organs):
        for side, color, marker in (("reference", REFERENCE_COLOR, "o"), ("generated", GENERATED_COLOR, "^")):
            x, y = (np.asarray(v, dtype=np.float64) for v in points.get((side, organ), ((), ())))
            keep = np.isfinite(x) & np.isfinite(y)
            x, y = x[keep], y[keep]
            if not x.size:
                continue
            ax.scatter(x, y, s=9, alpha=0.6, color=color, marker=marker, label=side)
            if x.size >= 3 and np.ptp(x) > 0:
                slope, intercept = np.polyfit(x, y, 1)
                grid = np.linspace(x.min(), x.max(), 20)
                ax.plot(grid, intercept + slope * grid, color=color, linewidth=1.5)
        ax.set_title(organ, fontsize=9)
        ax.set_xlabel(METRIC_LABELS.get(predictor, predictor), fontsize=7)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(organs):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.suptitle(f"{METRIC_LABELS.get(metric, metric)} against {METRIC_LABELS.get(predictor, predictor)} "
                 "(lines: least squares)", fontsize=11)
    _layout(fig, top_inches=0.55, bottom_inches=0.5, hspace=0.45)
    out = _save(fig, path)
    plt.close(fig)
    return out


def histogram_plot(histograms: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                   path: str | Path, hu_range: tuple[float, float] = (-1024.0, 1500.0),
                   suv_range: tuple[float, float] = (0.0, 10.0)) -> Path:
    """``histograms[side] = (hu_counts, hu_edges, suv_counts, suv_edges)``: normalised densities, log y."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for side, color in (("reference", REFERENCE_COLOR), ("generated", GENERATED_COLOR)):
        if side not in histograms:
            continue
        hu_counts, hu_edges, suv_counts, suv_edges = histograms[side]
        for ax, counts, edges in ((axes[0], hu_counts, hu_edges), (axes[1], suv_counts, suv_edges)):
            total = counts.sum()
            if total:
                ax.stairs(counts / total, edges, color=color, label=side, linewidth=1.3)
    axes[0].set_xlim(*hu_range)
    axes[0].set_xlabel("CT (HU), body voxels")
    axes[1].set_xlim(*suv_range)
    axes[1].set_xlabel("SUV (g/mL), body voxels")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_ylabel("fraction of voxels")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.95, wspace=0.25)
    out = _save(fig, path)
    plt.close(fig)
    return out
