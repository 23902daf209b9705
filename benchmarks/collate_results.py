"""Convert per-configuration result files into each benchmark's collated results file.

Until 2026-12 every benchmark run wrote ``results/<benchmark>_<tag>.json`` + ``.md``, with the
configuration encoded in the file name. This moves each such pair into ``results/<benchmark>.json``
as a run (``harness.collate_legacy``): the payload is kept whole and the old Markdown verbatim as
the run's details, so no figure is lost. What the payloads did not record is in ``LEGACY`` below,
for the files committed until then: the weights (``MODEL@<commit>``: the shipped folder as of that
commit), the sampling defaults of the time, the commit and the command. Files from a branch that
still runs the old scripts are converted from what their payload records (unrecorded defaults stay
None) and their command is unknown.

    python benchmarks/collate_results.py [FOLDER]   # convert what results/ (FOLDER) still holds, redraw all .md
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_conditioning
import bench_evaluation
import bench_pipeline
import bench_quality
import bench_sr
import bench_stage1_organs
import bench_stage_errors
import bench_training
import harness

SHIPPED = "checkpoints/petct-phantom-demo"


def _weights(model: str, stage1: int | str | None = None, sr: int | str | None = None,
             prior: str | None = None) -> dict[str, Any]:
    """A ``model_info`` record for weights that are gone (or changed since): stages' training steps, prior."""
    info: dict[str, Any] = {"model": model}
    if stage1 is not None:
        info["stage1_trained_steps"] = stage1
    if sr is not None:
        info["sr_trained_steps"] = sr
    if prior is not None:
        info["demographic_prior"] = prior
    return info


#: the shipped folder over time (training_provenance.json of each commit that changed it)
UNTRAINED = {"model": f"{SHIPPED}@1f2ca45", "stage1_trained_steps": 0, "sr_trained_steps": 0,
             "demographic_prior": "none"}
BASE3600 = {"model": f"{SHIPPED}@e8c4ab1", "stage1": 3600, "sr": 1200}
BASE6000 = {"model": f"{SHIPPED}@3e59c93", "stage1": 6000, "sr": 1200}
SR3600 = {"model": f"{SHIPPED}@9af03e3", "stage1": 6000, "sr": 3600}
PRIOR = {"model": SHIPPED, "stage1": 6000, "sr": 3600, "prior": "ct"}  # unchanged since 75f941a
NO_GUIDANCE = {"guidance": 1.0, "prior_scale": 0.0, "back_projection_iterations": 0}
GUIDANCE2 = {"guidance": 2.0, "prior_scale": 0.0}
WITH_PRIOR = {"guidance": 1.0, "prior_scale": 0.6, "back_projection_iterations": 6}
QUALITY = "python benchmarks/bench_quality.py"
CONDITIONING = "python benchmarks/bench_conditioning.py"
STAGE1 = "python benchmarks/bench_stage1_organs.py"
STAGE_ERRORS = "python benchmarks/bench_stage_errors.py"
SR = "python benchmarks/bench_sr.py"

