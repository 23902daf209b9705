"""Markdown rendering of an evaluation: ``summary.md`` (every summary row) and ``report.md``.

Numbers: 3 significant digits (scientific below 1e-3 and from 1e5), deviations as signed
percentages, p-values to 3 decimals (``<0.001`` below); undefined values are an en dash.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .comparison import ALPHA, EvaluationResult
from .metrics import BODY, METRICS
from .statistics import spread_ratio
from .subgroups import SubgroupScheme

__all__ = ["summary_markdown", "report_markdown", "realism_lines", "realism_markdown"]

Lines = list[str]
#: deviations larger than this (%) with Welch p < ALPHA are listed as the largest significant ones
FLAG_DEVIATION_PCT = 5.0
PLOT_CAPTIONS = {
    "box": "Box plots by subgroup (orange: generated, blue: reference)",
    "trend": "Trends (points: subjects; lines: least squares per side)",
    "histograms": "Intensity histograms of body voxels",
}


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int | np.integer):
        return str(int(value))
    value = float(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"


def _pct(value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    return f"{float(value):+.1f}%"


def _p(value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _describe(row: dict[str, Any], side: str) -> str:
    return (f"{_num(row[f'{side}_mean'])} ({_num(row[f'{side}_median'])} "
            f"[{_num(row[f'{side}_q1'])}, {_num(row[f'{side}_q3'])}])")


def _subgroup_rules(scheme: SubgroupScheme) -> str:
    return "Subgroups: " + "; ".join(f"`{name}` = {rule}" for name, rule in scheme.describe())


def summary_markdown(result: EvaluationResult, scheme: SubgroupScheme) -> str:
    """summary.md: one table per subgroup with every organ and metric."""
    parts = [
        "# Summary: generated vs reference, by subgroup, organ and metric",
        "",
        "Each cell: mean (median [Q1, Q3]). Deviation = 100 x (generated mean - reference mean) / "
        "reference mean. p: Welch's t-test and Mann-Whitney U, two-sided. d: Cohen's d (pooled SD).",
        "Units: volume mL, SUV g/mL, CT HU; `body` is the whole body (fat fraction: share of body voxels "
        "in -190..-30 HU).",
        "",
        _subgroup_rules(scheme),
    ]
    if result.realism:
        parts += ["", "Image-level realism (details in report.md):", "", *(f"- {line}" for line in
                                                                         realism_lines(result.realism))]
    by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in result.summary:
        by_group[row["subgroup"]].append(row)
    for subgroup, rows in by_group.items():
        n_gen = max(r["n_generated"] for r in rows if r["metric"] == "volume_ml")
        n_ref = max(r["n_reference"] for r in rows if r["metric"] == "volume_ml")
        parts += ["", f"## {subgroup} (generated n={n_gen}, reference n={n_ref})", ""]
        parts.append(_table(
            ("organ", "metric", "n gen/ref", "generated", "reference", "deviation", "p Welch", "p MWU", "d"),
            [(r["organ"], r["metric"], f"{r['n_generated']}/{r['n_reference']}", _describe(r, "generated"),
              _describe(r, "reference"), _pct(r["deviation_pct"]), _p(r["p_welch"]), _p(r["p_mannwhitney"]),
              _num(r["cohens_d"], 2)) for r in rows]))
    return "\n".join(parts) + "\n"


def report_markdown(result: EvaluationResult, info: dict[str, Any], scheme: SubgroupScheme,
                    organs: Sequence[str], files: dict[str, Path]) -> str:
    """report.md: what was compared, headline deviations, subgroups, spread, ANOVA, trends, checks, plots."""
    all_rows = {(r["organ"], r["metric"]): r for r in result.summary if r["subgroup"] == "all"}
    table_organs = (*organs, BODY)
    sections = (
        _header(info, scheme, organs),
        _headline(all_rows, table_organs),
        _by_subgroup(result, scheme, organs),
        _spread(all_rows, table_organs),
        _largest_deviations(result),
        _anova(result),
        _trends(result),
        _image_checks(result),
        realism_markdown(result.realism),
        _plots(files),
        _how_to_read(),
    )
    return "\n".join(line for section in sections for line in section)


def _header(info: dict[str, Any], scheme: SubgroupScheme, organs: Sequence[str]) -> Lines:
    gen, ref = info["generated"], info["reference"]
    timing = info["timing"]
    return [
        "# PET/CT evaluation report: generated vs reference",
        "",
        f"*petct-diffusion {info['petct_diffusion_version']}, {info['finished']}.*",
        "",
        "## What was compared",
        "",
        _table(("", "generated", "reference"), [
            ("folder", f"`{gen['path']}`", f"`{ref['path']}`"),
            ("layout", gen["layout"], ref["layout"]),
            ("subjects", gen["subjects"], ref["subjects"]),
            ("skipped", len(gen["skipped"]), len(ref["skipped"])),
            ("segmenter", gen["segmenter"], ref["segmenter"]),
        ]),
        "",
        f"Organs: {', '.join(organs)}, plus `body` (whole body). Metrics: volume (mL), SUVmean, SUVmax, "
        "SUVpeak (mean SUV of the hottest 1 mL sphere inside the organ), mean CT (HU); for the body also "
        "the fat fraction (share of body voxels in -190..-30 HU).",
        "",
        _subgroup_rules(scheme) + ".",
        "",
        f"**Evaluation time: {timing['wall_seconds']:.1f} s for {timing['subjects']} subjects "
        f"({timing['seconds_per_subject']:.2f} s per subject wall time, {info['workers']} worker(s); "
        f"{timing['measure_seconds_per_subject']:.2f} s per subject to load, segment and measure).**",
        "",
    ]


def _significant(row: dict[str, Any]) -> bool:
    """Significant by both Welch's t-test and Mann-Whitney U at :data:`~.comparison.ALPHA`."""
    return (row["p_welch"] is not None and row["p_welch"] < ALPHA
            and row["p_mannwhitney"] is not None and row["p_mannwhitney"] < ALPHA)


