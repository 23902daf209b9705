"""What every benchmark needs once: arguments, memory, fresh processes, Markdown tables, and its results file.

Each benchmark keeps one results file pair, ``results/<benchmark>.json`` and ``.md``, instead of a
file per configuration. The JSON holds a list of runs; a run is its configuration (the run's key:
a rerun with the same configuration replaces it), a label (the benchmark's ``--tag``), the command
that made it, date, revision and machine, headline rows and the full result with the benchmark's
own detail tables. The Markdown is rendered from it: one table whose columns are the
configuration and the headline figures, then every run's detail tables under its label, so a
figure quoted elsewhere is found by benchmark and label.

    python benchmarks/harness.py render            # redraw every results/*.md from its .json
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
RESULTS = ROOT / "results"
#: the held-out phantoms of the model card (`petct phantom --n 120 --seed 1000 ... --out data/phantoms_heldout`)
HELD_OUT = REPO / "data" / "phantoms_heldout"


# ----------------------------------------------------------------------------- arguments
def argument_parser(doc: str | None, *, model: bool = False, reference: str | None = None, cache_dir: bool = False,
                    tag: bool = False) -> argparse.ArgumentParser:
    """A parser whose --help shows the benchmark's whole docstring (its commands and what it measures), with the
    options most benchmarks share: ``--model``, a reference folder (``reference`` names its flag), ``--cache-dir``
    and ``--tag``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if model:
        parser.add_argument("--model", default=None, help="pipeline folder or Hub id (default: the shipped weights)")
    if reference:
        parser.add_argument(reference, type=Path, default=HELD_OUT,
                            help="held-out studies in the AutoPET layout (default: data/phantoms_heldout)")
    if cache_dir:
        parser.add_argument("--cache-dir", type=Path, default=REPO / "data" / "cache",
                            help="preprocessing cache root (shared with training/train.py --cache_dir)")
    if tag:
        parser.add_argument("--tag", default="cpu", help="the run's label in the results file")
    return parser


def resolve_model(model: str | None) -> str:
    """``--model`` or the shipped weights."""
    from petct_pipeline.checkpoints import default_model

    return str(model or default_model())


def load_pipeline(model: str | None, device: Any = "cpu") -> tuple[str, Any]:
    """``--model`` (or the shipped weights) and its pipeline on ``device``, progress bars off (they would flood the
    benchmark's log)."""
    from petct_pipeline import PETCTPipeline

    model = resolve_model(model)
    pipe = PETCTPipeline.from_pretrained(model).to(device)
    pipe.set_progress_bar_config(disable=True)
    return model, pipe


# ----------------------------------------------------------------------------- devices and memory
def synchronize(device: Any) -> None:
    """Wait for queued CUDA work, so a wall time covers it (no-op on CPU)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: Any = "cpu") -> float:
    """Peak memory of this process so far: max allocated CUDA memory on a GPU, peak RSS on CPU."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def current_rss_mb() -> float:
    """This process's resident memory now (the baseline a peak is compared with); NaN off Linux."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return math.nan


def machine_info() -> dict[str, Any]:
    """What a figure depends on besides the configuration: host, Python, numpy, torch, threads, GPU."""
    import numpy
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count(), "python": platform.python_version(),
                            "numpy": numpy.__version__, "torch": torch.__version__, "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ----------------------------------------------------------------------------- processes
def _worker(results: Any, function: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    try:
        results.put(("ok", function(**kwargs)))
    except BaseException as error:  # report, never leave the parent waiting
        results.put(("error", f"{type(error).__name__}: {error}"))


def in_fresh_process(function: Callable[..., Any], **kwargs: Any) -> Any:
    """``function(**kwargs)`` in a new spawned process, so its peak memory belongs to that measurement alone.

    ``function`` must be importable (module level). A worker that dies without answering (killed for
    memory, segfault) raises instead of hanging."""
    context = mp.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_worker, args=(results, function, kwargs))
    process.start()
    while True:
        try:
            status, value = results.get(timeout=5)
            break
        except queue.Empty:
            if not process.is_alive():
                raise RuntimeError(f"benchmark worker {function.__name__}({kwargs}) died "
                                   f"(exit {process.exitcode})") from None
    process.join()
    if status != "ok":
        raise RuntimeError(f"benchmark worker {function.__name__}: {value}")
    return value


def run_petct(command: list[str]) -> float:
    """Run a ``petct`` command with this interpreter, stream its output, return the wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "petct_pipeline.cli", *command], check=True, cwd=REPO)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- configuration
