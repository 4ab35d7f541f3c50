"""Leases on running attempts (app/engine/lease.py): who counts as gone, how a keeper
renews, and when it stops an attempt itself."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from chordflow.engine.lease import (
    STOP_AT,
    Lease,
    LeaseKeeper,
    LeaseState,
    holder_gone,
    lease_state,
    process_identity,
)
from chordflow.engine.memory_store import MemoryStore
from chordflow.engine.records import RunRecord, StepRecord
from chordflow.engine.state import StepStatus
from chordflow.errors import StoreUnavailable

ROOT = Path(__file__).resolve().parent.parent


def test_a_holder_is_gone_only_if_it_is_a_dead_process_of_this_machine():
    done = subprocess.run([sys.executable, "-c",
                           "from chordflow.engine.lease import process_identity; "
                           "print(process_identity())"],
                          capture_output=True, text=True, timeout=30, check=True, cwd=ROOT)
    dead = done.stdout.strip()
    assert dead.rsplit("/", 1)[0] == process_identity().rsplit("/", 1)[0]
    assert holder_gone(dead)
    assert not holder_gone(process_identity())  # this very process
    host, ns, _ = process_identity().split("/")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert not holder_gone(f"{host}/{ns}/{sleeper.pid}")  # alive
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not holder_gone(f"otherhost/other.ns/{sleeper.pid}")  # not ours to judge
    assert not holder_gone(None) and not holder_gone("garbage")


def test_lease_states():
    now = 1000.0
    assert lease_state(now + 5, "elsewhere/x/1", now) is LeaseState.LIVE
    assert lease_state(now - 5, "elsewhere/x/1", now) is LeaseState.EXPIRED
    assert lease_state(None, "elsewhere/x/1", now) is LeaseState.EXPIRED
    assert lease_state(0.0, "elsewhere/x/1", now) is LeaseState.RELEASED


def running_store(holder: str) -> MemoryStore:
    store = MemoryStore()
    store.create_run(RunRecord("r", "w", "1", "d"), [StepRecord("r", "s", "bash", "run")], {})
    assert store.transition_step("r", "s", {StepStatus.PENDING}, StepStatus.RUNNING,
                                 attempts=1, holder=holder, lease_until=time.time() + 1)
    return store


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def lease_of(keeper: LeaseKeeper, holder: str = "me", **kwargs: object) -> Lease:
    return Lease("r", "s", None, 1, holder, keeper.seconds, time.monotonic(), **kwargs)


def test_the_keeper_renews_a_held_lease():
    store = running_store("me")
    keeper = LeaseKeeper(store, 0.6)
    lease = keeper.hold(lease_of(keeper))
    first = store.get_steps("r")["s"].lease_until
    assert wait_until(lambda: store.get_steps("r")["s"].lease_until != first)
    time.sleep(1.0)
    assert not lease.lost.is_set()
    keeper.drop(lease)


def test_a_refused_renewal_stops_the_attempt_at_once():
    store = running_store("me")
    keeper = LeaseKeeper(store, 0.6)
    stop = threading.Event()
    lease = keeper.hold(lease_of(keeper, stop=stop))
    # Taken over by someone else (attempt 2).
    store.transition_step("r", "s", {StepStatus.RUNNING}, StepStatus.RUNNING, attempts=2,
                          holder="other")
    assert wait_until(lease.lost.is_set)
    assert stop.is_set() and lease.refused


class Unreachable(MemoryStore):
    def set_lease(self, *args: object, **kwargs: object) -> bool:
        raise StoreUnavailable("down")


class Frozen(MemoryStore):
    """A store whose every renewal hangs for a long time (a server paused)."""

    def set_lease(self, *args: object, **kwargs: object) -> bool:
        time.sleep(3)
        raise StoreUnavailable("no answer")


def test_a_keeper_that_cannot_renew_stops_the_attempt_before_the_lease_runs_out():
    store = Unreachable()
    keeper = LeaseKeeper(store, 1.0)
    lease = keeper.hold(lease_of(keeper))
    started = time.monotonic()
    assert wait_until(lease.lost.is_set)
    elapsed = time.monotonic() - started
    assert STOP_AT * 1.0 <= elapsed < 1.0  # before anyone could take it over
    assert not lease.refused  # somebody must still take the step over


def test_one_hanging_renewal_does_not_delay_stopping_the_other_attempts():
    keeper = LeaseKeeper(Frozen(), 1.0)
    leases = [keeper.hold(lease_of(keeper)) for _ in range(3)]
    started = time.monotonic()
    assert wait_until(lambda: all(lease.lost.is_set() for lease in leases), timeout=10)
    # The first renewal hangs for 3 s; every attempt was stopped before its lease ran
    # out all the same, by the checks made before and around the renewals.
    assert time.monotonic() - started < 1.0 + 0.5


def test_an_attempt_waiting_to_record_is_not_stopped_for_want_of_the_store():
    keeper = LeaseKeeper(Unreachable(), 1.0)
    lease = keeper.hold(lease_of(keeper))
    lease.settled = True  # its module returned: it only waits to record its outcome
    time.sleep(1.5)
    assert not lease.lost.is_set()


def test_a_lease_whose_claim_waited_for_the_store_is_renewed_before_work_starts():
    store = running_store("me")
    keeper = LeaseKeeper(store, 1.0)
    before = store.get_steps("r")["s"].lease_until
    # Claimed with an expiry computed 0.9 s ago: the claim's write waited for the store.
    lease = Lease("r", "s", None, 1, "me", 1.0, time.monotonic() - 0.9)
    keeper.fresh(lease)
    assert not lease.lost.is_set()
    assert store.get_steps("r")["s"].lease_until > before


def test_a_stale_lease_that_cannot_be_renewed_is_lost_before_work_starts():
    keeper = LeaseKeeper(Unreachable(), 1.0)
    lease = Lease("r", "s", None, 1, "me", 1.0, time.monotonic() - 0.9)
    keeper.fresh(lease)
    assert lease.lost.is_set() and not lease.refused
