"""The fault tests' workload under each fault, beside the same workload without one.

For each fault: how many runs succeeded, how many steps wrote their side effect more
than once (or never), how many attempts were taken over, the seconds from the end of
the fault to the end of the last run, and the whole workload's wall time beside the
same workload's without a fault (the difference is what the fault cost, its own
duration included). Each fault strikes once a third of the steps are done (for the
row without one, the same moment is where "fault's end" is measured from).

    python bench/faults.py [--runs 3] [--steps 100] [--outage 30] [--only store,kill]

Faults: ``store`` (MongoDB stopped for ``--outage`` seconds, then started again on the
same port and file), ``kill`` (SIGKILL of a worker's main process and of the pool
process running a step), ``pause`` (a worker and its steps stopped for longer than the
lease), ``redis`` (Redis restarted empty, then ``chordflow resume`` of each run). Two
workers: the one hit (one process) serves only the workload's long steps, the other
(two processes) serves all and runs the beat (reconciler every 5 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chordflow.engine.lease import TAKEOVER_GRACE  # noqa: E402
from chordflow.engine.state import RunStatus  # noqa: E402
from chordflow.service import RunService  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.faults.stack import (  # noqa: E402
    LEASE_SECONDS,
    FaultStack,
    Worker,
    alive,
    fault_stack,
    signal_all,
    wait_until,
)
from tests.faults.workload import LONG_QUEUE, Workload  # noqa: E402


def strike_none(stack: FaultStack, hit: Worker, workload: Workload, service: Any) -> None:
    pass


def strike_store(stack: FaultStack, hit: Worker, workload: Workload, service: Any,
                 outage: float = 30.0) -> None:
    stack.mongo.stop()
    time.sleep(outage)
    stack.mongo.start()


def _mid_sleep(workload: Workload, worker: Worker) -> bool:
    pool = set(worker.pool_pids())
    running = [s for s in workload.started() if s.ppid in pool and alive(s.pid)]
    # Every pool process in a step's sleep: none is recording a step that just ended.
    return {s.ppid for s in running} == pool and all(s.in_the_middle() for s in running)


def strike_kill(stack: FaultStack, hit: Worker, workload: Workload, service: Any) -> None:
    wait_until(lambda: _mid_sleep(workload, hit), timeout=60, poll=0.02)
    pool = set(hit.pool_pids())
    victims = [s.ppid for s in workload.started() if s.ppid in pool and alive(s.pid)]
    os.kill(hit.proc.pid, signal.SIGKILL)
    for pid in victims[:1]:
        os.kill(pid, signal.SIGKILL)


def strike_pause(stack: FaultStack, hit: Worker, workload: Workload, service: Any) -> None:
    wait_until(lambda: _mid_sleep(workload, hit), timeout=60, poll=0.02)
    own = hit.tree()
    pool = set(hit.pool_pids())
    groups = {s.pid for s in workload.started() if s.ppid in pool and alive(s.pid)}
    signal_all(own, signal.SIGSTOP)
    for group in groups:
        os.killpg(group, signal.SIGSTOP)
    # Paused until its steps are taken over (the lease, its grace, and a message or a
    # reconciler pass to find them), as in tests/faults/test_lost_workers.py.
    time.sleep(LEASE_SECONDS + TAKEOVER_GRACE)
    wait_until(lambda: _taken_over(service, workload) >= len(groups), timeout=60)
    signal_all([p for p in own if p not in groups], signal.SIGCONT)
    wait_until(lambda: not any(alive(g) for g in groups), timeout=10)
    for group in groups:
        try:
            os.killpg(group, signal.SIGCONT)
        except ProcessLookupError:
            pass
    signal_all(own, signal.SIGCONT)


def _taken_over(service: Any, workload: Workload) -> int:
    return sum(1 for run_id in workload.run_ids for e in service.engine.store.events(run_id)
               if e.type == "step_taken_over")


def strike_redis(stack: FaultStack, hit: Worker, workload: Workload, service: Any) -> None:
    stack.redis.restart()
    time.sleep(1)
    for run_id in workload.run_ids:
        stack.chordflow("resume", run_id)


FAULTS: dict[str, tuple[str, Callable[..., None]]] = {
    "none": ("no fault", strike_none),
    "store": ("MongoDB stopped {outage:g} s", strike_store),
    "kill": ("SIGKILL worker + pool process", strike_kill),
    "pause": ("SIGSTOP worker > lease", strike_pause),
    "redis": ("Redis restarted empty + resume", strike_redis),
}


def measure(stack: FaultStack, fault: str, args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix=f"bench-faults-{fault}-"))
    workload = Workload(base, steps=args.steps, runs=args.runs, long_every=10,
                        long_sleep=1.0)
    # The worker a fault hits serves the long steps only (it is hit in the middle of
    # their sleep, before their side effects); the other serves every step.
    hit = stack.start_worker("hit", "--queues", LONG_QUEUE, "--concurrency", "1")
    stack.start_worker("other", "--queues", f"chordflow,{LONG_QUEUE}", "--beat",
                       CHORDFLOW_RECONCILE_INTERVAL="5")
    service = RunService.celery(stack.settings())
    try:
        started = time.monotonic()
        workload.submit(service, name=f"bench-{fault}")
        total = workload.steps * workload.runs
        wait_until(lambda: workload.done_lines() >= total // 3, timeout=300, poll=0.05)
        strike = FAULTS[fault][1]
        if fault == "store":
            strike(stack, hit, workload, service, outage=args.outage)
        else:
            strike(stack, hit, workload, service)
        struck = time.monotonic()
        statuses = workload.wait(service, timeout=args.timeout)
        ended = time.monotonic()
        lines = workload.lines()
        takeovers = _taken_over(service, workload)
        return {
            "fault": FAULTS[fault][0].format(outage=args.outage),
            "succeeded": sum(s is RunStatus.SUCCEEDED for s in statuses.values()),
            "runs": len(statuses),
            "duplicates": sum(1 for n in lines.values() if n > 1),
            "missing": total - len(lines),
            "takeovers": takeovers,
            "recovery": ended - struck,
            "wall": ended - started,
        }
    finally:
        service.close()
        stack.stop_workers()
        if stack.redis.proc is None:
            stack.redis.start()
        if stack.mongo.proc is None:
            stack.mongo.start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--only", default=",".join(FAULTS),
                        help="comma-separated faults: " + ", ".join(FAULTS))
    args = parser.parse_args()
    chosen = ["none", *[f for f in args.only.split(",") if f and f != "none"]]
    console = Console(width=150)
    rows = []
    with fault_stack() as stack:
        for fault in chosen:
            console.print(f"[dim]measuring: {fault}[/]")
            rows.append(measure(stack, fault, args))
    baseline = rows[0]["wall"]
    table = Table(title=f"{args.runs} runs x {args.steps}-step random DAG of bash steps, "
                        "a worker of 1 process hit, another of 2")
    for column in ("fault", "runs succeeded", "steps run twice", "steps never run",
                   "taken over", "fault's end -> last run's end", "wall",
                   "wall - no fault's"):
        table.add_column(column, justify="left" if column == "fault" else "right")
    for row in rows:
        table.add_row(row["fault"], f"{row['succeeded']}/{row['runs']}",
                      str(row["duplicates"]), str(row["missing"]), str(row["takeovers"]),
                      f"{row['recovery']:.1f} s", f"{row['wall']:.1f} s",
                      f"{row['wall'] - baseline:+.1f} s")
    console.print(table)


if __name__ == "__main__":
    main()
