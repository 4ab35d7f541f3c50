"""Writes the engine takes off the path from one step to the next: a released step sent
before its queueing is recorded, and a task's counts for its run written in batches."""

from __future__ import annotations

import collections
import threading
from typing import Any

import pytest
from chordflow.engine.counting import RunCounts
from chordflow.engine.dispatch import TaskMessage
from chordflow.engine.engine import Engine
from chordflow.engine.memory_store import MemoryStore
from chordflow.engine.records import RunRecord
from chordflow.engine.state import RunStatus, StepStatus
from chordflow.modules.registry import default_registry
from chordflow.workflow.loader import load_data


class InlineDispatcher:
    """Runs each message the moment it is sent, inside the sender's call: the fastest
    worker there can be, which claims a step before its sender records it queued."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.seen: list[tuple[str, str]] = []

    def dispatch(self, message: TaskMessage) -> None:
        assert self.engine is not None
        rec = self.engine.store.get_steps(message.run_id, (message.step,))[message.step]
        self.seen.append((message.step, str(rec.status)))
        self.engine.execute(message)

    def dispatch_many(self, messages: list[TaskMessage]) -> None:
        for message in messages:
            self.dispatch(message)

    def revoke(self, run_id: str, task_ids: list[str]) -> None:
        pass


def run_inline(store: MemoryStore, dispatcher: InlineDispatcher,
               doc: dict[str, Any]) -> tuple[Engine, str]:
    """Start a run of ``doc`` on an engine whose messages ``dispatcher`` delivers."""
    engine = Engine(store, default_registry(), dispatcher)
    dispatcher.engine = engine
    run_id = engine.submit(engine.compile(load_data(doc)))
    engine.start(run_id)
    return engine, run_id


A_THEN_B = {"steps": [{"name": "a", "module": "echo"},
                      {"name": "b", "module": "echo", "depends_on": ["a"]}]}


def test_a_step_claimed_before_its_queueing_is_recorded_runs_once_with_its_times():
    dispatcher = InlineDispatcher()
    engine, run_id = run_inline(MemoryStore(), dispatcher, {"name": "fast", "steps": [
        {"name": "a", "module": "echo", "params": {"x": 1}},
        {"name": "b", "module": "echo", "params": {"y": "${steps.a.outputs.x}"}},
        {"name": "c", "module": "echo", "depends_on": ["b"]},
    ]})
    assert engine.store.get_run(run_id).status is RunStatus.SUCCEEDED
    # b and c were sent while still pending, and claimed from there.
    assert ("b", "pending") in dispatcher.seen and ("c", "pending") in dispatcher.seen
    steps = engine.store.get_steps(run_id)
    for name in "abc":
        rec = steps[name]
        assert rec.status is StepStatus.SUCCEEDED and rec.attempts == 1
        assert rec.queued_at is not None and rec.queued_at <= rec.started_at <= rec.finished_at
    assert steps["b"].outputs == {"y": 1}
    kinds = [e.type for e in engine.store.events(run_id)]
    assert kinds.count("step_started") == 3 and kinds.count("step_succeeded") == 3


def test_a_claim_that_misses_because_the_queueing_lands_meanwhile_still_claims():
    """The claim tries queued, then either: the sender's queueing write may land right
    between the two tries, and the message must not be dropped for it."""

    class LateQueueing(MemoryStore):
        def transition_step(self, run_id: str, name: str, expect: Any, status: StepStatus,
                            **kwargs: Any) -> bool:
            done = super().transition_step(run_id, name, expect, status, **kwargs)
            if not done and status is StepStatus.RUNNING and set(expect) == {StepStatus.QUEUED}:
                # The sender's write lands just after the first try missed.
                super().transition_step(run_id, name, {StepStatus.PENDING},
                                        StepStatus.QUEUED, queued_at=1.0)
            return done

    dispatcher = InlineDispatcher()
    engine, run_id = run_inline(LateQueueing(), dispatcher, {"name": "late", **A_THEN_B})
    assert ("b", "pending") in dispatcher.seen
    assert engine.store.get_run(run_id).status is RunStatus.SUCCEEDED
    assert engine.store.get_steps(run_id)["b"].attempts == 1


def test_an_earlier_generations_message_cannot_claim_a_pending_rerun_step():
    store = MemoryStore()
    lost: list[TaskMessage] = []

    class Losing(InlineDispatcher):
        def dispatch(self, message: TaskMessage) -> None:
            if message.step == "b" and message.generation == 0:
                lost.append(message)  # a broker holds it back; it turns up later
                return
            super().dispatch(message)

    dispatcher = Losing()
    engine, run_id = run_inline(store, dispatcher, {"name": "gen", **A_THEN_B})
    engine.cancel(run_id)
    held: list[TaskMessage] = []
    pending_then: list[tuple[str, int, int]] = []

    def during_rerun(message: TaskMessage) -> None:
        # The re-run sends b while it is still pending; the cancelled generation's
        # message turns up right then. It must not run the re-run's step.
        engine.execute(lost[0])
        rec = store.get_steps(run_id)["b"]
        pending_then.append((str(rec.status), rec.attempts, rec.generation))
        held.append(message)

    dispatcher.dispatch = during_rerun  # type: ignore[method-assign]
    assert engine.rerun(run_id) == ["b"]
    assert pending_then == [("pending", 0, 1)]
    assert lost[0].generation == 0 and held[0].generation == 1
    engine.execute(held[0])
    assert store.get_run(run_id).status is RunStatus.SUCCEEDED
    assert store.get_steps(run_id)["b"].attempts == 1


def _run(store: MemoryStore, leaves: int) -> str:
    run = RunRecord(id=f"run{leaves}", workflow="w", version=None, digest="d",
                    variables={}, steps_left=leaves, max_parallel=None)
    store.create_run(run, [], {})
    return run.id


def test_counts_are_written_at_once_without_linger():
    store = MemoryStore()
    zero: list[str] = []
    counts = RunCounts(store, zero.append)
    run_id = _run(store, 2)
    assert counts.count(run_id, defer=True) is False
    assert store.get_run(run_id).steps_left == 1
    assert counts.count(run_id, defer=True) is True  # the caller finishes the run
    assert zero == []


def test_a_tasks_counts_wait_for_others_of_their_run_and_a_flush_ends_the_run():
    store = MemoryStore()
    zero: list[str] = []
    counts = RunCounts(store, zero.append, linger=60.0)  # the flusher never fires here
    run_id = _run(store, 4)
    assert counts.count(run_id, defer=True) is False  # the first: written at once
    assert store.get_run(run_id).steps_left == 3
    for _ in range(3):
        assert counts.count(run_id, defer=True) is False  # the rest wait
    assert store.get_run(run_id).steps_left == 3
    counts.flush()
    assert store.get_run(run_id).steps_left == 0 and zero == [run_id]
    # Outside a task (a resume, the API) nothing waits.
    other = _run(store, 1)
    assert counts.count(other, defer=False) is True


def test_the_background_writer_ends_the_run_within_its_linger():
    store = MemoryStore()
    ended = threading.Event()
    counts = RunCounts(store, lambda run_id: ended.set(), linger=0.05)
    run_id = _run(store, 3)
    for _ in range(3):
        counts.count(run_id, defer=True)
    assert ended.wait(10), "the pending counts were never written"
    assert store.get_run(run_id).steps_left == 0


def test_counts_that_could_not_be_written_are_kept_for_the_next_flush():
    class Flaky(MemoryStore):
        failures = 1

        def count_steps(self, run_id: str, n: int = 1) -> int:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("store unreachable")
            return super().count_steps(run_id, n)

    store = Flaky()
    store.failures = 0
    zero: list[str] = []
    counts = RunCounts(store, zero.append, linger=60.0)
    first, second = _run(store, 3), _run(store, 2)
    for run_id in (first, first, first, second, second):
        counts.count(run_id, defer=True)
    store.failures = 1
    with pytest.raises(ConnectionError):
        counts.flush()
    counts.flush()
    assert store.get_run(first).steps_left == 0 and store.get_run(second).steps_left == 0
    assert sorted(zero) == sorted([first, second])


def test_a_fan_out_on_a_batching_engine_finishes_with_every_step_counted():
    """The engine as workers build it (counts batched), on a thread pool."""
    from chordflow.engine.embedded import EmbeddedExecutor

    with EmbeddedExecutor(threads=8) as ex:
        ex.engine.counts.linger = 0.05
        doc: dict[str, Any] = {"name": "fan", "steps": [
            {"name": f"s{i}", "module": "echo", "params": {"i": i}} for i in range(300)]}
        run_id = ex.submit(load_data(doc))
        assert ex.wait(run_id, timeout=60) is RunStatus.SUCCEEDED
        statuses = collections.Counter(
            rec.status for rec in ex.store.get_steps(run_id).values())
        assert statuses == {StepStatus.SUCCEEDED: 300}
        assert ex.store.get_run(run_id).steps_left == 0


def test_foreach_elements_are_read_by_id_in_slices(mongo_url: str, monkeypatch) -> None:
    """A step's elements are looked up by id, a slice of ids per query, so a command
    stays small at any foreach size; every element comes back, in place."""
    import uuid

    from chordflow.engine import mongo_store
    from chordflow.engine.embedded import EmbeddedExecutor

    monkeypatch.setattr(mongo_store, "IDS_PER_QUERY", 3)
    ex = EmbeddedExecutor(store=mongo_store.MongoStore(mongo_url, f"t{uuid.uuid4().hex[:12]}"))
    try:
        plan = ex.compile(load_data({"name": "slices", "steps": [
            {"name": "each", "module": "echo", "foreach": list(range(8)),
             "params": {"v": "${item}"}},
            {"name": "two", "module": "echo", "foreach": ["a", "b"], "params": {"v": "${item}"}},
        ]}))
        run_id = ex.run(plan, timeout=60)
        steps = ex.engine.steps_of(ex.store.get_run(run_id))
        assert [i.outputs for i in steps["each"].items or []] == [{"v": n} for n in range(8)]
        assert [i.outputs for i in steps["two"].items or []] == [{"v": "a"}, {"v": "b"}]
    finally:
        ex.close()


def test_a_submission_writes_its_events_in_one_insert(monkeypatch) -> None:
    """run_created and run_started reach the store together (one round trip of a POST
    /runs), and an error in between still writes what happened before it."""
    from chordflow.engine.records import Event
    from chordflow.service import RunService

    class CountingStore(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[list[str]] = []

        def append_event(self, event: Event) -> None:
            self.writes.append([event.type])
            super().append_event(event)

        def append_events(self, events: list[Event]) -> None:
            self.writes.append([e.type for e in events])
            super().append_events(events)

    sent: list[TaskMessage] = []

    class Holding(InlineDispatcher):
        def dispatch(self, message: TaskMessage) -> None:
            sent.append(message)  # kept, not run

    store = CountingStore()
    service = RunService(Engine(store, default_registry(), Holding()))
    run_id = service.submit(load_data({"name": "one", "steps": [
        {"name": "a", "module": "echo"}, {"name": "b", "module": "echo"}]}))
    assert store.writes == [["run_created", "run_started"]]
    assert [m.step for m in sent] == ["a", "b"]
    assert [e.type for e in store.events(run_id)] == ["run_created", "run_started"]

    store.writes.clear()
    def broken_start(run_id: str) -> None:
        raise RuntimeError("broker down")

    monkeypatch.setattr(service.engine, "start", broken_start)
    with pytest.raises(RuntimeError):
        service.submit(load_data({"name": "two", "steps": [{"name": "a", "module": "echo"}]}))
    assert store.writes == [["run_created"]]
