"""Cohort throughput: subjects per hour of `petct generate --cohort` by processes and batch size, with peak memory.

Writes a ``--rows`` cohort (demographics drawn like AutoPET, ``petct_pipeline.phantom.sample_population``)
and runs the real command on it once per configuration, each into a fresh folder: one process
(``python -m petct_pipeline generate --cohort ...``) or several (``accelerate launch --multi_gpu
--num_processes N ... -m petct_pipeline generate ...``; on CPU with ``ACCELERATE_USE_CPU=true``, gloo),
at each ``--batch-sizes``. Torch threads per process are the CPU count divided by the processes
(``OMP_NUM_THREADS``), so the cores are shared the same way in every configuration; one more run, a
single process with the threads of a multi-process one, is the reference whose bytes those must
equal. Per run: wall time of the whole command (start-up and model loading included), subjects per
hour, the mean per-row seconds the manifest records, peak resident memory of the process tree
(summed over its processes, sampled every 0.2 s) and of its largest process, whether every row
file has the same sha256 as in the other runs with the same threads per process, and the machine's
1-minute load average before and after (figures on a shared machine depend on it).

A second part measures what true batching of stage 1 would buy, in this process: stage 1 of the
cohort's subjects one call per subject (what the pipeline does with one generator per row) against
one ``sample_base`` call over a batch of B subjects, with the largest difference of the volumes.

    python benchmarks/bench_cohort.py                            # 8 rows, shipped model, 1 and 2 processes, batch 1/4/8
    python benchmarks/bench_cohort.py --rows 16 --tag cpu_16rows
    python benchmarks/bench_cohort.py --device cuda --processes 1 2 --tag gpu   # one process per GPU

Results: benchmarks/results/cohort.{json,md}, one run per configuration (``--tag`` labels it).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import harness

RUN_HEADER = ["processes", "threads/process", "batch size", "rows", "wall s", "s/subject", "subjects/hour",
              "mean row s", "peak RSS MB (all)", "peak RSS MB (largest)", "same bytes", "load before-after"]
STAGE1_HEADER = ["stage 1", "subjects", "s", "s/subject", "speed-up", "max abs difference", "same bytes"]


def write_cohort(path: Path, rows: int, seed: int) -> Path:
    from petct_pipeline.phantom import sample_population

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "age", "sex", "weight", "height", "seed"])
        for index, d in enumerate(sample_population(rows, seed)):
            writer.writerow([f"s{index:03d}", f"{d.age:g}", d.sex, f"{d.weight:g}", f"{d.height:g}", seed + index])
    return path


class TreeMemory:
    """Peak resident memory of a process and its descendants, sampled in a thread (psutil, an accelerate dependency)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        import psutil

        self.root, self.interval = psutil.Process(pid), interval
        self.total_mb = self.largest_mb = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        import psutil

        while not self.stop.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            sizes = []
            for process in processes:
                try:
                    sizes.append(process.memory_info().rss / 2**20)
                except psutil.Error:
                    continue
            if sizes:
                self.total_mb, self.largest_mb = max(self.total_mb, sum(sizes)), max(self.largest_mb, max(sizes))
            self.stop.wait(self.interval)

    def close(self) -> tuple[float, float]:
        self.stop.set()
        self.thread.join()
        return round(self.total_mb, 1), round(self.largest_mb, 1)


def run_command(processes: int, threads: int, batch_size: int, cohort: Path, out: Path, model: str, device: str,
                labels: bool, log: Path) -> dict[str, Any]:
    """One configuration: the real CLI in fresh processes; its wall time, memory and manifest figures."""
    generate = ["generate", "--cohort", str(cohort), "--out", str(out), "--model", model, "--batch-size",
                str(batch_size), *([] if labels else ["--no-labels"]),
                *([] if device == "cpu" else ["--device", device])]
    if processes == 1:
        command = [sys.executable, "-m", "petct_pipeline", *generate]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                   "--num_machines", "1", "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend",
                   "no", "-m", "petct_pipeline", *generate]
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (str(harness.REPO), env.get("PYTHONPATH", "")) if p)})
    if device == "cpu":
        env["ACCELERATE_USE_CPU"] = "true"
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.Popen(command, cwd=harness.REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
        memory = TreeMemory(process.pid)
        code = process.wait()
    wall = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    total_mb, largest_mb = memory.close()
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited {code}; see the end of {log}:\n{log.read_text()[-3000:]}")
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    rows = len(records)
    return {"processes": processes, "threads": threads, "batch_size": batch_size, "rows": rows,
            "wall_s": round(wall, 1), "s_per_subject": round(wall / rows, 2),
            "subjects_per_hour": round(3600 * rows / wall, 1),
            "mean_row_s": round(statistics.mean(r["seconds"] for r in records), 2),
            "peak_rss_mb": total_mb, "peak_rss_largest_mb": largest_mb,
            "load_1min": [round(load_before, 2), round(load_after, 2)],
            "recorded_threads": sorted({r["threads"] for r in records}),
            "ranks": sorted({r["rank"] for r in records}),
            "files": {entry["path"]: entry["sha256"] for r in records for entry in r["files"]}}


def stage1_batching(model: str, cohort: Path, batch_sizes: list[int], device: str) -> list[list[Any]]:
    """Stage 1 per subject (what the CLI runs) against one batched call per B subjects: time and max difference."""
    import torch

    from petct_pipeline.cohort import read_cohort

    _, pipe = harness.load_pipeline(model, device)
    rows = read_cohort(cohort)
    subjects = [row.demographics for row in rows]

    def generators(chunk: list[Any]) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(row.seed) for row in chunk]

    with torch.no_grad():
        pipe.sample_base(subjects[:1], generator=generators(rows[:1]))  # warm-up: kernels for the shapes
        start = time.perf_counter()
        single = torch.cat([pipe.sample_base([s], generator=generators([row])) for s, row in zip(subjects, rows)])
        harness.synchronize(device)
        single_s = time.perf_counter() - start
        table = [["one call per subject", len(rows), round(single_s, 1), round(single_s / len(rows), 2), 1.0, 0.0,
                  True]]
        for size in (b for b in batch_sizes if b > 1):
            start = time.perf_counter()
            batched = torch.cat([pipe.sample_base(subjects[i : i + size], generator=generators(rows[i : i + size]))
                                 for i in range(0, len(rows), size)])
            harness.synchronize(device)
            seconds = time.perf_counter() - start
            difference = float((batched - single).abs().max())
            table.append([f"batched, B={size}", len(rows), round(seconds, 1), round(seconds / len(rows), 2),
                          round(single_s / seconds, 2), difference, bool(torch.equal(batched, single))])
    return table


