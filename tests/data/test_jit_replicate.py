"""The replication loop on the real MongoDB-protocol server: many events at once keep
the accounting exact, a failed or cancelled copy gives its reservation back. The files
move in memory here (``Shelf``); tests/data/test_jit_api.py moves them with rclone."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import pymongo
import pytest
from chordflow.data.jit.replicate import TierFull, make_present, release
from chordflow.data.jit.store import TierStore
from chordflow.data.jit.tiers import load_tiers
from chordflow.errors import StepCancelled


class Shelf:
    """A secondary and a primary in memory; what an rclone mover does, no more."""

    def __init__(self, sizes: dict[str, int]):
        self.secondary = dict(sizes)
        self.primary: dict[str, int] = {}
        self.lock = threading.Lock()
        self.fail_copy: Exception | None = None

    def sizes(self, files: Sequence[str]) -> dict[str, int]:
        return {f: self.secondary[f] for f in files if f in self.secondary}

    def copy(self, files: Sequence[str]) -> int:
        if self.fail_copy is not None:
            raise self.fail_copy
        with self.lock:
            self.primary.update({f: self.secondary[f] for f in files})
        return sum(self.secondary[f] for f in files)

    def delete(self, files: Sequence[str]) -> None:
        with self.lock:
            for f in files:
                self.primary.pop(f, None)


@pytest.fixture
def store(mongo_url):
    client = pymongo.MongoClient(mongo_url)
    yield TierStore(client[f"jit{uuid.uuid4().hex[:8]}"])
    client.close()


def tier(capacity: int):
    return load_tiers({f"t{uuid.uuid4().hex[:8]}": {
        "primary": "p:cache", "secondary": "s:origin", "capacity": capacity}}).popitem()[1]


def exact(store: TierStore, config, shelf: Shelf) -> None:
    state = store.load(config)
    assert {p: e.size for p, e in state.files.items()} == shelf.primary
    assert all(e.state == "present" for e in state.files.values())
    assert state.used == sum(shelf.primary.values()) <= state.capacity


def test_events_at_once_evicting_from_a_full_tier_keep_the_accounting_exact(store):
    config = tier(capacity=80)
    shelf = Shelf({f"f{i:02d}": 2 for i in range(56)})
    old = [f"f{i:02d}" for i in range(24, 56)]  # 64 bytes nobody holds
    make_present(config, old, store=store, mover=shelf, owner="run:fill")
    release(config, "run:fill", store=store)
    errors: list[BaseException] = []

    def event(n: int) -> None:
        try:  # 12 bytes each, 48 in all: each must evict, all fit once they have
            files = [f"f{i:02d}" for i in range(n * 6, n * 6 + 6)]
            make_present(config, files, store=store, mover=shelf, owner=f"run:{n}",
                         holder=f"argo:w{n}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=event, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    exact(store, config, shelf)
    state = store.load(config)
    assert {f"f{i:02d}" for i in range(24)} <= set(state.files)  # every event's files
    assert state.used == 80  # each evicted just enough: the tier is full again


def test_a_failed_copy_gives_its_reservation_back(store):
    config = tier(capacity=10)
    shelf = Shelf({"a": 4, "b": 4})
    make_present(config, ["a"], store=store, mover=shelf, owner="run:1")
    shelf.fail_copy = RuntimeError("rclone copy failed")
    with pytest.raises(RuntimeError):
        make_present(config, ["b"], store=store, mover=shelf, owner="run:2")
    exact(store, config, shelf)  # "b" is not reserved, not present
    shelf.fail_copy = StepCancelled("cancelled")
    with pytest.raises(StepCancelled):
        make_present(config, ["b"], store=store, mover=shelf, owner="run:3")
    exact(store, config, shelf)
    shelf.fail_copy = None
    make_present(config, ["b"], store=store, mover=shelf, owner="run:4")
    assert sorted(shelf.primary) == ["a", "b"]


def test_files_held_by_an_unfinished_workflow_are_not_evicted(store):
    config = tier(capacity=8)
    shelf = Shelf({"a": 4, "b": 4, "c": 4})
    make_present(config, ["a", "b"], store=store, mover=shelf, owner="run:1",
                 holder="argo:w1")
    release(config, "run:1", store=store)
    with pytest.raises(TierFull, match="8 bytes are held"):
        make_present(config, ["c"], store=store, mover=shelf, owner="run:2")
    assert sorted(shelf.primary) == ["a", "b"]
    release(config, "argo:w1", store=store)
    outcome = make_present(config, ["c"], store=store, mover=shelf, owner="run:3")
    assert outcome.evicted == ["a"] and outcome.copied == ["c"]
    exact(store, config, shelf)