def _headline(all_rows: dict[tuple[str, str], dict[str, Any]], organs: Sequence[str]) -> Lines:
    metrics = (*METRICS, "fat_fraction")
    deviations = []
    for organ in organs:
        cells = [organ]
        for metric in metrics:
            row = all_rows.get((organ, metric))
            cells.append("" if row is None else _pct(row["deviation_pct"]) + ("*" if _significant(row) else ""))
        deviations.append(cells)
    means = [[organ] + [(f"{_num(all_rows[(organ, m)]['generated_mean'])} / "
                         f"{_num(all_rows[(organ, m)]['reference_mean'])}" if (organ, m) in all_rows else "")
                        for m in metrics]
             for organ in organs]
    return [
        "## Headline: all subjects",
        "",
        "Relative deviation of the generated mean from the reference mean (%), per organ and metric; "
        "`*` marks a difference significant by both Welch's t-test and Mann-Whitney U at p < 0.05.",
        "",
        _table(("organ", *metrics), deviations),
        "",
        "Means (generated / reference) for subgroup `all`:",
        "",
        _table(("organ", *metrics), means),
        "",
    ]


def _by_subgroup(result: EvaluationResult, scheme: SubgroupScheme, organs: Sequence[str]) -> Lines:
    lines = ["## SUVmean and volume by subgroup", "",
             "Deviation (%) of the generated mean per subgroup (rows) and organ (columns).", ""]
    for metric in ("suv_mean", "volume_ml"):
        lines += [f"**{metric}**", ""]
        rows = []
        for subgroup in scheme.names():
            cells = [f"`{subgroup}`"]
            present = False
            for organ in organs:
                match = [r for r in result.summary if r["subgroup"] == subgroup and r["organ"] == organ
                         and r["metric"] == metric]
                if match:
                    present = True
                    cells.append(_pct(match[0]["deviation_pct"]))
                else:
                    cells.append("")
            if present:
                rows.append(cells)
        lines += [_table(("subgroup", *organs), rows), ""]
    return lines + ["Full tables: [summary.md](summary.md) (Markdown) and [summary.csv](summary.csv); one row per "
                    "subject and organ: [subjects.csv](subjects.csv).", ""]


def _spread_cells(row: dict[str, Any] | None) -> list[str]:
    if row is None:
        return ["", ""]
    return [_num(spread_ratio(row), 2), _pct(row["median_deviation_pct"])]


def _spread(all_rows: dict[tuple[str, str], dict[str, Any]], organs: Sequence[str]) -> Lines:
    metrics = ("suv_mean", "volume_ml")
    return [
        "## Spread across subjects",
        "",
        "Generated SD / reference SD over all subjects (1 = the generated subjects vary as much as the "
        "reference; below 1 they are more alike) and the deviation of the median. A model that misses a "
        "metric's heavy upper tail shows a spread below 1 and a mean deviation larger than its median "
        "deviation.",
        "",
        _table(("organ", *(f"{m} {column}" for m in metrics for column in ("spread", "median dev."))),
               [[organ] + [cell for m in metrics for cell in _spread_cells(all_rows.get((organ, m)))]
                for organ in organs]),
        "",
    ]


