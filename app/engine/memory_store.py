"""The in-memory store of the embedded executor.

One lock makes each method atomic, which is exactly the guarantee the MongoDB store
gets from single-document updates; the engine cannot tell them apart. Reads return
copies so a caller can never change a record without going through a transition.
"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict, deque
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from chordflow.engine.dispatch import TaskKey
from chordflow.engine.live_output import with_live
from chordflow.engine.records import Event, ItemRecord, LogLine, RunRecord, StepRecord
from chordflow.engine.state import RunStatus, StepStatus, check_run, check_step
from chordflow.errors import RunNotFound


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, RunRecord] = {}
        self._steps: dict[str, dict[str, StepRecord]] = {}
        self._workflows: dict[str, Any] = {}
        self._events: dict[str, list[Event]] = defaultdict(list)
        self._logs: dict[str, list[LogLine]] = defaultdict(list)
        #: Running attempts' output so far: (run, step, attempt) -> page -> lines.
        self._live_logs: dict[tuple[str, str, int], dict[int, list[LogLine]]] = {}
        # Bookkeeping that makes the counters idempotent, and the slot queues.
        self._counted: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._items_done: dict[tuple[str, str], set[int]] = defaultdict(set)
        self._slots: dict[str, set[str]] = defaultdict(set)
        self._waiting: dict[str, deque[str]] = defaultdict(deque)
        self._waiting_set: dict[str, set[str]] = defaultdict(set)

    # -- runs -----------------------------------------------------------------------

    def create_run(self, run: RunRecord, steps: Iterable[StepRecord], workflow: Any) -> None:
        with self._lock:
            if run.id in self._runs:
                raise ValueError(f"run {run.id} exists")
            self._runs[run.id] = run
            self._steps[run.id] = {s.name: s for s in steps}
            self._workflows[run.id] = workflow

    def _run(self, run_id: str) -> RunRecord:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFound(f"no run '{run_id}'") from None

    def get_run(self, run_id: str) -> RunRecord:
        with self._lock:
            return copy.copy(self._run(run_id))

    def get_workflow(self, run_id: str) -> Any:
        with self._lock:
            self._run(run_id)
            return self._workflows[run_id]

    def list_runs(self) -> list[RunRecord]:
        with self._lock:
            return [copy.copy(r) for r in self._runs.values()]

    def set_run_status(
        self, run_id: str, expect: Collection[RunStatus], status: RunStatus, **fields: Any
    ) -> bool:
        with self._lock:
            run = self._run(run_id)
            if run.status not in expect:
                return False
            check_run(run.status, status)
            run.status = status
            for key, value in fields.items():
                setattr(run, key, value)
            return True

    # -- steps ----------------------------------------------------------------------

    def get_steps(
        self, run_id: str, names: Collection[str] | None = None
    ) -> dict[str, StepRecord]:
        with self._lock:
            self._run(run_id)
            steps = self._steps[run_id]
            chosen = steps.values() if names is None else (steps[n] for n in names)
            # Outputs and params are never changed in place, so they may be shared.
            return {s.name: self._copy(s) for s in chosen}

    def step_status(self, run_id: str, name: str) -> StepStatus:
        with self._lock:
            return self._steps[run_id][name].status

    @staticmethod
    def _copy(step: StepRecord) -> StepRecord:
        clone = copy.copy(step)
        if step.items is not None:
            clone.items = [copy.copy(item) for item in step.items]
        return clone

    def transition_step(
        self,
        run_id: str,
        name: str,
        expect: Collection[StepStatus],
        status: StepStatus,
        *,
        attempt: int | None = None,
        expect_generation: int | None = None,
        expect_lease: float | None = None,
        **fields: Any,
    ) -> bool:
        with self._lock:
            return self._transition_step(run_id, name, expect, status, attempt, fields,
                                         expect_generation, expect_lease) is not None

    def queue_steps(self, run_id: str, names: Collection[str], queued_at: float) -> None:
        with self._lock:
            for name in names:
                self._transition_step(run_id, name, (StepStatus.PENDING,), StepStatus.QUEUED,
                                      None, {"queued_at": queued_at})

    def finish_step(
        self,
        run_id: str,
        name: str,
        expect: Collection[StepStatus],
        status: StepStatus,
        *,
        attempt: int | None = None,
        expect_generation: int | None = None,
        expect_lease: float | None = None,
        **fields: Any,
    ) -> StepRecord | None:
        with self._lock:
            step = self._transition_step(run_id, name, expect, status, attempt, fields,
                                         expect_generation, expect_lease)
            return None if step is None else self._copy(step)

    def _transition_step(
        self, run_id: str, name: str, expect: Collection[StepStatus], status: StepStatus,
        attempt: int | None, fields: Mapping[str, Any], generation: int | None = None,
        lease: float | None = None,
    ) -> StepRecord | None:
        step = self._steps[run_id][name]
        if not _expected(step, expect, attempt, generation, lease):
            return None
        check_step(step.status, status)
        step.status = status
        for key, value in fields.items():
            setattr(step, key, value)
        return step

    def transition_item(
        self,
        run_id: str,
        name: str,
        index: int,
        expect: Collection[StepStatus],
        status: StepStatus,
        *,
        attempt: int | None = None,
        expect_generation: int | None = None,
        expect_lease: float | None = None,
        **fields: Any,
    ) -> bool:
        with self._lock:
            step = self._steps[run_id][name]
            assert step.items is not None, f"step {name} is not a foreach step"
            item = step.items[index]
            if not _expected(item, expect, attempt, expect_generation, expect_lease):
                return False
            check_step(item.status, status)
            item.status = status
            for key, value in fields.items():
                setattr(item, key, value)
            if item.attempts > step.attempts:
                step.attempts = item.attempts
            return True

    def set_lease(self, run_id: str, name: str, index: int | None, attempt: int,
                  holder: str, until: float, timeout: float | None = None) -> bool:
        with self._lock:
            unit = self._unit(run_id, name, index)
            if unit is None or unit.status is not StepStatus.RUNNING or \
                    unit.attempts != attempt or unit.holder != holder:
                return False
            unit.lease_until = until
            return True

    def record_resend(self, run_id: str, name: str, index: int | None,
                      queued_at: float | None, resends: int) -> bool:
        with self._lock:
            unit = self._unit(run_id, name, index)
            if unit is None or unit.status is not StepStatus.QUEUED or \
                    unit.queued_at != queued_at or unit.resends != resends:
                return False
            unit.resends = resends + 1
            return True

    def get_item(self, run_id: str, name: str, index: int) -> ItemRecord | None:
        with self._lock:
            item = self._unit(run_id, name, index)
            return copy.deepcopy(item) if isinstance(item, ItemRecord) else None

    def get_items(self, run_id: str, name: str, indices: range) -> dict[int, ItemRecord]:
        with self._lock:
            items = self._steps[run_id][name].items or []
            return {i: copy.deepcopy(items[i]) for i in indices if 0 <= i < len(items)}

    def _unit(self, run_id: str, name: str, index: int | None) -> StepRecord | ItemRecord | None:
        step = self._steps[run_id][name]
        if index is None:
            return step
        return step.items[index] if step.items and index < len(step.items) else None

    # -- idempotent counters ----------------------------------------------------------

    def count_parent(self, run_id: str, child: str, parent: str) -> int | None:
        with self._lock:
            counted = self._counted[run_id, child]
            if parent in counted:
                return None
            counted.add(parent)
            step = self._steps[run_id][child]
            step.waiting_on -= 1
            return step.waiting_on

    def count_item(self, run_id: str, name: str, index: int) -> int | None:
        with self._lock:
            done = self._items_done[run_id, name]
            if index in done:
                return None
            done.add(index)
            step = self._steps[run_id][name]
            step.items_left -= 1
            return step.items_left

    def count_items(self, run_id: str, name: str, indices: Collection[int]) -> int | None:
        left = None
        for index in indices:
            counted = self.count_item(run_id, name, index)
            left = left if counted is None else counted  # they only go down
        return left

    def count_steps(self, run_id: str, n: int = 1) -> int:
        with self._lock:
            run = self._run(run_id)
            run.steps_left -= n
            return run.steps_left

    # -- max_parallel slots -------------------------------------------------------------

    def admit(self, run_id: str, key: str, limit: int) -> list[str]:
        with self._lock:
            if key in self._slots[run_id] or key in self._waiting_set[run_id]:
                return []
            self._waiting_set[run_id].add(key)
            self._waiting[run_id].append(key)
            return self._pump(run_id, limit)

    def release(self, run_id: str, key: str, limit: int) -> list[str]:
        with self._lock:
            self._slots[run_id].discard(key)
            return self._pump(run_id, limit)

    def _pump(self, run_id: str, limit: int) -> list[str]:
        """Admit waiting keys, first come first served, while slots are free."""
        slots, waiting = self._slots[run_id], self._waiting[run_id]
        admitted = []
        while waiting and len(slots) < limit:
            nxt = waiting.popleft()
            self._waiting_set[run_id].discard(nxt)
            slots.add(nxt)
            admitted.append(nxt)
        return admitted

    def reset_steps(
        self, run_id: str, waiting_on: Mapping[str, int],
        forget: Collection[tuple[str, str]], generation: int,
    ) -> None:
        with self._lock:
            steps = self._steps[run_id]
            for name, waiting in waiting_on.items():
                old = steps[name]
                steps[name] = StepRecord(run_id=run_id, name=name, module=old.module,
                                         method=old.method, attempts=old.attempts,
                                         waiting_on=waiting, generation=generation)
                self._items_done.pop((run_id, name), None)
            for parent, child in forget:
                self._counted[run_id, child].discard(parent)
            self._slots.pop(run_id, None)
            self._waiting.pop(run_id, None)
            self._waiting_set.pop(run_id, None)

    # -- events -----------------------------------------------------------------------

    def append_event(self, event: Event) -> None:
        with self._lock:
            self._events[event.run_id].append(event)

    def append_logs(self, lines: list[LogLine]) -> None:
        with self._lock:
            for line in lines:
                self._logs[line.run_id].append(line)

    def logs(self, run_id: str, step: str | None = None) -> list[LogLine]:
        with self._lock:
            lines = list(self._logs[run_id])
            live = [line for key, pages in sorted(self._live_logs.items()) if key[0] == run_id
                    for _, page in sorted(pages.items()) for line in page]
        if step is not None:
            lines = [ln for ln in lines if TaskKey.parse(ln.step).step == step]
            live = [ln for ln in live if TaskKey.parse(ln.step).step == step]
        return with_live(sorted(lines, key=lambda ln: ln.ts), live)

    def put_live_logs(self, run_id: str, step: str, attempt: int,
                      pages: Mapping[int, list[LogLine]], count: int) -> None:
        with self._lock:
            mine = self._live_logs.setdefault((run_id, step, attempt), {})
            mine.update({number: list(lines) for number, lines in pages.items()})
            for number in [n for n in mine if n >= count]:
                del mine[number]

    def drop_live_logs(self, run_id: str, step: str, attempt: int) -> None:
        with self._lock:
            self._live_logs.pop((run_id, step, attempt), None)

    def append_events(self, events: list[Event]) -> None:
        with self._lock:
            for event in events:
                self._events[event.run_id].append(event)

    def events(self, run_id: str, after: int = 0, since: float | None = None) -> list[Event]:
        with self._lock:
            events = sorted(self._events[run_id], key=lambda e: e.ts)[after:]
        return events if since is None else [e for e in events if e.ts >= since]


def _expected(unit: StepRecord | ItemRecord, expect: Collection[StepStatus],
              attempt: int | None, generation: int | None, lease: float | None) -> bool:
    """Is the step (or element) in the state a compare-and-set expects?"""
    return unit.status in expect and (attempt is None or unit.attempts == attempt) \
        and (generation is None or unit.generation == generation) \
        and (lease is None or unit.lease_until == lease)
