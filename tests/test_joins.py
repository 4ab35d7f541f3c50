"""A join is one atomic update: the mark that a parent was counted for a child, and the
count, in one write of one document, so that nothing (a task terminated between two
writes, a store that goes away) can leave a child counted but still waiting."""

from __future__ import annotations

import uuid

import pymongo
from chordflow.engine.mongo_store import MongoStore
from chordflow.engine.records import RunRecord, StepRecord
from pymongo import monitoring


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