def relative(path: str | Path) -> str:
    """A path as the results files name it: relative to the repository when inside it (followed through links
    or not), else as given (a Hub id, a folder elsewhere)."""
    path = Path(path)
    for candidate in (path.absolute(), path.resolve()):
        try:
            return str(candidate.relative_to(REPO))
        except ValueError:
            continue
    return str(path)


def _trained_steps(record: dict[str, Any] | None, stage: str) -> int | str | None:
    """A stage's optimisation steps from its provenance record; ``A+B`` for B steps fine-tuned from A."""
    if not record or "global_step" not in record:
        return None
    source = (record.get("init_weights") or {}).get("source") or {}
    before = _trained_steps(source if "global_step" in source else source.get(stage), stage)
    return record["global_step"] if before is None else f"{before}+{record['global_step']}"


def model_info(model: str, stage1: bool = True, sr: bool = True) -> dict[str, Any]:
    """The weights a run used, from the pipeline folder's ``training_provenance.json``: training steps of
    the stages the benchmark runs and (for stage 1) the demographic prior's channels. Unknown (a Hub id
    not in the local cache): None."""
    folder = Path(model)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(model, local_files_only=True))
        except Exception:  # not cached or not a repo id: the figures stand, the provenance is unknown
            folder = Path(os.devnull)
    provenance_file, index_file = folder / "training_provenance.json", folder / "model_index.json"
    provenance = json.loads(provenance_file.read_text()) if provenance_file.is_file() else {}
    info: dict[str, Any] = {"model": relative(model)}
    if stage1:
        info["stage1_trained_steps"] = _trained_steps(provenance.get("base"), "base")
    if sr:
        info["sr_trained_steps"] = _trained_steps(provenance.get("sr"), "sr")
    if stage1 and index_file.is_file():
        has_prior = (json.loads(index_file.read_text()).get("demographic_prior") or [None])[0] is not None
        channels = provenance.get("prior", {}).get("channels", ["ct"])
        info["demographic_prior"] = "+".join(channels) if has_prior else "none"
    elif stage1:
        info["demographic_prior"] = None
    return info


def sampling(model_config: dict[str, Any], steps: int | None = None, sr_steps: int | None = None,
             guidance: float | None = None, prior_scale: float | None = None,
             back_projection_iterations: int | None = None) -> dict[str, Any]:
    """The sampling settings a pipeline call with these arguments uses (None: the pipeline's default), so a
    run's configuration stays true when the defaults change. ``model_config`` is ``model_info``'s."""
    from petct_pipeline.pipeline_petct import (
        DEFAULT_BACK_PROJECTION_ITERATIONS,
        DEFAULT_PRIOR_SCALE,
        DEFAULT_SR_STEPS,
        DEFAULT_STEPS,
        default_guidance_scale,
    )

    prior = model_config.get("demographic_prior")  # None: the weights are unknown, and so is their default
    if prior_scale is None and prior is not None:
        prior_scale = DEFAULT_PRIOR_SCALE if prior != "none" else 0.0
    if guidance is None and prior_scale is not None:
        guidance = default_guidance_scale(prior_scale)
    return {"stage1_steps": steps or DEFAULT_STEPS, "sr_steps": sr_steps or DEFAULT_SR_STEPS, "guidance": guidance,
            "prior_scale": prior_scale,
            "back_projection_iterations": (DEFAULT_BACK_PROJECTION_ITERATIONS if back_projection_iterations is None
                                           else back_projection_iterations)}


def command_line(script: str | Path, argv: Sequence[str] | None = None) -> str:
    """The command that reproduces this run: ``python benchmarks/<script> <arguments>``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", relative(script), *arguments])


@lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The repository's commit, ``+dirty`` when tracked files outside the results differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":!benchmarks/results"], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if status.stdout.strip() else "")


# ----------------------------------------------------------------------------- Markdown
def format_cell(value: Any) -> str:
    """One table cell: '-' for missing, yes/no, lists space-separated, floats without trailing noise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return " ".join(format_cell(v) for v in value) if value else "-"
    return str(value)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines; cells already formatted as strings are kept as they are."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell if isinstance(cell, str) else format_cell(cell) for cell in row) + " |"
              for row in rows]
    return lines


