"""A join is one atomic update: the mark that a parent was counted for a child, and the
count, in one write of one document, so that nothing (a task terminated between two
writes, a store that goes away) can leave a child counted but still waiting."""

from __future__ import annotations

import uuid

import pymongo
from chordflow.engine.mongo_store import MongoStore
from chordflow.engine.records import ItemRecord, RunRecord, StepRecord
from chordflow.engine.state import StepStatus
from pymongo import monitoring
from pymongo.errors import AutoReconnect


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        self.seen.append((name, str(event.command.get(name))))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_counting_a_parent_is_one_write_of_the_childs_document(mongo_url):
    listener = Commands()
    client: pymongo.MongoClient = pymongo.MongoClient(mongo_url, event_listeners=[listener])
    store = MongoStore(mongo_url, f"j{uuid.uuid4().hex[:10]}", client=client)
    run = RunRecord("r", "w", "1", "d")
    store.create_run(run, [StepRecord("r", "child", "echo", "run", waiting_on=3)], {})
    listener.seen.clear()
    assert store.count_parent("r", "child", "a") == 2
    assert listener.seen == [("findAndModify", "steps")]  # nothing in between to lose
    assert store.count_parent("r", "child", "a") is None  # counted once only
    assert store.count_parent("r", "child", "b") == 1
    client.close()


class LostReplies:
    """A collection whose every write is applied by the server but whose first reply is
    lost (the connection drops before it arrives): the store's patience then repeats it,
    as after a real network fault between a write and its answer."""

    WRITES = ("find_one_and_update", "update_one", "insert_one", "insert_many")

    def __init__(self, real: object) -> None:
        self.real = real
        self.lost = 0

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.real, name)
        if name not in self.WRITES:
            return attr

        def write(*args: object, **kwargs: object) -> object:
            result = attr(*args, **kwargs)
            self.lost += 1
            if self.lost % 2:  # every other try: the first of each call
                raise AutoReconnect("connection closed before the reply")
            return result

        return write


def foreach_losing_replies(mongo_url: str, n: int) -> tuple[MongoStore, str]:
    """A run whose step ``each`` has ``n`` elements, on a store whose every first reply
    to a write is lost."""
    store = MongoStore(mongo_url, "joins", patience=30)
    run_id = f"r{uuid.uuid4().hex[:10]}"
    store.create_run(RunRecord(run_id, "w", "1", "d"),
                     [StepRecord(run_id, "each", "echo", "run")], {})
    assert store.transition_step(run_id, "each", {StepStatus.PENDING}, StepStatus.READY,
                                 items=[ItemRecord(value=i) for i in range(n)],
                                 items_left=n)
    for name in ("_steps", "_marks", "_items"):
        coll = getattr(store, name)
        coll.raw = LostReplies(coll.raw)
    return store, run_id


def test_a_foreach_element_is_counted_once_when_the_counts_reply_is_lost(mongo_url):
    """Counting an element repeated after a lost reply must not count it twice: a double
    count gathers the step before its last element finishes, and ends at -1."""
    n = 70  # elements over more than one group of counts (COUNT_GROUP)
    store, run_id = foreach_losing_replies(mongo_url, n)
    left = [store.count_item(run_id, "each", i) for i in reversed(range(n))]
    assert left[-1] == 0, left
    assert all(x is not None and x > 0 for x in left[:-1]), left
    assert [store.count_item(run_id, "each", i) for i in (0, 7, n - 1)] == [None] * 3
    assert store.get_steps(run_id)["each"].items_left == 0
    store.close()


def test_a_batch_counts_its_elements_once_beside_their_own_counts(mongo_url):
    """A batch of elements counts them in one write per group (app/engine/dispatch.py);
    an element counted by a task of its own (a retry), or by an earlier delivery of the
    same batch, is left out, even when every first reply is lost."""
    n = 200  # groups of 64: 0-63, 64-127, 128-191, and 192-199
    store, run_id = foreach_losing_replies(mongo_url, n)
    assert store.count_item(run_id, "each", 5) == 63  # a retry of its own, first
    # The first group empties (5 is left out), the second does not.
    assert store.count_items(run_id, "each", range(0, 100)) == n - 64
    assert store.count_items(run_id, "each", range(0, 100)) is None  # a redelivery
    assert store.count_item(run_id, "each", 99) is None
    assert store.count_items(run_id, "each", range(100, 200)) == 0
    assert store.get_steps(run_id)["each"].items_left == 0
    store.close()


def test_a_group_marked_without_its_share_of_the_step_is_finished_by_the_next_count(
        mongo_url):
    """A task stopped between a group's count and the step's (killed, or the store gone
    past its patience): the next count of any of the group's elements, a redelivered
    batch's or an element's own, finds the group full and makes the step's count."""
    from chordflow.engine.mongo_store import _group_id

    n = 128
    store, run_id = foreach_losing_replies(mongo_url, n)
    for group in (0, 1):  # every element marked in its group; the step not told
        marked = store._count_once(store._marks, _group_id(run_id, "each", group), "done",
                                   [f"i{i}" for i in range(group * 64, group * 64 + 64)],
                                   "left")
        assert marked is not None and marked["left"] == 0
    assert store.get_steps(run_id)["each"].items_left == n
    assert store.count_items(run_id, "each", range(0, 64)) == 64  # a redelivered batch
    assert store.count_item(run_id, "each", 100) == 0  # an element's own repeat
    assert store.count_items(run_id, "each", range(0, 64)) is None  # once only
    assert store.get_steps(run_id)["each"].items_left == 0
    store.close()
