"""Markdown rendering of an evaluation: ``summary.md`` (every summary row) and ``report.md``.

Numbers: 3 significant digits (scientific below 1e-3 and from 1e5), deviations as signed
percentages, p-values to 3 decimals (``<0.001`` below); undefined values are an en dash. A row
without a comparison says why instead of a number: ``outside FOV (0/16 generated)``,
``not segmented (0/16 reference)``, ``no generated subjects`` (statuses of ``coverage``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .comparison import ALPHA, EvaluationResult
from .coverage import OK
from .metrics import BODY, METRICS
from .statistics import (
    BOOTSTRAP_MIN_N,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    resolution_pct,
    spread_ratio,
)
from .subgroups import SubgroupScheme

__all__ = ["STATUS_WORDS", "summary_markdown", "report_markdown", "realism_lines", "realism_markdown"]

Lines = list[str]
#: deviations larger than this (%) are listed: the largest significant ones (Welch p < ALPHA) and the ones
#: the sample sizes cannot resolve
FLAG_DEVIATION_PCT = 5.0
PLOT_CAPTIONS = {
    "box": "Box plots by subgroup (orange: generated, blue: reference)",
    "trend": "Trends (points: subjects; lines: least squares per side)",
    "histograms": "Intensity histograms of body voxels",
}

#: what a status means, in the report's words (the rules are ``coverage``'s)
STATUS_WORDS = {
    "outside_generated_fov": "found in no generated subject, whose volumes are shorter than the reference "
                             "subjects that have it: it lies outside the generated field of view",
    "outside_reference_fov": "found in no reference subject, whose volumes are shorter than the generated "
                             "subjects that have it: it lies outside the reference field of view",
    "not_found_generated": "found in no generated subject although their volumes are as long: the generated "
                           "label maps or the segmenter lack it",
    "not_found_reference": "found in no reference subject although their volumes are as long: the reference "
                           "label maps or the segmenter lack it",
    "not_found": "found on neither side",
    "no_generated_subjects": "the subgroup has no generated subject",
    "no_reference_subjects": "the subgroup has no reference subject",
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


def _ci(row: dict[str, Any]) -> str:
    low, high = row["deviation_ci_low"], row["deviation_ci_high"]
    defined = all(value is not None and math.isfinite(value) for value in (low, high))
    return f"[{_pct(low)}, {_pct(high)}]" if defined else "–"


def _resolution(value: float) -> str:
    return f"{value:.1f}%" if math.isfinite(value) else "–"


def _coverage_text(row: dict[str, Any]) -> str:
    """Why ``row`` has no comparison (``outside FOV (0/16 generated)``); "" when both sides were measured."""
    generated = f"{row['n_generated']}/{row['generated_subjects']} generated"
    reference = f"{row['n_reference']}/{row['reference_subjects']} reference"
    return {
        "outside_generated_fov": f"outside FOV ({generated})",
        "outside_reference_fov": f"outside FOV ({reference})",
        "not_found_generated": f"not segmented ({generated})",
        "not_found_reference": f"not segmented ({reference})",
        "not_found": f"not segmented ({generated}, {reference})",
        "no_generated_subjects": "no generated subjects",
        "no_reference_subjects": "no reference subjects",
    }.get(row["status"], "")


def _deviation(row: dict[str, Any]) -> str:
    """The row's deviation, or why it has none."""
    return _pct(row["deviation_pct"]) if row["status"] == OK else _coverage_text(row)


def _complete(row: dict[str, Any]) -> bool:
    """Whether the row's metric was measured in every subject of the subgroup on both sides."""
    return (row["n_generated"], row["n_reference"]) == (row["generated_subjects"], row["reference_subjects"])


def _counts(row: dict[str, Any]) -> str:
    """``n_generated/n_reference``, with the subgroup's sizes where the organ was not measured in all of them."""
    counts = f"{row['n_generated']}/{row['n_reference']}"
    return counts if _complete(row) else f"{counts} of {row['generated_subjects']}/{row['reference_subjects']}"


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
        "Each cell: mean (median [Q1, Q3]) over the subjects in which the organ was found (n gen/ref; "
        "`of` gives the subgroup's size where some subjects lack it). Deviation = 100 x (generated mean - "
        f"reference mean) / reference mean, with its {CONFIDENCE:.0%} bootstrap CI (where it spans 0, these "
        f"sample sizes cannot tell the deviation from 0; none below {BOOTSTRAP_MIN_N} subjects on a side). "
        "p: Welch's t-test and Mann-Whitney U, two-sided. "
        "d: Cohen's d (pooled SD). An organ outside a cohort's field of view, or not segmented, says so "
        "with its counts.",
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
        n_gen, n_ref = rows[0]["generated_subjects"], rows[0]["reference_subjects"]
        parts += ["", f"## {subgroup} (generated n={n_gen}, reference n={n_ref})", ""]
        parts.append(_table(
            ("organ", "metric", "n gen/ref", "generated", "reference", "deviation", f"{CONFIDENCE:.0%} CI",
             "p Welch", "p MWU", "d"),
            [(r["organ"], r["metric"], _counts(r), _describe(r, "generated"), _describe(r, "reference"),
              _deviation(r), _ci(r), _p(r["p_welch"]), _p(r["p_mannwhitney"]), _num(r["cohens_d"], 2))
             for r in rows]))
    return "\n".join(parts) + "\n"