# ----------------------------------------------------------------------------- results
@dataclass
class Run:
    """One run of a benchmark as its results file keeps it."""

    label: str
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    result: dict[str, Any]
    markdown: str
    command: str = field(default_factory=lambda: command_line(sys.argv[0]))
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%d"))
    revision: str | None = field(default_factory=git_revision)
    machine: dict[str, Any] | None = field(default_factory=machine_info)
    #: the per-configuration file a collated run was converted from (``collate_legacy``)
    source: str | None = None


def table_rows(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """A detail table's rows as collated rows (column -> cell), for benchmarks whose table is their headline."""
    return [dict(zip(header, row, strict=True)) for row in rows]


@dataclass(frozen=True)
class Benchmark:
    """A benchmark as its results file knows it: ``results/<name>.json``, titled by the docstring's first line;
    ``render`` draws a result's detail Markdown, ``headline`` its rows in the collated table, or ``table`` gives
    (header, rows) of a benchmark whose detail table is its headline."""

    name: str
    doc: str
    script: str
    render: Callable[[dict[str, Any]], str]
    headline: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None
    table: Callable[[dict[str, Any]], tuple[Sequence[str], list[list[Any]]]] | None = None

    @property
    def title(self) -> str:
        return self.doc.strip().splitlines()[0]

    def run(self, label: str, config: dict[str, Any], result: dict[str, Any], argv: Sequence[str] | None = None,
            markdown: str | None = None, **fields: Any) -> Run:
        """The run record of ``result``; ``fields`` override what defaults to this process (command, date, ...)."""
        fields.setdefault("command", command_line(self.script, argv))
        rows = self.headline(result) if self.headline else table_rows(*self.table(result))
        return Run(label=label, config=config, rows=rows, result=result,
                   markdown=self.render(result) if markdown is None else markdown, **fields)

    def save(self, label: str, config: dict[str, Any], result: dict[str, Any], argv: Sequence[str] | None = None,
             folder: Path = RESULTS) -> str:
        """Record ``result`` as the run of ``config`` in the results file; returns its Markdown (what the benchmark
        prints)."""
        run = self.run(label, config, result, argv)
        save_run(self.name, run, self.title, folder, self.script)
        return run.markdown


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists, paths strings), so configurations compare."""
    return json.loads(json.dumps(value, default=str))


def _write_atomic(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(text)
    os.replace(handle.name, path)


def load_results(benchmark: str, folder: Path = RESULTS) -> dict[str, Any]:
    """``results/<benchmark>.json`` (an empty one when the benchmark has not run yet)."""
    path = folder / f"{benchmark}.json"
    if path.is_file():
        return json.loads(path.read_text())
    return {"benchmark": benchmark, "title": benchmark, "script": f"benchmarks/bench_{benchmark}.py", "runs": []}


def save_run(benchmark: str, run: Run, title: str, folder: Path = RESULTS, script: str | None = None) -> Path:
    """Add ``run`` to ``results/<benchmark>.json`` (replacing the run with the same configuration, in place),
    redraw ``results/<benchmark>.md`` and return its path. A label another configuration already uses
    gets a suffix, so every run stays findable by its label."""
    folder.mkdir(parents=True, exist_ok=True)
    collated = load_results(benchmark, folder)
    collated["title"] = title
    collated["script"] = relative(script) if script else collated["script"]
    record = _plain(asdict(run))
    runs = collated["runs"]
    same = next((i for i, old in enumerate(runs) if old["config"] == record["config"]), None)
    taken = {old["label"] for i, old in enumerate(runs) if i != same}
    label, n = record["label"], 2
    while record["label"] in taken:
        record["label"], n = f"{label}-{n}", n + 1
    if record["label"] != label:
        print(f"label {label!r} is another configuration's: this run is {record['label']!r}", flush=True)
    if same is None:
        runs.append(record)
    else:
        runs[same] = record
    _write_atomic(folder / f"{benchmark}.json", json.dumps(collated, indent=1, default=str) + "\n")
    markdown = folder / f"{benchmark}.md"
    _write_atomic(markdown, render_results(collated))
    return markdown


def _demote(markdown: str, levels: int) -> str:
    """A run's own Markdown as a subsection: its headings ``levels`` deeper."""
    return "\n".join("#" * levels + line if line.startswith("#") else line for line in markdown.splitlines())


