"""The Space under load and abuse (issue 25), through gradio_client against a real server on 127.0.0.1.

The app serves the tiny random pipeline (tests/helpers/space_server.py), so what is tested is the
server: its bounded queue, its refusals, its file routes and its memory; not the model's speed.
Figures go to test-artifacts/space_load.json (docs/reliability.md quotes them).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

import pytest

from tests.helpers.space_server import REPO, run_space_server

DISPLAY = ("Fused PET/CT", "Soft tissue", 5.0, 0.6, True, False, False)
GOOD = {"age": 40, "sex": "F", "weight": 70, "height": 170, "seed": 0, "steps": 1, "sr_steps": 1, "guidance": 1.0,
        "prior": 0.6, "diagnosis": "NEGATIVE"}
CLIENTS, REQUESTS = 8, 20
#: what gradio says when the bounded queue is full
BUSY = ("queue is full", "Queue is full", "too many", "busy")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from run_space_server(tmp_path_factory.mktemp("space_load"))


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


def _figures(**values) -> None:
    path = REPO / "test-artifacts" / "space_load.json"
    path.parent.mkdir(exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**current, **values}, indent=2) + "\n")


@pytest.mark.slow
def test_concurrent_clients_are_answered_or_told_the_queue_is_full(server):
    from gradio_client import Client

    outcomes: Counter[str] = Counter()
    others: list[str] = []
    lock = threading.Lock()

    def client_run(index: int) -> None:
        """One user: 20 requests, each sent when the last is answered (a burst is the next test)."""
        client = Client(server.url, verbose=False)
        for n in range(REQUESTS):
            job = client.submit(*{**GOOD, "seed": index * 100 + n}.values(), *DISPLAY, api_name="/generate")
            try:
                job.result(timeout=600)
                outcome = "answered"
            except Exception as error:  # gradio_client raises its own types for a refused or failed job
                message = str(error)
                outcome = "busy" if any(word in message for word in BUSY) else "other"
                if outcome == "other":
                    with lock:
                        others.append(f"{type(error).__name__}: {message}")
            with lock:
                outcomes[outcome] += 1

    threads = [threading.Thread(target=client_run, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _figures(clients=CLIENTS, requests_per_client=REQUESTS, outcomes=dict(outcomes), other_errors=others[:5])
    assert outcomes["answered"] + outcomes["busy"] == CLIENTS * REQUESTS, others[:5]
    assert outcomes["answered"] >= 1 and server.process.poll() is None
    assert "Traceback" not in server.log(), server.log()[-3000:]
    assert Client(server.url, verbose=False).predict(*GOOD.values(), *DISPLAY, api_name="/generate")  # still serving


@pytest.mark.slow
def test_a_burst_beyond_the_queue_bound_is_refused_as_busy_not_dropped(server):
    """More jobs at once than the queue holds (QUEUE_MAX_SIZE): the excess is refused with gradio's
    queue-full message, the rest answered; nothing else."""
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    burst = 3 * 16
    jobs = [client.submit(*{**GOOD, "seed": 5000 + n}.values(), *DISPLAY, api_name="/generate") for n in range(burst)]
    outcomes: Counter[str] = Counter()
    others = []
    for job in jobs:
        try:
            job.result(timeout=600)
            outcomes["answered"] += 1
        except Exception as error:
            busy = any(word in str(error) for word in BUSY)
            outcomes["busy" if busy else "other"] += 1
            others += [] if busy else [f"{type(error).__name__}: {error}"]
    _figures(burst=burst, burst_outcomes=dict(outcomes), burst_other_errors=others[:5])
    assert outcomes["busy"] >= 1 and outcomes["answered"] >= 1 and outcomes["other"] == 0, (outcomes, others[:5])
    assert server.process.poll() is None


@pytest.mark.slow
@pytest.mark.parametrize("field,value", [("age", "forty"), ("age", None), ("age", [40]), ("weight", True),
                                         ("height", {"cm": 170}), ("sex", 1.5), ("steps", 2.5), ("steps", "1e9"),
                                         ("seed", -1), ("guidance", float("nan")), ("diagnosis", 7)])
def test_wrong_types_sent_to_the_api_are_refused_with_a_message(server, field, value):
    from gradio_client import Client

    before = server.generations()
    with pytest.raises(Exception) as error:
        Client(server.url, verbose=False).predict(*{**GOOD, field: value}.values(), *DISPLAY, api_name="/generate")
    message = str(error.value)
    assert "Traceback" not in message and message.strip(), message
    assert server.generations() == before and server.process.poll() is None


@pytest.mark.slow
@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../etc/passwd", "..%2F..%2F..%2Fetc%2Fpasswd",
                                    "%2Fetc%2Fpasswd", "MODEL/model_index.json", "REPO/setup.cfg"])
def test_no_file_outside_the_apps_temporary_files_can_be_downloaded(server, target):
    target = target.replace("MODEL", str(server.model_dir)).replace("REPO", str(REPO))
    for route in ("gradio_api/file=", "file=", "gradio_api/file/", "static/", "assets/"):
        url = server.url + route + (target if "%" in target else urllib.parse.quote(target, safe="/"))
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            assert error.code in (400, 403, 404, 405), (url, error.code)
            continue
        assert b"root:" not in body and b"[metadata]" not in body and b"_class_name" not in body, url


@pytest.mark.slow
def test_memory_stays_flat_over_50_generations(server):
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    for n in range(5):  # warm-up: imports, first allocations, caches
        client.predict(*{**GOOD, "seed": 1000 + n}.values(), *DISPLAY, api_name="/generate")
    warm = _rss_mb(server.pid)
    for n in range(50):
        client.predict(*{**GOOD, "seed": 2000 + n}.values(), *DISPLAY, api_name="/generate")
    after = _rss_mb(server.pid)
    _figures(rss_mb_after_warmup=round(warm, 1), rss_mb_after_50=round(after, 1),
             rss_growth_mb=round(after - warm, 1))
    assert after - warm < 0.5 * warm, f"RSS grew from {warm:.0f} MB to {after:.0f} MB over 50 generations"


def test_a_fractional_step_count_is_refused_not_rounded():
    """Found by the wrong-types test: the API (no slider) took steps=2.5 and quietly sampled 2 steps."""
    import gradio as gr
    from app import sampling_from_inputs

    with pytest.raises(gr.Error, match="Stage-1 steps must be a whole number, got 2.5"):
        sampling_from_inputs(0, 2.5, 1, 1.0, 0.6)
    with pytest.raises(gr.Error, match="Super-resolution steps must be a whole number"):
        sampling_from_inputs(0, 2, 1.5, 1.0, 0.6)
    assert sampling_from_inputs(3, 2.0, 1, 1.0, 0.6)[:3] == (3, 2, 1)


def test_download_folders_older_than_the_age_limit_are_removed_when_a_new_one_is_made(tmp_path, monkeypatch):
    """The Space writes each generation's downloads to a fresh folder; the next generation removes stale ones."""
    import os
    import time

    import app

    monkeypatch.setattr(app, "OUTPUT_ROOT", tmp_path / "petct-space")
    stale, recent = app.new_output_dir(), app.new_output_dir()
    (stale / "pet_suv.nii.gz").write_bytes(b"x" * 1024)
    (recent / "pet_suv.nii.gz").write_bytes(b"x" * 1024)
    old = time.time() - app.OUTPUT_MAX_AGE_S - 60
    os.utime(stale, (old, old))
    fresh = app.new_output_dir()
    assert not stale.exists(), "a download folder past OUTPUT_MAX_AGE_S was kept"
    assert recent.is_dir() and (recent / "pet_suv.nii.gz").is_file() and fresh.is_dir()
    assert sorted(p.name for p in (tmp_path / "petct-space").iterdir()) == sorted([recent.name, fresh.name])
