"""A long ``foreach`` is sent in batches of consecutive elements (app/engine/dispatch.py),
each element still claimed, run, recorded, retried and counted as its own: a batch
delivered twice runs nothing twice, and an element's retry goes on its own."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from chordflow.engine.dispatch import TaskMessage, foreach_batches
from chordflow.engine.engine import Engine
from chordflow.engine.mongo_store import MongoStore, _group_id
from chordflow.engine.state import RunStatus, StepStatus
from chordflow.modules.registry import default_registry
from chordflow.workflow.loader import load_data


def test_a_list_is_batched_only_past_a_thousand_messages():
    assert foreach_batches(1_999, 64) == [(i, 1) for i in range(1_999)]
    assert foreach_batches(2_000, 64)[:2] == [(0, 2), (2, 2)]
    batches = foreach_batches(100_000, 64)
    assert len(batches) == 1_563 and batches[-1] == (99_968, 32)
    assert [i for start, k in batches for i in range(start, start + k)] == list(range(100_000))
    assert foreach_batches(100_000, 1) == [(i, 1) for i in range(100_000)]
    assert foreach_batches(200, 64, fewest=10) == [(i, 20) for i in range(0, 200, 20)]


class HeldChords:
    """A dispatcher that can send chords and keeps every message for the test to
    deliver (in its order, or twice, as a broker may)."""

    supports_chords = True

    def __init__(self) -> None:
        self.sent: list[TaskMessage] = []

    def dispatch(self, message: TaskMessage) -> None:
        self.sent.append(message)

    def dispatch_many(self, messages: list[TaskMessage]) -> None:
        self.sent.extend(messages)

    def dispatch_chord(self, messages: list[TaskMessage]) -> None:
        self.sent.extend(messages)

    def revoke(self, run_id: str, task_ids: list[str]) -> None:
        pass


@pytest.fixture
def batching(mongo_url: str):
    """An engine on the MongoDB-protocol server that sends ten elements in batches of
    four (in at least one message, not 1,000)."""
    held = HeldChords()
    store = MongoStore(mongo_url, f"b{uuid.uuid4().hex[:10]}")
    engine = Engine(store, default_registry(), held, foreach_batch=4,
                    foreach_min_messages=1)
    yield engine, held
    store.close()


def start(engine: Engine, doc: dict[str, Any]) -> str:
    run_id = engine.submit(engine.compile(load_data(doc)))
    engine.start(run_id)
    return run_id


def deliver(engine: Engine, held: HeldChords, *, twice: bool = False) -> list[TaskMessage]:
    """Deliver what was sent until nothing is left; ``twice``: each batch twice."""
    delivered = []
    while held.sent:
        message = held.sent.pop(0)
        for _ in range(2 if twice and message.batch else 1):
            engine.execute(message, task_id=message.task_id)
            delivered.append(message)
    return delivered


def test_a_batch_delivered_twice_runs_each_element_once(batching):
    engine, held = batching
    run_id = start(engine, {"name": "batches", "steps": [
        {"name": "each", "module": "echo", "foreach": list(range(10)),
         "params": {"n": "${item}"}},
        {"name": "after", "module": "echo", "depends_on": "each",
         "params": {"last": "${steps.each.outputs.items[9].n}"}}]})
    # The expansion's messages: three batches (0-3, 4-7, 8-9), none of one element.
    assert [(m.index, m.batch) for m in held.sent] == [(0, 4), (4, 4), (8, 2)]
    delivered = deliver(engine, held, twice=True)
    assert [m.step for m in delivered].count("after") == 1
    engine.gather(run_id, "each")  # the chord's body, late: changes nothing
    assert engine.store.get_run(run_id).status is RunStatus.SUCCEEDED
    each = engine.store.get_steps(run_id, ["each", "after"])
    items = each["each"].items or []
    assert [i.outputs for i in items] == [{"n": n} for n in range(10)]
    assert {i.attempts for i in items} == {1}
    assert [i.task_id for i in items] == [f"{run_id}:each[0-3]:1"] * 4 + \
        [f"{run_id}:each[4-7]:1"] * 4 + [f"{run_id}:each[8-9]:1"] * 2
    assert each["after"].outputs == {"last": 9}
    assert each["each"].items_left == 0


def test_an_element_of_a_batch_is_retried_on_its_own_and_a_failure_names_it(
        batching, tmp_path: Path):
    engine, held = batching
    marker = tmp_path / "failed-once"
    # Element 5 fails its first attempt, element 6 every attempt (no retry left).
    run_id = start(engine, {"name": "retries", "steps": [
        {"name": "each", "module": "bash", "foreach": list(range(10)), "retries": 1,
         "retry_delay": 0,
         "params": {"cmd": f"[ ${{item}} != 6 ] && {{ [ ${{item}} != 5 ] || [ -e {marker} ] "
                           f"|| {{ touch {marker}; exit 3; }}; }}"}}]})
    first = held.sent[1]
    assert (first.index, first.batch) == (4, 4)
    deliver(engine, held)
    run = engine.store.get_run(run_id)
    assert run.status is RunStatus.FAILED
    items = engine.store.get_steps(run_id, ["each"])["each"].items or []
    assert items[5].status is StepStatus.SUCCEEDED and items[5].attempts == 2
    assert items[5].task_id == f"{run_id}:each[5]:2"  # its retry: a message of its own
    assert items[6].status is StepStatus.FAILED and items[6].attempts == 2
    assert all(items[i].status is StepStatus.SUCCEEDED for i in (0, 1, 2, 3, 4, 7, 8, 9))
    assert "1 of 10 items failed; item 6" in (run.error or "")


def test_a_batch_of_a_cancelled_run_stops_at_once(batching):
    """The task's cancel event set (the run was cancelled): the batch runs and counts
    nothing more (its elements are the cancel's to record)."""
    import threading

    engine, held = batching
    run_id = start(engine, {"name": "cancelled", "steps": [
        {"name": "each", "module": "echo", "foreach": list(range(10)),
         "params": {"n": "${item}"}}]})
    first, second = held.sent[0], held.sent[1]
    engine.execute(second, task_id=second.task_id)  # this process now knows it running
    assert engine.cancel(run_id)
    cancelled = threading.Event()
    cancelled.set()
    engine.execute(first, cancelled, task_id=first.task_id)
    each = engine.store.get_steps(run_id, ["each"])["each"]
    assert {i.status for i in (each.items or [])[:4]} == {StepStatus.CANCELLED}
    group = engine.store._marks.find_one(  # type: ignore[attr-defined]
        {"_id": _group_id(run_id, "each", 0)})
    assert group["left"] == 6  # the second batch's four; the first's not even counted
