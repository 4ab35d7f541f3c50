"""The worker process's cancel watch: one thread, every watched run once per poll."""

from __future__ import annotations

import time

from chordflow.engine.state import RunStatus
from chordflow.tasks.cancel_watch import CancelWatch


def test_a_cancelled_run_sets_the_events_of_its_steps_only() -> None:
    statuses = {"a": RunStatus.RUNNING, "b": RunStatus.RUNNING}
    reads: list[str] = []

    def status_of(run_id: str) -> RunStatus:
        reads.append(run_id)
        return statuses[run_id]

    watch = CancelWatch(status_of, poll=0.02)
    (t1, a1), (t2, a2), (t3, b1) = watch.watch("a"), watch.watch("a"), watch.watch("b")
    time.sleep(0.1)
    assert not (a1.is_set() or a2.is_set() or b1.is_set())
    per_poll = len(reads)
    statuses["a"] = RunStatus.CANCELLED
    assert a1.wait(2) and a2.wait(2)
    assert not b1.is_set()
    watch.unwatch(t1)
    watch.unwatch(t2)
    watch.unwatch(t3)
    reads.clear()
    time.sleep(0.1)
    assert reads == []  # nothing watched: nothing read
    assert per_poll >= 2 and watch._thread is not None and watch._thread.is_alive()