def _run_cells(run: dict[str, Any]) -> list[Any]:
    return [run["processes"], run["threads"], run["batch_size"], run["rows"], run["wall_s"], run["s_per_subject"],
            run["subjects_per_hour"], run["mean_row_s"], run["peak_rss_mb"], run["peak_rss_largest_mb"],
            run["same_bytes"], "-".join(f"{v:g}" for v in run["load_1min"])]


def render_markdown(result: dict[str, Any]) -> str:
    lines = [f"{result['rows']} rows of the shipped demo model's demographics (`sample_population({result['rows']}, "
             f"{result['seed']})`), labels {'on' if result['labels'] else 'off'}, device {result['device']}, "
             f"{result['cpu_count']} CPUs. Wall time covers the whole command (start-up and model loading "
             "included); `same bytes`: every row file has the sha256 of the first run with the same threads per "
             "process; `load`: the machine's 1-minute load average before and after the run (other work shares "
             "the cores).", "", *harness.markdown_table(RUN_HEADER, [_run_cells(run) for run in result["runs"]])]
    if result.get("stage1"):
        lines += ["", "Stage 1 alone, one process: what batching the network across rows would buy, and what it "
                  "would cost in bytes (max |difference| of the model-space volumes against one call per "
                  "subject):", "", *harness.markdown_table(STAGE1_HEADER, result["stage1"])]
    return "\n".join(lines) + "\n"


def headline_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"processes": run["processes"], "threads/process": run["threads"], "batch size": run["batch_size"],
             "s/subject": run["s_per_subject"], "subjects/hour": run["subjects_per_hour"],
             "peak RSS MB": run["peak_rss_mb"], "same bytes": run["same_bytes"]} for run in result["runs"]]


BENCHMARK = harness.Benchmark("cohort", __doc__, __file__, render_markdown, headline_rows)


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__, model=True, tag=True)
    parser.add_argument("--rows", type=int, default=8, help="cohort rows")
    parser.add_argument("--seed", type=int, default=0, help="population seed (row seeds follow it)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8], help="--batch-size values")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (one process per GPU)")
    parser.add_argument("--no-labels", dest="labels", action="store_false", help="run with --no-labels")
    parser.add_argument("--skip-stage1", action="store_true", help="skip the stage-1 batching measurement")
    args = parser.parse_args(argv)
    model = harness.resolve_model(args.model)
    cpus = os.cpu_count() or 1
    plan = [(p, max(1, cpus // p), b) for p in args.processes for b in args.batch_sizes]
    if args.device == "cpu" and max(args.processes) > 1 and cpus // max(args.processes) != cpus:
        plan.append((1, max(1, cpus // max(args.processes)), 1))  # the byte reference of the multi-process runs

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_cohort_") as folder:
        cohort = write_cohort(Path(folder) / "cohort.csv", args.rows, args.seed)
        for processes, threads, batch_size in plan:
            name = f"p{processes}_t{threads}_b{batch_size}"
            run = run_command(processes, threads, batch_size, cohort, Path(folder) / name, model, args.device,
                              args.labels, Path(folder) / f"{name}.log")
            reference = next((r for r in runs if r["threads"] == threads), None)
            run["same_bytes"] = None if reference is None else run["files"] == reference["files"]
            runs.append(run)
            print(f"{name}: {run['s_per_subject']} s/subject, {run['subjects_per_hour']} subjects/hour, peak "
                  f"{run['peak_rss_mb']} MB", flush=True)
        for run in runs:  # the first of each thread count is its group's reference: same as itself if others agree
            if run["same_bytes"] is None:
                others = [r["same_bytes"] for r in runs if r is not run and r["threads"] == run["threads"]]
                run["same_bytes"] = all(others) if others else None
        stage1 = None if args.skip_stage1 else stage1_batching(model, cohort, args.batch_sizes, args.device)
    for run in runs:
        run.pop("files")
    model_config = harness.model_info(model)
    result = {"rows": args.rows, "seed": args.seed, "labels": args.labels, "device": args.device, "cpu_count": cpus,
              "runs": runs, "stage1": stage1}
    config = {**model_config, **harness.sampling(model_config), "rows": args.rows, "seed": args.seed,
              "labels": args.labels, "device": args.device, "process_counts": args.processes,
              "batch_sizes": args.batch_sizes}
    print(BENCHMARK.save(args.tag, config, result, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