def _largest_deviations(result: EvaluationResult) -> Lines:
    flagged = [r for r in result.summary if r["deviation_pct"] is not None and math.isfinite(r["deviation_pct"])
               and abs(r["deviation_pct"]) > FLAG_DEVIATION_PCT and r["p_welch"] is not None
               and math.isfinite(r["p_welch"]) and r["p_welch"] < ALPHA]
    if not flagged:
        return ["## Largest significant deviations", "",
                f"No deviation larger than {FLAG_DEVIATION_PCT:g}% with p < {ALPHA:g} (Welch).", ""]
    flagged.sort(key=lambda r: -abs(r["deviation_pct"]))
    return ["## Largest significant deviations", "",
            _table(("subgroup", "organ", "metric", "generated mean", "reference mean", "deviation", "p Welch",
                    "p MWU", "d"),
                   [(r["subgroup"], r["organ"], r["metric"], _num(r["generated_mean"]), _num(r["reference_mean"]),
                     _pct(r["deviation_pct"]), _p(r["p_welch"]), _p(r["p_mannwhitney"]), _num(r["cohens_d"], 2))
                    for r in flagged[:15]]),
            ""]


def _anova(result: EvaluationResult) -> Lines:
    rows = [r for r in result.anova if r["metric"] in ("volume_ml", "suv_mean") and r["organ"] != BODY]
    return [
        "## Do subgroup differences agree? (one-way ANOVA)",
        "",
        "Whether a metric differs across the subgroups of a family, tested on each side separately; "
        "`same` means both sides reach the same conclusion at p < 0.05. Full table: [anova.csv](anova.csv).",
        "",
        _table(("family", "organ", "metric", "generated F (p)", "reference F (p)", "same"),
               [(r["family"], r["organ"], r["metric"], f"{_num(r['generated_F'])} ({_p(r['generated_p'])})",
                 f"{_num(r['reference_F'])} ({_p(r['reference_p'])})",
                 {True: "yes", False: "**no**", "": "–"}[r["same_conclusion"]]) for r in rows]),
        "",
    ]


def _trends(result: EvaluationResult) -> Lines:
    rows = [r for r in result.trends if r["term"] != "intercept" and r["organ"] != BODY]
    return [
        "## Trends with demographics (regressions fitted on each side)",
        "",
        "Organ volume ~ height + weight + sex (M=1) + age; SUVmean ~ age + BMI. Coefficients per unit "
        "(cm, kg, year, kg/m^2); p diff: z-test of the difference of the two coefficients. Full table: "
        "[trends.csv](trends.csv).",
        "",
        _table(("organ", "metric", "term", "generated", "reference", "difference", "p diff"),
               [(r["organ"], r["metric"], r["term"], f"{_num(r['generated_coef'])} ± {_num(r['generated_se'], 2)}",
                 f"{_num(r['reference_coef'])} ± {_num(r['reference_se'], 2)}", _pct(r["difference_pct"]),
                 _p(r["p_difference"])) for r in rows]),
        "",
    ]


def _image_checks(result: EvaluationResult) -> Lines:
    checks = result.image_checks
    nonfinite = checks["nonfinite"]
    diversity = checks["diversity"]
    between = diversity["between_subjects"]
    lines = [
        "## Image checks",
        "",
        _table(("check", "generated", "reference"), [
            ("subjects with NaN/inf voxels", nonfinite["generated"]["subjects_with_nonfinite"],
             nonfinite["reference"]["subjects_with_nonfinite"]),
            ("NaN/inf voxels (CT + PET)",
             nonfinite["generated"]["nonfinite_ct_voxels"] + nonfinite["generated"]["nonfinite_pet_voxels"],
             nonfinite["reference"]["nonfinite_ct_voxels"] + nonfinite["reference"]["nonfinite_pet_voxels"]),
            ("mean pairwise distance between subjects, HU / SUV",
             f"{_num(between['generated']['hu_mad'])} / {_num(between['generated']['suv_mad'])}",
             f"{_num(between['reference']['hu_mad'])} / {_num(between['reference']['suv_mad'])}"),
        ]),
        "",
        f"Histogram distance of body voxels (1-Wasserstein): CT {_num(checks['wasserstein']['hu'])} HU, "
        f"PET {_num(checks['wasserstein']['suv'])} SUV.",
        "",
    ]
    groups = diversity["same_demographics_groups"]
    if groups:
        lines.append(
            f"Sample diversity: {len(groups)} group(s) of generated samples share demographics; their mean "
            f"pairwise distance is {_num(diversity['mean_within_hu_mad'])} HU / "
            f"{_num(diversity['mean_within_suv_mad'])} SUV (0 would mean identical samples: mode collapse; "
            "compare with the distance between different subjects above).")
    else:
        lines.append("Sample diversity: no two generated samples share demographics, so within-demographics "
                     "diversity was not measured (generate several seeds per demographic tuple to check it).")
    return lines + ["", "Details: [image_checks.json](image_checks.json).", ""]