def report_markdown(result: EvaluationResult, info: dict[str, Any], scheme: SubgroupScheme,
                    organs: Sequence[str], files: dict[str, Path]) -> str:
    """report.md: what was compared, headline deviations, subgroups, spread, ANOVA, trends, checks, plots."""
    all_rows = {(r["organ"], r["metric"]): r for r in result.summary if r["subgroup"] == "all"}
    table_organs = (*organs, BODY)
    sections = (
        _header(info, scheme, organs),
        _headline(all_rows, table_organs),
        _coverage(result, table_organs),
        _by_subgroup(result, scheme, organs),
        _resolvable(result, table_organs),
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
            cells.append("" if row is None else _deviation(row) + ("*" if _significant(row) else ""))
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


def _organ_rows(result: EvaluationResult, subgroup: str, organs: Sequence[str]) -> list[dict[str, Any]]:
    """One row per organ of ``subgroup`` (its volume row: the counts of subjects with the organ)."""
    rows = {r["organ"]: r for r in result.summary if r["subgroup"] == subgroup and r["metric"] == "volume_ml"}
    return [rows[organ] for organ in organs if organ in rows]


def _coverage(result: EvaluationResult, organs: Sequence[str]) -> Lines:
    lines = ["## Field of view and organ coverage", "",
             "Statistics of an organ are over the subjects in which it was found. An organ found in no subject "
             "of one side lies outside that side's field of view when that side's volumes are shorter (median "
             "z extent) than the other side's subjects that have it; otherwise it was not segmented. Such an "
             "organ gets no deviation, only its counts (summary.csv: `status`, `n_generated` of "
             "`generated_subjects`, `n_reference` of `reference_subjects`).", ""]
    rows = _organ_rows(result, "all", organs)
    missing = [r for r in rows if r["status"] != OK]
    partial = [r for r in rows if r["status"] == OK and not _complete(r)]
    lines += [f"- `{r['organ']}`: {_coverage_text(r)}: {STATUS_WORDS[r['status']]}." for r in missing]
    lines += [f"- `{r['organ']}`: found in {r['n_generated']} of {r['generated_subjects']} generated and "
              f"{r['n_reference']} of {r['reference_subjects']} reference subjects; its statistics are over those "
              "only (other people than the whole cohort when the missing ones differ)." for r in partial]
    if not missing and not partial:
        lines.append("Every organ was found in every subject of both sides.")
    covered = {r["organ"] for r in rows if r["status"] == OK}
    others = [r for r in result.summary if r["subgroup"] != "all" and r["metric"] == "volume_ml"
              and r["status"] != OK and r["organ"] in covered]
    if others:
        lines += ["", "In subgroups: " + "; ".join(f"`{r['subgroup']}` {r['organ']} {_coverage_text(r)}"
                                                   for r in others) + "."]
    return lines + [""]


def _by_subgroup(result: EvaluationResult, scheme: SubgroupScheme, organs: Sequence[str]) -> Lines:
    lines = ["## SUVmean and volume by subgroup", "",
             "Deviation (%) of the generated mean per subgroup (rows) and organ (columns), ± half the width of "
             f"its {CONFIDENCE:.0%} bootstrap CI (about the smallest deviation the subgroup's sample sizes "
             "resolve; see below).", ""]
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
                    half = resolution_pct(match[0])
                    cells.append(_deviation(match[0]) + (f" ±{half:.1f}" if match[0]["status"] == OK
                                                         and math.isfinite(half) else ""))
                else:
                    cells.append("")
            if present:
                rows.append(cells)
        lines += [_table(("subgroup", *organs), rows), ""]
    return lines + ["Full tables: [summary.md](summary.md) (Markdown) and [summary.csv](summary.csv); one row per "
                    "subject and organ: [subjects.csv](subjects.csv).", ""]


def _resolution_sentence(metric: str, cells: Sequence[dict[str, Any]]) -> str:
    """One metric of subgroup ``all`` in words: what its sample sizes cannot resolve, and what they do."""
    sized = [r for r in cells if math.isfinite(resolution_pct(r))]
    parts = []
    if sized:
        sizes = ", ".join(f"{_resolution(resolution_pct(r))} ({r['organ']}"
                          + ("" if _complete(r) else f", {r['n_generated']} vs {r['n_reference']} subjects") + ")"
                          for r in sized)
        resolved = [f"{r['organ']} {_pct(r['deviation_pct'])} {_ci(r)}" for r in sized if r["resolvable"]]
        parts.append(f"deviations smaller than {sizes} cannot be told apart from 0; "
                     + (f"resolved (the interval excludes 0): {', '.join(resolved)}" if resolved
                        else "no deviation is resolved (every interval spans 0)"))
    unsized = [r["organ"] for r in cells if not math.isfinite(resolution_pct(r))]
    if unsized:
        parts.append(f"no interval for {', '.join(unsized)} (fewer than {BOOTSTRAP_MIN_N} subjects with the "
                     "organ on a side, or a reference mean of 0)")
    return f"- **{metric}**: " + "; ".join(parts) + "."


def _resolvable(result: EvaluationResult, organs: Sequence[str]) -> Lines:
    """In words: which deviations the sample sizes cannot tell apart from 0."""
    lines = [
        "## What these sample sizes can resolve",
        "",
        f"Each deviation carries a {CONFIDENCE:.0%} percentile-bootstrap confidence interval (summary.csv: "
        f"`deviation_ci_low`, `deviation_ci_high`; {BOOTSTRAP_RESAMPLES} resamples of the subjects, within "
        f"each side independently, seed {BOOTSTRAP_SEED}) and `resolvable` (the interval excludes 0). Half "
        "the interval's width is about the smallest deviation the two sample sizes tell apart from 0; a "
        f"smaller one, in either direction, may be noise. Cells with fewer than {BOOTSTRAP_MIN_N} subjects "
        "on a side get no interval (the bootstrap's interval is far too narrow there) and resolve nothing.",
        "",
    ]
    rows = [r for r in result.summary if r["subgroup"] == "all" and r["status"] == OK]
    if rows:
        lines += [f"With {rows[0]['generated_subjects']} generated vs {rows[0]['reference_subjects']} reference "
                  "subjects (`all`):", ""]
        for metric in ("suv_mean", "volume_ml"):
            cells = [r for organ in organs for r in rows if r["organ"] == organ and r["metric"] == metric]
            if cells:
                lines.append(_resolution_sentence(metric, cells))
    smaller = [r for r in result.summary if r["subgroup"] != "all" and r["status"] == OK]
    if smaller:
        halves = np.array([resolution_pct(r) for r in smaller], dtype=np.float64)
        halves = halves[np.isfinite(halves)]
        sizes = [min(r["n_generated"], r["n_reference"]) for r in smaller]
        spread = (f"half-widths are {_resolution(halves.min())}-{_resolution(halves.max())} (median "
                  f"{_resolution(float(np.median(halves)))}), {np.count_nonzero(np.isfinite(halves))} of "
                  f"{len(smaller)} cells have an interval" if halves.size else "no cell has an interval")
        lines += ["", f"In the smaller subgroups ({min(sizes)}-{max(sizes)} subjects on the smaller side) {spread}; "
                  f"{sum(r['resolvable'] for r in smaller)} resolve their deviation."]
    unresolved = [r for r in result.summary if r["status"] == OK and not r["resolvable"]
                  and math.isfinite(r["deviation_pct"]) and abs(r["deviation_pct"]) > FLAG_DEVIATION_PCT]
    if unresolved:
        unresolved.sort(key=lambda r: -abs(r["deviation_pct"]))
        lines += ["", f"Deviations larger than {FLAG_DEVIATION_PCT:g}% that these sample sizes cannot resolve "
                  f"(the interval spans 0 or there is none; {len(unresolved)} in all, the largest below): do not "
                  "read them as differences.", "",
                  _table(("subgroup", "organ", "metric", "n gen/ref", "deviation", f"{CONFIDENCE:.0%} CI"),
                         [(r["subgroup"], r["organ"], r["metric"], _counts(r), _pct(r["deviation_pct"]), _ci(r))
                          for r in unresolved[:15]])]
    return lines + [""]


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
            _table(("subgroup", "organ", "metric", "n gen/ref", "generated mean", "reference mean", "deviation",
                    f"{CONFIDENCE:.0%} CI", "p Welch", "p MWU", "d"),
                   [(r["subgroup"], r["organ"], r["metric"], _counts(r), _num(r["generated_mean"]),
                     _num(r["reference_mean"]), _pct(r["deviation_pct"]), _ci(r), _p(r["p_welch"]),
                     _p(r["p_mannwhitney"]), _num(r["cohens_d"], 2)) for r in flagged[:15]]),
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


def _coefficient(row: dict[str, Any], side: str) -> str:
    """``coef ± se``, or why the side's regression has none (too few subjects with the organ)."""
    coef = row[f"{side}_coef"]
    if coef is None or not math.isfinite(coef):
        return f"not fitted (n={row[f'n_{side}']})"
    return f"{_num(coef)} ± {_num(row[f'{side}_se'], 2)}"


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
               [(r["organ"], r["metric"], r["term"], _coefficient(r, "generated"), _coefficient(r, "reference"),
                 _pct(r["difference_pct"]), _p(r["p_difference"])) for r in rows]),
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
        "- With small subgroups p-values are weak evidence either way; look at deviations with their "
        "confidence intervals (a deviation whose interval spans 0 is not resolved by these sample sizes) "
        "and effect sizes (Cohen's d around 0.2 is small, 0.8 large).",
        "- An organ outside one cohort's field of view, or missing from its label maps, is counted, not "
        "compared; compare cohorts that cover the same body where possible.",
        "- Organ metrics depend on the segmenter; compare like with like (the same segmenter on both "
        "sides where possible).",
        "",
    ]
