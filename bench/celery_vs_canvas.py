"""chordflow on Celery workers vs plain Celery canvas, in one go, on one Redis.

Workloads (the measurements in DESIGN.md): a 100-, 2,000- and 5,000-step chain (ms per
hop), a chain of 50 and of 200 ten-wide chords (seconds), a 2,000-wide fan-out (steps
per second). Plain canvas sends ``chain``/``chord``/``group`` of a no-op task;
chordflow runs the same shapes as workflows of ``echo`` steps, recording every step
in MongoDB (``MONGO_URL``, else an nx-27017 server). Both use the same worker
(prefork, 2 processes, prefetch 1, late acks) started by this script.

    python bench/celery_vs_canvas.py [--quick] [--only chains] [--repeat 3]

``--quick`` runs smaller sizes (a smoke test of the benchmark itself); ``--only chains``
(or ``chords``, ``fanout``; repeatable) runs some workloads only; ``--chains 100,400``
picks the chain lengths. Workloads that take less than ``SHORT_SECONDS`` (the 100-hop
chain takes half a second) are measured ``--repeat`` times, canvas and chordflow
alternating, and each side's median is reported: one half-second sample on a shared
machine says more about the machine than about either side.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from celery import chain, chord, group  # noqa: E402
from chordflow.config import Settings  # noqa: E402
from chordflow.engine.state import RunStatus  # noqa: E402
from chordflow.service import RunService  # noqa: E402
from chordflow.workers.celery_app import make_celery  # noqa: E402
from chordflow.workflow.loader import load_data  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.servers import mongo_server, redis_server, stop_group, worker_env  # noqa: E402


def chain_doc(n: int) -> dict[str, Any]:
    steps = [{"name": "s0", "module": "echo"}]
    steps += [{"name": f"s{i}", "module": "echo", "depends_on": [f"s{i - 1}"]}
              for i in range(1, n)]
    return {"name": f"chain{n}", "steps": steps}


def chords_doc(n: int, width: int = 10) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    prev: list[str] = []
    for c in range(n):
        body = [f"c{c}p{j}" for j in range(width)]
        steps += [{"name": b, "module": "echo", "depends_on": prev} for b in body]
        steps.append({"name": f"c{c}join", "module": "echo", "depends_on": body})
        prev = [f"c{c}join"]
    return {"name": f"chords{n}", "steps": steps}


def fanout_doc(n: int) -> dict[str, Any]:
    return {"name": f"fanout{n}", "steps": [{"name": f"s{i}", "module": "echo"}
                                            for i in range(n)]}


def run_chordflow(service: RunService, doc: dict[str, Any]) -> float:
    plan = service.engine.compile(load_data(doc))
    t0 = time.perf_counter()
    run_id = service.submit(plan)
    status = service.wait(run_id, timeout=3600, poll=0.05)
    elapsed = time.perf_counter() - t0
    assert status is RunStatus.SUCCEEDED, service.report(run_id)["error"]
    return elapsed


def run_canvas(app: Any, kind: str, n: int) -> float:
    noop = app.signature("bench.noop")
    t0 = time.perf_counter()
    if kind == "chain":
        result = chain(noop.clone() for _ in range(n)).apply_async()
        result.get(timeout=3600, disable_sync_subtasks=False)
    elif kind == "chords":
        result = chain(chord([noop.clone() for _ in range(10)], noop.clone())
                       for _ in range(n)).apply_async()
        result.get(timeout=3600, disable_sync_subtasks=False)
    else:
        group(noop.clone() for _ in range(n)).apply_async().get(timeout=3600)
    return time.perf_counter() - t0


#: Workloads faster than this (per sample) are sampled ``--repeat`` times.
SHORT_SECONDS = 5.0


def paired(canvas: Callable[[], float], ours: Callable[[], float],
           repeat: int) -> tuple[float, float]:
    """Both sides' times, as medians of alternating samples if the workload is short."""
    canvas_times, our_times = [canvas()], [ours()]
    if max(canvas_times[0], our_times[0]) < SHORT_SECONDS:
        for _ in range(repeat - 1):
            canvas_times.append(canvas())
            our_times.append(ours())
    return median(canvas_times), median(our_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", action="append", choices=["chains", "chords", "fanout"])
    parser.add_argument("--chains", help="chain lengths, comma-separated")
    parser.add_argument("--repeat", type=int, default=5,
                        help="samples of each short workload (median reported)")
    args = parser.parse_args()
    only = set(args.only or ["chains", "chords", "fanout"])
    chains = ([100, 400] if args.quick else [100, 2000, 5000]) if "chains" in only else []
    if args.chains:
        chains = [int(n) for n in args.chains.split(",")]
    chord_counts = ([10, 30] if args.quick else [50, 200]) if "chords" in only else []
    fan = (400 if args.quick else 2000) if "fanout" in only else 0
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="chordflow-bench-"))
    with redis_server() as (broker, _, _), mongo_server() as mongo:
        db = f"bench{uuid.uuid4().hex[:8]}"
        env = worker_env(broker, mongo, db, workdir, CHORDFLOW_VISIBILITY_TIMEOUT="3600")
        import subprocess

        log = workdir / "worker.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bench.celery_tasks", "worker",
                 "-c", "2", "-P", "prefork", "-l", "WARNING", "-Q", "chordflow",
                 "--without-mingle", "--without-gossip", "-n", "bench@%h"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=Path(__file__).resolve().parent.parent)
        try:
            settings = Settings(broker_url=broker, mongo_url=mongo, mongo_db=db,
                                workdir=workdir, visibility_timeout=3600)
            app = make_celery(settings)
            service = RunService.celery(settings)
            time.sleep(5)
            run_canvas(app, "fanout", 10)  # warm up both
            run_chordflow(service, fanout_doc(10))
            table = Table(title="chordflow vs plain Celery canvas (Redis broker, 2 prefork "
                                "processes; chordflow records every step in MongoDB)")
            for col in ("workload", "unit", "plain canvas", "chordflow", "chordflow gain"):
                table.add_column(col, justify="left" if col == "workload" else "right")
            for n in chains:
                canvas, ours = (t / n * 1000 for t in paired(
                    partial(run_canvas, app, "chain", n),
                    partial(run_chordflow, service, chain_doc(n)), args.repeat))
                table.add_row(f"chain of {n}", "ms/hop", f"{canvas:.1f}", f"{ours:.1f}",
                              f"{canvas / ours:.2f}x")
                console.print(f"chain {n}: {canvas:.1f} vs {ours:.1f}")
            for n in chord_counts:
                canvas, ours = paired(partial(run_canvas, app, "chords", n),
                                      partial(run_chordflow, service, chords_doc(n)),
                                      args.repeat)
                table.add_row(f"{n} ten-wide chords", "s", f"{canvas:.1f}", f"{ours:.1f}",
                              f"{canvas / ours:.2f}x")
                console.print(f"chords {n}: {canvas:.1f} vs {ours:.1f}")
            if fan:
                canvas_s, ours_s = paired(partial(run_canvas, app, "fanout", fan),
                                          partial(run_chordflow, service, fanout_doc(fan)),
                                          args.repeat)
                canvas, ours = fan / canvas_s, fan / ours_s
                table.add_row(f"fan-out of {fan}", "steps/s", f"{canvas:.0f}", f"{ours:.0f}",
                              f"{ours / canvas:.2f}x")
            console.print(table)
            console.print("gain > 1: chordflow faster (higher throughput for the fan-out). "
                          "Targets: 100-hop chain within 1.5x of canvas (gain >= 0.67); "
                          "5,000 hops and 200 chords >= 4x; fan-out >= 0.6x.")
        finally:
            stop_group(worker)


if __name__ == "__main__":
    main()