def _seconds(block: dict[str, Any]) -> str:
    return f"{_num(block.get('seconds_per_subject'), 2)} s per subject"


def realism_lines(realism: dict[str, Any]) -> Lines:
    """One line per realism check (what the CLI prints and summary.md lists): the figure, its scale, its cost."""
    frechet, ms_ssim, memo = realism["frechet"], realism["ms_ssim"], realism["memorisation"]
    lines = []
    if frechet.get("run"):
        lines.append(f"Fréchet distance (encoder features, {frechet['dims']} dims, {frechet['half_size']} vs "
                     f"{frechet['half_size']} subjects): {_num(frechet['matched_distance'])}; floor (reference half "
                     f"vs half) {_num(frechet['floor_mean'])} [{_num(frechet['floor_min'])}, "
                     f"{_num(frechet['floor_max'])}]; {_seconds(frechet)}")
    else:
        lines.append(f"Fréchet distance: not computed ({frechet['reason']})")
    if ms_ssim.get("run"):
        gen, ref, between = ms_ssim["generated_within"], ms_ssim["reference_within"], ms_ssim["reference_between"]
        ref_text = (f"reference same demographics {_num(ref['mean'])} ({ref['pairs']} pairs)" if ref else
                    "reference same demographics: none (no repeated demographics)")
        between_text = f"; between reference subjects {_num(between['mean'])}" if between else ""
        lines.append(f"MS-SSIM diversity: generated same demographics {_num(gen['mean'])} ({gen['pairs']} pairs); "
                     f"{ref_text}{between_text} (lower = more diverse); {_seconds(ms_ssim)}")
    else:
        lines.append(f"MS-SSIM diversity: not computed ({ms_ssim['reason']})")
    if memo.get("run"):
        lines.append(f"Memorisation: {memo['flagged']} of {memo['n_generated']} generated subjects flagged as near "
                     f"copies of a training subject (threshold {_num(memo['threshold'])}); "
                     f"{_num(memo.get('seconds_per_training_subject'), 2)} s per training subject")
    else:
        lines.append(f"Memorisation audit: {memo['reason']}")
    return lines