#: old file stem -> what its payload does not say: commit, weights, sampling defaults then, command (with the
#: flags today's script needs for the same configuration)
LEGACY: dict[str, dict[str, Any]] = {
    "pipeline_cpu": {"revision": "266d1b5", "weights": UNTRAINED,
                     "sampling": {"stage1_steps": 32, "sr_steps": 8, "guidance": 1.0, "prior_scale": 0.0},
                     "heights": [150.0, 175.0, 200.0], "paper": {"steps": 100, "nfe": 1, "sr_z": 16},
                     "command": "python benchmarks/bench_pipeline.py"},
    "pipeline_cpu_shipped": {"revision": "3e59c93", "weights": BASE6000,
                             "sampling": {"stage1_steps": 8, "sr_steps": 2, **GUIDANCE2}, "heights": [175.0],
                             "paper": None,
                             "command": f"python benchmarks/bench_pipeline.py --model {SHIPPED}@3e59c93 --steps 8 "
                                        "--heights 175 --skip-paper"},
    "training_cpu": {"revision": "f32827c", "command": "python benchmarks/bench_training.py"},
    "evaluation_cpu": {"revision": "f0c6684", "seed": 123,
                       "command": "python benchmarks/bench_evaluation.py --n 8 --seg-model /tmp/segmid/run"},
    "evaluation_cpu_2mm": {"revision": "f0c6684", "seed": 123,
                           "command": "python benchmarks/bench_evaluation.py --n 4 --spacing 2 --workers 2 "
                                      "--tag cpu_2mm"},
    "quality_cpu": {"revision": "9fed644", "weights": BASE3600, "sampling": NO_GUIDANCE,
                    "command": f"{QUALITY} --model {SHIPPED}@e8c4ab1 --limit 24 --main-steps 16 --steps 8 16 32 "
                               "--sweep-limit 12 --diversity-seeds 3 --phantom-baseline --guidance-scale 1 "
                               "--back-projection-iterations 0"},
    **{f"quality_cpu_default8{suffix}": {"revision": revision, "weights": BASE3600,
                                         "sampling": {**NO_GUIDANCE, "guidance": float(guidance)},
                                         "command": f"{QUALITY} --model {SHIPPED}@e8c4ab1 --limit 24 --main-steps 8 "
                                                    f"--steps --diversity-seeds 0 --guidance-scale {guidance} "
                                                    f"--back-projection-iterations 0 --tag cpu_default8{suffix}"}
       for suffix, guidance, revision in (("", 1, "9fed644"), ("_g2", 2, "1bf597c"), ("_g3", 3, "1bf597c"))},
    "quality_cpu_6000_g2": {"revision": "3e59c93", "weights": {**BASE6000, "model": "runs/export_6000"},
                            "sampling": {**GUIDANCE2, "back_projection_iterations": 0},
                            "command": f"{QUALITY} --model runs/export_6000 --main-steps 8 --steps --diversity-seeds 3 "
                                       "--phantom-baseline --guidance-scale 2 --back-projection-iterations 0 "
                                       "--tag cpu_6000_g2"},
    "quality_cpu_sr3600": {"revision": "9af03e3", "weights": SR3600,
                           "sampling": {**GUIDANCE2, "back_projection_iterations": 0},
                           "command": f"{QUALITY} --main-steps 8 --steps --diversity-seeds 3 --guidance-scale 2 "
                                      "--prior-scale 0 --back-projection-iterations 0 --tag cpu_sr3600"},
    "quality_cpu_sr3600_bp": {"revision": "4d270c3", "weights": SR3600,
                              "sampling": {**GUIDANCE2, "back_projection_iterations": 6},
                              "command": f"{QUALITY} --main-steps 8 --steps --diversity-seeds 3 --phantom-baseline "
                                         "--guidance-scale 2 --prior-scale 0 --tag cpu_sr3600_bp"},
    "quality_cpu_sr3600_bp_g3_first48": {"revision": "edf735e", "weights": SR3600,
                                         "sampling": {"guidance": 3.0, "prior_scale": 0.0,
                                                      "back_projection_iterations": 6},
                                         "command": f"{QUALITY} --limit 48 --main-steps 8 --steps --diversity-seeds 0 "
                                                    "--guidance-scale 3 --prior-scale 0 "
                                                    "--tag cpu_sr3600_bp_g3_first48"},
    "quality_cpu_prior": {"revision": "75f941a", "weights": {**PRIOR, "model": "runs/prior_pipe"},
                          "sampling": WITH_PRIOR,
                          "command": f"{QUALITY} --model runs/prior_pipe --main-steps 8 --steps --diversity-seeds 3 "
                                     "--guidance-scale 1 --prior-scale 0.6 --tag cpu_prior"},
    "quality_cpu_prior_steps16_first48": {"revision": "75f941a", "weights": PRIOR, "sampling": WITH_PRIOR,
                                          "command": f"{QUALITY} --limit 48 --main-steps 16 --steps "
                                                     "--diversity-seeds 0 --tag cpu_prior_steps16_first48"},
    "quality_cpu_prior_steps16": {"revision": "08ff44c", "weights": PRIOR, "sampling": WITH_PRIOR,
                                  "command": f"{QUALITY} --main-steps 16 --steps --diversity-seeds 3 "
                                             "--tag cpu_prior_steps16"},
    "conditioning_cpu_3600": {"revision": "3e59c93", "weights": BASE3600,
                              "command": f"{CONDITIONING} --model {SHIPPED}@e8c4ab1 --limit 48 --steps 8 "
                                         "--guidance 1 2 3 --tag cpu_3600"},
    "conditioning_probe4800": {"revision": "3e59c93", "weights": {"model": "/tmp/model4800", "stage1": 4800},
                               "command": f"{CONDITIONING} --model /tmp/model4800 --limit 48 --steps 8 --guidance 1 3 "
                                          "--tag probe4800"},
    "conditioning_cpu_6000": {"revision": "3e59c93", "weights": {**BASE6000, "model": "runs/export_6000"},
                              "command": f"{CONDITIONING} --model runs/export_6000 --limit 48 --steps 8 "
                                         "--guidance 1 2 3 --tag cpu_6000"},
    "conditioning_cpu_ft700": {"revision": "3d8c27b", "weights": {"model": "runs/pipeline_ft", "stage1": "6000+700"},
                               "command": f"{CONDITIONING} --model runs/pipeline_ft --limit 48 --steps 8 --guidance 2 "
                                          "--tag cpu_ft700"},
    "conditioning_probe_train": {"revision": "f662886", "weights": SR3600,
                                 "command": f"{CONDITIONING} --reference data/phantoms_train --limit 48 --steps 8 "
                                            "--guidance 2 --prior-scale 0 --tag probe_train"},
    "conditioning_prior": {"revision": "75f941a", "weights": {**PRIOR, "model": "runs/prior_pipe"},
                           "command": f"{CONDITIONING} --model runs/prior_pipe --limit 48 --steps 8 --guidance 1 2 "
                                      "--prior-scale 0.6 --tag prior"},
    "conditioning_prior_ctpet": {"revision": "75f941a",
                                 "weights": {**PRIOR, "model": "runs/prior_ctpet", "prior": "ct+pet"},
                                 "command": f"{CONDITIONING} --model runs/prior_ctpet --limit 48 --steps 8 "
                                            "--guidance 1 --prior-scale 0.6 --tag prior_ctpet"},
    "conditioning_prior_scale0.3": {"revision": "bbbca19", "weights": PRIOR,
                                    "command": f"{CONDITIONING} --limit 48 --steps 8 --guidance 1 --prior-scale 0.3 "
                                               "--tag prior_scale0.3"},
    "conditioning_prior_scale1.0": {"revision": "bbbca19", "weights": PRIOR,
                                    "command": f"{CONDITIONING} --limit 48 --steps 8 --guidance 1 --prior-scale 1.0 "
                                               "--tag prior_scale1.0"},
    "stage1_organs_cpu_prior16": {"revision": "c284ad5", "weights": PRIOR,
                                  "command": f"{STAGE1} --limit 120 --tag cpu_prior16"},
    "stage1_organs_cpu_prior32": {"revision": "57c48fd", "weights": PRIOR,
                                  "command": f"{STAGE1} --limit 120 --steps 32 --tag cpu_prior32"},
    "stage1_organs_cpu_prior16_sde": {"revision": "57c48fd", "weights": PRIOR,
                                      "command": f"{STAGE1} --limit 120 --algorithm-type sde-dpmsolver++ "
                                                 "--tag cpu_prior16_sde"},
    "stage1_organs_cpu_prior16_ft700": {"revision": "57c48fd",
                                        "weights": {"model": "runs/pipeline_ft_prior", "stage1": "6000+700",
                                                    "prior": "ct"},
                                        "command": f"{STAGE1} --model runs/pipeline_ft_prior --limit 120 "
                                                   "--tag cpu_prior16_ft700"},
    **{f"stage1_organs_cpu_from{sigma}": {"revision": "be65192", "weights": PRIOR,
                                          "command": f"{STAGE1} --limit 60 --steps 32 --start-sigma {sigma} "
                                                     f"--tag cpu_from{sigma}"}
       for sigma in ("0.3", "1", "3", "80")},
    **{f"stage_errors_{tag}": {"revision": revision, "weights": {"model": model or SHIPPED, "sr": sr},
                               "command": f"{STAGE_ERRORS} {f'--model {model} ' if model else ''}--limit 24 {extra}"
                                          f"--tag {tag}"}
       for tag, revision, model, sr, extra in (("sr1200", "9af03e3", f"{SHIPPED}@3e59c93", 1200, ""),
                                               ("sr3600", "9af03e3", "runs/export_sr3600", 3600, ""),
                                               ("sr3600_bp", "d44e029", None, 3600, ""),
                                               ("sr3600_bp_s4", "4d270c3", None, 3600, "--sr-steps 4 "))},
    "sr_cpu": {"revision": "7348044", "weights": {"model": f"{SHIPPED}@e8c4ab1", "sr": 1200},
               "command": f"{SR} --model {SHIPPED}@e8c4ab1 --limit 1 --steps 0 1 2 4 --sigma-max 2 0.5"},
    "sr_cpu_sr3600": {"revision": "9af03e3", "weights": {"model": "runs/export_sr3600", "sr": 3600},
                      "command": f"{SR} --model runs/export_sr3600 --limit 2 --steps 0 2 4 8 --tag cpu_sr3600"},
}