def render_results(collated: dict[str, Any]) -> str:
    """The results Markdown: configuration common to all runs, one table (configuration columns, then the
    headline figures; a run with several result rows has one line per row), then each run's details."""
    runs = collated["runs"]
    config_keys = list(dict.fromkeys(k for run in runs for k in run["config"]))
    common = {k: runs[0]["config"].get(k) for k in config_keys
              if len(runs) > 1 and all(_plain(run["config"].get(k)) == _plain(runs[0]["config"].get(k))
                                       for run in runs)}
    varying = [k for k in config_keys if k not in common]
    row_keys = list(dict.fromkeys(k for run in runs for row in run["rows"] for k in row))
    lines = [f"# {collated['title']}", "",
             f"`python {collated['script']}`: one run per configuration (rerunning a configuration replaces its "
             "run), one line per result row, the configuration on a run's first line. `run` is the run's label "
             "(`--tag`); each run's command, machine and detail tables follow the table, under its label. "
             f"Rendered from `{collated['benchmark']}.json`.", ""]
    if common:
        lines += ["Common to all runs: " + "; ".join(f"{k.replace('_', ' ')} {format_cell(v)}"
                                                     for k, v in common.items()) + ".", ""]
    header = ["run", *(k.replace("_", " ") for k in varying), *(k.replace("_", " ") for k in row_keys)]
    table = []
    for run in runs:
        for position, row in enumerate(run["rows"] or [{}]):
            config = [run["label"], *(run["config"].get(k) for k in varying)] if position == 0 else [""] * (
                1 + len(varying))
            table.append([*config, *(row.get(k) for k in row_keys)])
    lines += markdown_table(header, table)
    lines += ["", "## Runs"]
    for run in runs:
        machine = run.get("machine") or {}
        host = [machine.get("gpu") or machine.get("processor") or machine.get("platform"),
                machine.get("threads") and f"{machine['threads']} threads"]
        facts = [f"`{run['command']}`", run.get("date"), run.get("revision") and f"revision {run['revision']}",
                 ", ".join(str(h) for h in host if h), run.get("source") and f"converted from `{run['source']}`"]
        lines += ["", f"### {run['label']}", "", "; ".join(str(f) for f in facts if f) + ".", "",
                  _demote(run["markdown"].rstrip("\n"), 3)]
    return "\n".join(lines) + "\n"


def render_all(folder: Path = RESULTS) -> list[Path]:
    """Redraw every results Markdown from its JSON (after editing a run's record by hand, say)."""
    written = []
    for path in sorted(folder.glob("*.json")):
        collated = json.loads(path.read_text())
        if "runs" in collated:
            _write_atomic(path.with_suffix(".md"), render_results(collated))
            written.append(path.with_suffix(".md"))
    return written


def legacy_files(benchmark: str, folder: Path = RESULTS) -> list[tuple[str, Path]]:
    """The per-configuration files the benchmarks wrote before the collated layout, as (tag, JSON path):
    ``<benchmark>_<tag>.json`` beside an optional ``.md``."""
    prefix = f"{benchmark}_"
    return sorted((path.stem[len(prefix):], path) for path in folder.glob(f"{prefix}*.json"))


def collate_legacy(benchmark: str, convert: Callable[[str, dict[str, Any], str | None], Run], title: str,
                   folder: Path = RESULTS, remove: bool = True, order: Callable[[str], Any] | None = None) -> list[str]:
    """Move every ``<benchmark>_<tag>.json`` (+ ``.md``) of ``folder`` into ``<benchmark>.json`` as a run:
    ``convert(tag, payload, markdown or None)`` makes the run (the old Markdown is kept verbatim as the
    run's details, so no figure is lost), in the order ``order(tag)`` sorts them (default: by tag).
    Returns the tags converted."""
    tags = []
    for tag, path in sorted(legacy_files(benchmark, folder), key=lambda pair: order(pair[0]) if order else pair[0]):
        markdown_path = path.with_suffix(".md")
        markdown = markdown_path.read_text() if markdown_path.is_file() else None
        run = convert(tag, json.loads(path.read_text()), markdown)
        run.source = path.name
        same = [old["label"] for old in load_results(benchmark, folder)["runs"] if old["config"] == _plain(run.config)]
        if same:
            print(f"{path.name}: same configuration as run {same[0]!r}, which it replaces", flush=True)
        save_run(benchmark, run, title, folder)
        tags.append(tag)
        if remove:
            path.unlink()
            markdown_path.unlink(missing_ok=True)
    return tags


if __name__ == "__main__":
    if sys.argv[1:] != ["render"]:
        raise SystemExit("usage: python benchmarks/harness.py render")
    for written in render_all():
        print(f"wrote {relative(written)}")