def realism_markdown(realism: dict[str, Any]) -> Lines:
    """report.md's section on the Fréchet distance, MS-SSIM diversity and the memorisation audit."""
    if not realism:
        return ["## Image-level realism, diversity and memorisation", "", "Not run (realism=False).", ""]
    frechet, ms_ssim, memo = realism["frechet"], realism["ms_ssim"], realism["memorisation"]
    lines = ["## Image-level realism, diversity and memorisation", ""]
    if frechet.get("run"):
        h = frechet["half_size"]
        lines += [
            "**Fréchet distance** of encoder features (squared, the FID formula of Heusel et al. 2017), at matched "
            f"size over {frechet['floor_splits']} random splits of the reference into halves of {h}:",
            "",
            _table(("compared", "subjects", "Fréchet distance (mean)", "range"), [
                ("generated vs reference half", f"{min(h, frechet['n_generated'])} vs {h}",
                 f"**{_num(frechet['matched_distance'])}**",
                 f"[{_num(frechet['matched_min'])}, {_num(frechet['matched_max'])}]"),
                ("floor: reference half vs the other half", f"{h} vs {h}", _num(frechet["floor_mean"]),
                 f"[{_num(frechet['floor_min'])}, {_num(frechet['floor_max'])}]"),
                ("all generated vs all reference", f"{frechet['n_generated']} vs {frechet['n_reference']}",
                 _num(frechet["distance"]), ""),
            ]),
            "",
            "A generated-vs-half distance within the floor's range means these features cannot tell the cohorts "
            "apart at this sample size; the estimate shrinks as samples grow, so compare rows of the same size.",
            "",
            f"Features: {frechet['feature_model']}. With {frechet['n_reference']} reference subjects the "
            f"{frechet['features']} features are standardised by the reference's SD and reduced to the first "
            f"{frechet['dims']} principal components of the two samples compared, pooled (at most n/2 - 1, so "
            "each half's covariance has more subjects than dimensions); units: squared reference SDs. Cost "
            f"{_seconds(frechet)}.",
            "",
        ]
    else:
        lines += [f"**Fréchet distance**: not computed: {frechet['reason']}.", ""]
    if ms_ssim.get("run"):
        gen, ref, between = ms_ssim["generated_within"], ms_ssim["reference_within"], ms_ssim["reference_between"]
        rows = [("generated, same demographics", gen["groups"], gen["pairs"], _num(gen["mean"]), _num(gen["ct"]),
                 _num(gen["pet"]))]
        rows.append(("reference, same demographics", ref["groups"], ref["pairs"], _num(ref["mean"]), _num(ref["ct"]),
                     _num(ref["pet"])) if ref else ("reference, same demographics", 0, 0, "none", "–", "–"))
        if between:
            rows.append(("reference, different subjects", "–", between["pairs"], _num(between["mean"]),
                         _num(between["ct"]), _num(between["pet"])))
        lines += [
            "**MS-SSIM diversity** (MONAI; 1 = identical samples, i.e. mode collapse; lower = more diverse):",
            "",
            _table(("pairs of", "groups", "pairs", "MS-SSIM", "CT", "PET"), rows),
            "",
            f"On model-space CT and PET at about {ms_ssim['mm']:g} mm, {ms_ssim['scales']} scale(s), Gaussian "
            f"window {ms_ssim['kernel']} voxels (sigma {ms_ssim['sigma']:g}). Cost {_seconds(ms_ssim)} "
            f"({_num(ms_ssim['seconds_per_pair'], 2)} s per pair)."
            + ("" if ref else " The reference repeats no demographic tuple, so it has no same-demographics value."),
            "",
        ]
    else:
        lines += [f"**MS-SSIM diversity**: not computed: {ms_ssim['reason']}.", ""]
    if memo.get("run"):
        lines += [
            f"**Memorisation audit** against the training cohort `{memo['train_reference']}` "
            f"({memo['n_training']} subjects): **{memo['flagged']} of {memo['n_generated']}** generated subjects "
            f"are flagged as near copies ({memo['rule']}; threshold {_num(memo['threshold'])}).",
            "",
            _table(("nearest training distance", "median", "min"), [
                ("generated", _num(memo["generated_nearest_median"]), _num(memo["generated_nearest_min"])),
                (f"held-out (reference, n={memo['n_held_out']})", _num(memo["held_out_nearest_median"]),
                 _num(memo["held_out_nearest_min"])),
            ]),
            "",
            f"Distance: {memo['distance']}. {memo['below_held_out_min']} generated subject(s) are nearer to a "
            "training subject than any held-out subject is. "
            + (f"**{memo['held_out_identical_to_training']} reference subject(s) are identical to a training "
               "subject: the reference is not held out**, so the threshold uses the others. "
               if memo["held_out_identical_to_training"] else "")
            + f"Per subject: [memorisation.csv](memorisation.csv). Cost "
            f"{_num(memo['seconds_per_training_subject'], 2)} s per training subject.",
            "",
        ]
    else:
        lines += [f"**Memorisation audit**: {memo['reason']}.", ""]
    return lines


def _plots(files: dict[str, Path]) -> Lines:
    lines = ["## Plots", ""]
    for name in sorted(p for p in files if p.startswith("plots/")):
        stem = Path(name).stem
        kind = stem.split("_")[0]
        lines += [f"**{PLOT_CAPTIONS.get(kind, stem)}: {stem.partition('_')[2] or stem}**", "",
                  f"![{stem}]({name})", ""]
    return lines


def _how_to_read() -> Lines:
    return [
        "## How to read this report",
        "",
        "- A good generator has deviations near 0% and large p-values in every subgroup, reproduces "
        "the reference's subgroup differences (ANOVA `same`) and trends (coefficients close, p diff "
        "large), has no NaN/inf voxels, small histogram distances and non-zero sample diversity.",
        "- With small subgroups p-values are weak evidence either way; look at deviations and effect "
        "sizes (Cohen's d around 0.2 is small, 0.8 large).",
        "- Organ metrics depend on the segmenter; compare like with like (the same segmenter on both "
        "sides where possible).",
        "",
    ]