def _path(value: Any) -> Any:
    """A recorded path as the collated files name it (the runs were made in /work/main)."""
    return value.removeprefix("/work/main/") if isinstance(value, str) else value


def _model(meta: dict[str, Any], payload_model: str | None, stage1: bool, sr: bool) -> dict[str, Any]:
    """The weights' record: from LEGACY, else what ``model_info`` finds at the recorded path today."""
    weights = meta.get("weights")
    if weights is None:
        return harness.model_info(_path(payload_model) or harness.resolve_model(None), stage1=stage1, sr=sr)
    if "stage1_trained_steps" in weights:
        return dict(weights)
    return _weights(weights["model"], weights.get("stage1") if stage1 else None, weights.get("sr") if sr else None,
                    (weights.get("prior", "none") if stage1 else None))


def _machine(payload: dict[str, Any]) -> dict[str, Any] | None:
    """What the old payloads recorded of the machine, under the names ``harness.machine_info`` uses."""
    recorded = payload.get("machine") if isinstance(payload.get("machine"), dict) else {}
    recorded = {**recorded, **(payload.get("platform") if isinstance(payload.get("platform"), dict) else {})}
    for key in ("platform", "python", "torch", "threads", "cpu_count"):
        if key in payload and not isinstance(payload[key], dict):
            recorded[key] = payload[key]
    if isinstance(payload.get("machine"), str):
        recorded["processor"] = payload["machine"]
    if "machine" in recorded and "processor" not in recorded:
        recorded["processor"] = recorded.pop("machine")
    return recorded or None


