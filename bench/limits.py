"""Large workflows through the real API and workers: submission time and peak memory,
and a 100,000-element ``foreach`` end to end beside a plain Celery ``group``.

Starts a Redis, a MongoDB-protocol server (``MONGO_URL``, else nx-27017), one worker
(prefork, 2 processes, chordflow's tasks plus a no-op) and ``chordflow api`` (auth off),
then for workflows of 1,000 and 20,000 ``echo`` steps and ``foreach`` steps of 10,000
and 100,000 elements: the time ``POST /api/v1/runs`` takes, the time the run takes to
finish, and the peak resident memory (``VmHWM``) of the API process and of the largest
worker process so far (peaks only grow: the workloads run smallest first). Then the
same 100,000 no-ops as one plain Celery ``group`` on the same worker.

    python bench/limits.py [--quick]

``--quick`` divides every size by ten (a smoke test of the benchmark itself).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from celery import group  # noqa: E402
from chordflow.workers.celery_app import make_celery  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.servers import (  # noqa: E402
    free_port,
    mongo_server,
    redis_server,
    stop_group,
    wait_for_port,
    worker_env,
)

ROOT = Path(__file__).resolve().parent.parent
CHORDFLOW = str(Path(sys.executable).parent / "chordflow")


def peak_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def steps_doc(n: int) -> dict[str, Any]:
    """n echo steps in chains of ten."""
    return {"name": f"steps{n}", "steps": [
        {"name": f"s{i}", "module": "echo", "params": {"n": i},
         **({"depends_on": [f"s{i - 1}"]} if i % 10 else {})} for i in range(n)]}


def foreach_doc(n: int) -> dict[str, Any]:
    return {"name": f"foreach{n}", "steps": [
        {"name": "each", "module": "echo", "foreach": list(range(n)),
         "params": {"n": "${item}"}}]}


def run_via_api(http: httpx.Client, doc: dict[str, Any]) -> tuple[float, float]:
    """(seconds the submission took, seconds until the run finished)."""
    t0 = time.perf_counter()
    answer = http.post("/api/v1/runs", json={"workflow": doc})
    submitted = time.perf_counter() - t0
    answer.raise_for_status()
    run_id = answer.json()["run_id"]
    while True:
        # The run's summary, not its detail: the detail of a 100,000-element foreach
        # is every element. A 503 (the store too busy to answer in time) is retried.
        page = http.get("/api/v1/runs", params={"workflow": doc["name"], "limit": 1})
        runs = page.json().get("runs", []) if page.status_code == 200 else []
        status = runs[0]["status"] if runs and runs[0]["run_id"] == run_id else "running"
        if status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(1.0)
    assert status == "succeeded", status
    return submitted, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    workloads = [("workflow", 1_000 // scale), ("workflow", 20_000 // scale),
                 ("foreach", 10_000 // scale), ("foreach", 100_000 // scale)]
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="chordflow-limits-"))
    with redis_server() as (broker, _, _), mongo_server() as mongo:
        env = worker_env(broker, mongo, f"limits{uuid.uuid4().hex[:8]}", workdir,
                         CHORDFLOW_VISIBILITY_TIMEOUT="3600", CHORDFLOW_API_AUTH="false")
        with (workdir / "worker.log").open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bench.celery_tasks", "worker",
                 "-c", "2", "-P", "prefork", "-l", "WARNING", "-Q", "chordflow",
                 "--without-mingle", "--without-gossip", "-n", "limits@%h"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=ROOT)
        port = free_port()
        with (workdir / "api.log").open("wb") as out:
            api = subprocess.Popen([CHORDFLOW, "api", "--host", "127.0.0.1", "--port",
                                    str(port)], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        try:
            wait_for_port(port, api, log=workdir / "api.log")
            time.sleep(3)
            table = Table(title="Large runs: the API (auth off) and one worker (2 prefork "
                                "processes), Redis, the MongoDB-protocol server")
            for col in ("workload", "submit (s)", "end to end (s)", "API peak RSS (MiB)",
                        "worker process peak RSS (MiB)"):
                table.add_column(col, justify="left" if col == "workload" else "right")
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as http:
                run_via_api(http, steps_doc(10))  # warm up
                ours = 0.0
                for kind, n in workloads:
                    doc = steps_doc(n) if kind == "workflow" else foreach_doc(n)
                    submitted, total = run_via_api(http, doc)
                    label = f"{n:,} steps" if kind == "workflow" else f"foreach of {n:,}"
                    worker_peak = max(peak_mib(p) for p in children(worker.pid))
                    table.add_row(label, f"{submitted:.2f}", f"{total:.1f}",
                                  f"{peak_mib(api.pid):.0f}", f"{worker_peak:.0f}")
                    console.print(f"{label}: submit {submitted:.2f} s, {total:.1f} s")
                    ours = total
            console.print(table)
            n = workloads[-1][1]
            app = make_celery_for(env)
            noop = app.signature("bench.noop")
            t0 = time.perf_counter()
            group(noop.clone() for _ in range(n)).apply_async().get(timeout=3600)
            canvas = time.perf_counter() - t0
            peer = Table(title=f"{n:,} elements end to end")
            for col in ("", "plain Celery group", "chordflow foreach", "chordflow / group"):
                peer.add_column(col, justify="right")
            peer.add_row("seconds", f"{canvas:.1f}", f"{ours:.1f}", f"{ours / canvas:.2f}x")
            console.print(peer)
            console.print("chordflow records every element (its status, attempts, "
                          "outputs) in MongoDB and gathers them into the step's outputs; "
                          "the group's no-ops record nothing.")
        finally:
            stop_group(api)
            stop_group(worker)


def make_celery_for(env: dict[str, str]) -> Any:
    from chordflow.config import Settings

    return make_celery(Settings(broker_url=env["CHORDFLOW_BROKER_URL"],
                                mongo_url=env["CHORDFLOW_MONGO_URL"],
                                mongo_db=env["CHORDFLOW_MONGO_DB"]))


if __name__ == "__main__":
    main()
