"""The fault tests' workload, and what must hold after any fault.

A random DAG of ``bash`` steps; each step records its process ids and start time,
sleeps a little and then appends one line, ``<run id> <step>``, to a side-effect file:
the thing a step must never do twice. Every ``long_every``-th step sleeps
``long_sleep`` seconds on the ``long`` queue: a worker that serves only that queue
runs only steps a fault can hit in the middle of their sleep, before their side
effect. (A worker killed in the few milliseconds between a step's last command and
its record cannot be told from one killed before: that step runs again. Exactly once
holds for a kill anywhere else; see the README, "Durability".) After the fault,
:func:`check` holds the engine to its promises: every run succeeded, every step's line
appears exactly once, no process of any attempt is left alive, and every finished
attempt's events and output were recorded.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chordflow.engine.state import RunStatus, StepStatus

from tests.faults.stack import living_in_groups

#: The queue of the long steps.
LONG_QUEUE = "long"


@dataclass(frozen=True)
class Started:
    pid: int
    ppid: int
    at: float  # UNIX time
    sleep: float

    def in_the_middle(self, margin: float = 0.3) -> bool:
        """Is it sleeping, well before its side effect?"""
        elapsed = time.time() - self.at
        return 0.1 < elapsed < self.sleep - margin


@dataclass
class Workload:
    """``runs`` concurrent runs of a ``steps``-step random DAG, side effects in ``dir``."""

    dir: Path
    steps: int = 100
    runs: int = 3
    seed: int = 7
    sleep: tuple[float, float] = (0.05, 0.3)
    long_every: int = 0
    long_sleep: float = 1.5
    run_ids: list[str] = field(default_factory=list)

    @property
    def sidefx(self) -> Path:
        return self.dir / "sidefx"

    @property
    def pids(self) -> Path:
        return self.dir / "pids"

    def document(self, name: str = "faults", queue: str | None = None) -> dict[str, Any]:
        rng = random.Random(self.seed)
        steps = []
        for i in range(self.steps):
            parents = sorted({f"s{rng.randrange(i)}" for _ in range(rng.randint(0, 3))}) \
                if i else []
            pause = rng.uniform(*self.sleep)
            long = bool(self.long_every) and i % self.long_every == 0
            if long:
                pause = self.long_sleep
            step: dict[str, Any] = {
                "name": f"s{i}", "module": "bash", "depends_on": parents,
                "params": {"cmd": f'echo "$$ $PPID $(date +%s.%N) {pause:.2f}" >> {self.pids}; '
                                  f'sleep {pause:.2f}; '
                                  f'echo "${{run.id}} s{i}" >> {self.sidefx}'},
            }
            if long:
                step["queue"] = LONG_QUEUE
            elif queue:
                step["queue"] = queue
            steps.append(step)
        return {"name": name, "steps": steps}

    def submit(self, service: Any, name: str = "faults") -> list[str]:
        from chordflow.workflow.loader import load_data

        workflow = load_data(self.document(name))
        self.run_ids = [service.submit(workflow) for _ in range(self.runs)]
        return self.run_ids

    def lines(self) -> Counter[tuple[str, str]]:
        if not self.sidefx.exists():
            return Counter()
        return Counter(tuple(line.split()) for line in self.sidefx.read_text().splitlines()
                       if line.strip())  # type: ignore[misc]

    def done_lines(self) -> int:
        return sum(self.lines().values())

    def started(self) -> list[Started]:
        """Every attempt that started: its process, its worker process, when, how long
        it sleeps."""
        if not self.pids.exists():
            return []
        found = []
        for line in self.pids.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:  # a line being written has fewer
                found.append(Started(int(parts[0]), int(parts[1]), float(parts[2]),
                                     float(parts[3])))
        return found

    def step_pids(self) -> list[tuple[int, int]]:
        """(step process, its worker process) of every attempt that started."""
        return [(s.pid, s.ppid) for s in self.started()]

    def wait(self, service: Any, timeout: float) -> dict[str, RunStatus]:
        return {run_id: service.wait(run_id, timeout=timeout) for run_id in self.run_ids}


def check(workload: Workload, service: Any) -> dict[str, Any]:
    """Assert what must hold after any fault; return a summary for the report."""
    store = service.engine.store
    runs = {run_id: store.get_run(run_id) for run_id in workload.run_ids}
    statuses = {run_id: run.status for run_id, run in runs.items()}
    assert all(s is RunStatus.SUCCEEDED for s in statuses.values()), \
        {run_id: (str(run.status), run.error) for run_id, run in runs.items()}
    lines = workload.lines()
    twice = {k: n for k, n in lines.items() if n != 1}
    assert not twice, f"side effects not written exactly once: {twice}\n" + "\n".join(
        _story(store, run_id, step) for run_id, step in list(twice)[:3])
    takeovers = 0
    for run_id in workload.run_ids:
        steps = store.get_steps(run_id)
        assert len(steps) == workload.steps
        missing = [name for name in steps if lines.get((run_id, name)) != 1]
        assert not missing, f"run {run_id}: no side effect for {missing[:5]}"
        events = store.events(run_id)
        started = Counter(e.step for e in events if e.type == "step_started")
        succeeded = {e.step for e in events if e.type == "step_succeeded"}
        takeovers += sum(1 for e in events if e.type == "step_taken_over")
        logged = {(line.step, line.attempt) for line in store.logs(run_id)}
        for name, rec in steps.items():
            assert rec.status is StepStatus.SUCCEEDED, (run_id, name, rec.status)
            assert name in succeeded and started[name] >= 1, \
                f"run {run_id}: events of step {name} missing"
            assert (name, rec.attempts) in logged, \
                f"run {run_id}: the output of {name} (attempt {rec.attempts}) is missing"
    left = living_in_groups({pid for pid, _ in workload.step_pids()})
    assert not left, f"processes of earlier attempts still alive: {left}"
    return {"runs": len(statuses), "succeeded": sum(s is RunStatus.SUCCEEDED
                                                   for s in statuses.values()),
            "duplicates": len(twice), "takeovers": takeovers}


def _story(store: Any, run_id: str, step: str) -> str:
    """What the records say of one step: for a failure message."""
    rec = store.get_steps(run_id, [step])[step]
    events = [f"  {e.ts:.3f} {e.type} {e.data}" for e in store.events(run_id)
              if e.step == step]
    logs = [f"  {line.ts:.3f} attempt {line.attempt} {line.worker} {line.stream}: "
            f"{line.text.strip()[:80]}" for line in store.logs(run_id, step)]
    return "\n".join([f"{run_id} {step}: {rec.status}, attempts {rec.attempts}, "
                      f"worker {rec.worker}, holder {rec.holder}", *events, *logs])