def _config_pipeline(payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    return bench_pipeline.run_config(payload["device"], _model(meta, None, True, True), meta["sampling"],
                                     meta["heights"], meta["paper"])


def _config_training(payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    arguments = {k: v if k in ("device", "out") else ast.literal_eval(v) for k, v in payload["arguments"].items()}
    return bench_training.run_config(arguments)


def _config_evaluation(payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    dice = payload.get("dice") or {}
    return bench_evaluation.run_config(payload["subjects_per_cohort"], payload["phantom_spacing_mm"],
                                       payload["workers"], meta.get("seed"), dice.get("model"))


def _config_quality(payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    sampling = {"stage1_steps": payload["main_steps"], "sr_steps": payload.get("sr_steps") or 2,
                "guidance": payload.get("guidance_scale"), "prior_scale": payload.get("prior_scale"),
                "back_projection_iterations": payload.get("back_projection_iterations"),
                **meta.get("sampling", {})}
    diversity = (payload.get("diversity") or {}).get("same_demographics_groups") or [{}]
    return bench_quality.run_config(_model(meta, payload["model"], True, True), sampling, payload["reference"],
                                    payload["subjects"], sorted(map(int, payload["sweep"])),
                                    payload["sweep_subjects"], payload["segmenter"], "phantom_baseline" in payload,
                                    diversity[0].get("n", 0))


def _config_from_payload(module: Any, stage1: bool, sr: bool) -> Callable[[dict[str, Any], dict[str, Any]],
                                                                          dict[str, Any]]:
    """The reader for a benchmark whose ``run_config(payload, model)`` needs only the weights besides the payload."""
    return lambda payload, meta: module.run_config(payload, _model(meta, payload["model"], stage1, sr))


def _config_stage_errors(payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    model = None if payload["model"] == "shipped" else payload["model"]
    return bench_stage_errors.run_config(payload, _model(meta, model, False, True), payload["reference"])


#: benchmark -> (its module, the legacy configuration reader)
BENCHMARKS: dict[str, tuple[Any, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]]] = {
    "pipeline": (bench_pipeline, _config_pipeline), "training": (bench_training, _config_training),
    "evaluation": (bench_evaluation, _config_evaluation), "quality": (bench_quality, _config_quality),
    "conditioning": (bench_conditioning, _config_from_payload(bench_conditioning, True, False)),
    "stage1_organs": (bench_stage1_organs, _config_from_payload(bench_stage1_organs, True, False)),
    "stage_errors": (bench_stage_errors, _config_stage_errors),
    "sr": (bench_sr, _config_from_payload(bench_sr, False, True)),
}


def _commit_date(revision: str | None) -> str | None:
    if revision is None:
        return None
    done = subprocess.run(["git", "log", "-1", "--format=%ad", "--date=short", revision], cwd=harness.REPO,
                          capture_output=True, text=True)
    return done.stdout.strip() or None


def _chronological(benchmark: str) -> Callable[[str], tuple[int, str]]:
    """LEGACY's order (the order the runs were made in), then files it does not list, by tag."""
    stems = list(LEGACY)
    return lambda tag: (stems.index(f"{benchmark}_{tag}") if f"{benchmark}_{tag}" in stems else len(stems), tag)


def converter(benchmark: str) -> Callable[[str, dict[str, Any], str | None], harness.Run]:
    """``harness.collate_legacy``'s ``convert`` for one benchmark."""
    module, read_config = BENCHMARKS[benchmark]

    def convert(tag: str, payload: dict[str, Any], markdown: str | None) -> harness.Run:
        meta = LEGACY.get(f"{benchmark}_{tag}", {})
        if benchmark == "pipeline" and "sampling" not in meta:
            meta = {**meta, "sampling": {}, "heights": None, "paper": None}
        config = {k: _path(v) for k, v in read_config(payload, meta).items()}
        # markdown None (pipeline_cpu_shipped.json had none): the run draws it as the benchmark does
        return module.BENCHMARK.run(tag, config, payload, markdown=markdown,
                                    command=meta.get("command", "unknown (converted, not in LEGACY)"),
                                    date=_commit_date(meta.get("revision")), revision=meta.get("revision"),
                                    machine=_machine(payload))

    return convert


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__)
    parser.add_argument("folder", type=Path, nargs="?", default=harness.RESULTS, help="results folder")
    folder = parser.parse_args(argv).folder
    for benchmark, (module, _) in BENCHMARKS.items():
        tags = harness.collate_legacy(benchmark, converter(benchmark), module.BENCHMARK.title, folder,
                                      order=_chronological(benchmark))
        if tags:
            print(f"{benchmark}.json: converted {', '.join(tags)}")
    for written in harness.render_all(folder):
        print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
