"""Resume and re-run, on the in-memory and the MongoDB store (no broker needed)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import chordflow.engine.recovery
import pytest
from chordflow.engine.dispatch import TaskMessage
from chordflow.engine.embedded import EmbeddedExecutor
from chordflow.engine.lease import TAKEOVER_GRACE, LeaseKeeper
from chordflow.engine.memory_store import MemoryStore
from chordflow.engine.mongo_store import MongoStore
from chordflow.engine.state import RunStatus, StepStatus
from chordflow.errors import StoreUnavailable
from chordflow.workflow.loader import load_data


class LossyExecutor(EmbeddedExecutor):
    """Loses the first message for each step named in ``lose``, as a broker restart would."""

    lose: set[str]

    def dispatch(self, message: TaskMessage) -> None:
        if message.step in self.lose:
            self.lose.discard(message.step)
            return
        super().dispatch(message)


@pytest.fixture(params=["memory", "mongo"])
def lossy(request, settings):
    store = None
    if request.param == "mongo":
        url = request.getfixturevalue("mongo_url")
        store = MongoStore(url, f"r{uuid.uuid4().hex[:12]}")
    ex = LossyExecutor(settings=settings, store=store)
    ex.lose = set()
    yield ex
    ex.close()


DOC = {
    "name": "recover",
    "steps": [
        {"name": "a", "module": "echo", "params": {"x": 1}},
        {"name": "b", "module": "echo", "params": {"y": "${steps.a.outputs.x}"}},
        {"name": "c", "module": "echo", "depends_on": ["a", "b"]},
        {"name": "m", "module": "echo", "foreach": [1, 2, 3], "params": {"v": "${item}"}},
    ],
}


def test_resume_resends_lost_messages(lossy):
    lossy.lose = {"b", "m"}
    run_id = lossy.submit(lossy.compile(load_data(DOC)))
    assert lossy.wait(run_id, timeout=2) is RunStatus.RUNNING  # stuck: b and m[0] lost
    steps = lossy.store.get_steps(run_id)
    assert steps["b"].status is StepStatus.QUEUED and steps["c"].status is StepStatus.PENDING
    done = lossy.engine.resume(run_id)
    assert set(done.resent) == {"b", "m[0]"}
    assert lossy.wait(run_id, timeout=10) is RunStatus.SUCCEEDED
    steps = lossy.store.get_steps(run_id)
    assert steps["b"].attempts == 1 and steps["c"].status is StepStatus.SUCCEEDED
    assert steps["m"].outputs == {"items": [{"v": 1}, {"v": 2}, {"v": 3}]}
    assert not lossy.engine.resume(run_id)  # nothing left to do


def _held(lossy, run_id: str, step: str, holder: str, until: float) -> None:
    """Record ``step`` as picked up by ``holder``, with a lease until ``until``."""
    assert lossy.store.transition_step(run_id, step, {StepStatus.QUEUED}, StepStatus.RUNNING,
                                       attempt=0, attempts=1, worker="ghost@gone",
                                       holder=holder, lease_until=until)


def _dead_process_identity() -> str:
    """The lease-holder identity of a process of this machine that has exited."""
    done = subprocess.run([sys.executable, "-c",
                           "from chordflow.engine.lease import process_identity as p; print(p())"],
                          capture_output=True, text=True, timeout=30, check=True,
                          cwd=Path(__file__).resolve().parent.parent)
    return done.stdout.strip()


def test_resume_takes_over_at_once_an_attempt_whose_holder_is_gone(lossy):
    lossy.engine.leases = LeaseKeeper(lossy.store, 30.0)
    lossy.lose = {"b"}
    run_id = lossy.submit(lossy.compile(load_data(DOC)))
    lossy.wait(run_id, timeout=2)
    # b was picked up by a process of this machine that then died: its lease is still
    # live for a minute, but its holder is gone for sure.
    _held(lossy, run_id, "b", _dead_process_identity(), time.time() + 60)
    assert lossy.engine.resume(run_id).taken_over == ["b"]
    assert lossy.wait(run_id, timeout=10) is RunStatus.SUCCEEDED
    b = lossy.store.get_steps(run_id)["b"]
    assert b.attempts == 2 and b.worker != "ghost@gone"
    taken = [e for e in lossy.store.events(run_id) if e.type == "step_taken_over"]
    assert taken and taken[0].data["lease"] == "released"


def test_an_expired_lease_is_taken_over_only_after_the_grace(lossy, monkeypatch):
    monkeypatch.setattr(chordflow.engine.recovery, "TAKEOVER_GRACE", 1.0)
    lossy.engine.leases = LeaseKeeper(lossy.store, 30.0)
    lossy.lose = {"b"}
    run_id = lossy.submit(lossy.compile(load_data(DOC)))
    lossy.wait(run_id, timeout=2)
    _held(lossy, run_id, "b", "elsewhere/-/1", time.time() - 1)  # another host's, run out
    started = time.monotonic()
    assert lossy.engine.resume(run_id).taken_over == ["b"]
    assert lossy.store.get_steps(run_id)["b"].attempts == 1  # not yet: the grace first
    assert lossy.wait(run_id, timeout=10) is RunStatus.SUCCEEDED
    assert time.monotonic() - started >= 1.0
    assert lossy.store.get_steps(run_id)["b"].attempts == 2


def test_a_live_lease_is_never_taken_over_its_message_comes_back(lossy):
    lossy.engine.leases = LeaseKeeper(lossy.store, 30.0)
    lossy.lose = {"b"}
    run_id = lossy.submit(lossy.compile(load_data(DOC)))
    lossy.wait(run_id, timeout=2)
    _held(lossy, run_id, "b", "busy/-/1", time.time() + 3)
    sent: list[TaskMessage] = []
    lossy.dispatch = sent.append  # type: ignore[method-assign]
    assert not lossy.engine.resume(run_id).taken_over  # live: left alone
    lossy.engine.execute(TaskMessage(run_id, "b", None, 1, "recover"))  # a duplicate
    assert lossy.store.get_steps(run_id)["b"].status is StepStatus.RUNNING
    assert len(sent) == 1 and sent[0].attempt == 1 and sent[0].suspect is None
    assert 3 + TAKEOVER_GRACE - 1 < sent[0].countdown <= 3 + TAKEOVER_GRACE  # after it ran out
    # It comes back once the lease has run out: now it is suspected, not yet taken over.
    lossy.store.transition_step(run_id, "b", {StepStatus.RUNNING}, StepStatus.RUNNING,
                                lease_until=time.time() - 1)
    lossy.engine.execute(sent[0])
    assert sent[1].suspect is not None and sent[1].countdown == TAKEOVER_GRACE
    # Meanwhile the holder renewed: the suspicion is void, it comes back again later.
    lossy.store.transition_step(run_id, "b", {StepStatus.RUNNING}, StepStatus.RUNNING,
                                lease_until=time.time() + 3)
    lossy.engine.execute(sent[1])
    assert lossy.store.get_steps(run_id)["b"].attempts == 1 and sent[2].suspect is None


def test_without_leases_a_duplicate_of_a_running_attempt_is_dropped(lossy):
    lossy.lose = {"b"}
    run_id = lossy.submit(lossy.compile(load_data(DOC)))
    lossy.wait(run_id, timeout=2)
    lossy.store.transition_step(run_id, "b", {StepStatus.QUEUED}, StepStatus.RUNNING,
                                attempt=0, attempts=1, worker="busy@host")
    lossy.engine.execute(TaskMessage(run_id, "b", None, 1, "recover"))
    assert lossy.store.get_steps(run_id)["b"].status is StepStatus.RUNNING


def test_rerun_starts_from_the_failed_steps(lossy, tmp_path):
    flag = tmp_path / "ok"
    doc = {"name": "rerun", "steps": [
        {"name": "a", "module": "bash",
         "params": {"cmd": "echo once >> " + str(tmp_path / "a")}},
        {"name": "b", "module": "bash", "depends_on": ["a"],
         "params": {"cmd": f"test -f {flag}"}},
        {"name": "c", "module": "echo", "depends_on": ["b"], "params": {"x": 1}},
        {"name": "d", "module": "echo", "params": {"x": 2}},
        {"name": "m", "module": "bash", "foreach": [1, 2], "depends_on": ["b"],
         "params": {"cmd": "echo ${item}"}},
    ]}
    run_id = lossy.submit(lossy.compile(load_data(doc)))
    assert lossy.wait(run_id, timeout=10) is RunStatus.FAILED
    before = lossy.store.get_steps(run_id)
    assert before["c"].status is StepStatus.UPSTREAM_FAILED
    flag.write_text("")
    assert lossy.rerun(run_id) == ["b", "c", "m"]
    assert lossy.wait(run_id, timeout=10) is RunStatus.SUCCEEDED
    after = lossy.store.get_steps(run_id)
    assert (tmp_path / "a").read_text() == "once\n"  # a kept, not run again
    assert after["a"].started_at == before["a"].started_at
    assert after["b"].attempts == 2 and after["c"].status is StepStatus.SUCCEEDED
    assert after["m"].outputs["items"][1]["stdout"] == "2\n"
    with pytest.raises(ValueError, match="only a failed or cancelled run"):
        lossy.rerun(run_id)


def test_resume_counts_the_steps_it_decides(lossy):
    """A step recorded as finished whose children were never released: resume decides
    them, and counts those that are leaves, so the run still finishes."""
    lossy.lose = {"a", "x"}
    run_id = lossy.submit(lossy.compile(load_data({"name": "decide", "steps": [
        {"name": "a", "module": "echo", "params": {"x": 1}},
        {"name": "b", "module": "echo", "depends_on": ["a"],
         "when": "${steps.a.outputs.x} > 5"},
        {"name": "x", "module": "echo"}]})))
    assert lossy.wait(run_id, timeout=1) is RunStatus.RUNNING
    store = lossy.store
    # a's worker recorded it and died before releasing b.
    assert store.transition_step(run_id, "a", {StepStatus.QUEUED}, StepStatus.RUNNING,
                                 attempts=1)
    assert store.transition_step(run_id, "a", {StepStatus.RUNNING}, StepStatus.SUCCEEDED,
                                 outputs={"x": 1})
    lossy.engine.resume(run_id)
    assert lossy.wait(run_id, timeout=10) is RunStatus.SUCCEEDED
    assert store.get_steps(run_id)["b"].status is StepStatus.SKIPPED


def test_a_message_of_an_earlier_generation_cannot_claim_a_rerun_step(lossy):
    lossy.lose = {"b"}
    run_id = lossy.submit(lossy.compile(load_data({"name": "gen", "steps": [
        {"name": "a", "module": "echo"},
        {"name": "b", "module": "echo", "depends_on": ["a"]},
        {"name": "c", "module": "echo", "depends_on": ["b"]}]})))
    assert lossy.wait(run_id, timeout=1) is RunStatus.RUNNING  # b's message was lost
    lossy.cancel(run_id)
    lossy.lose = {"b"}  # the re-run's message for b is lost too, for now
    assert lossy.rerun(run_id) == ["b", "c"]
    assert lossy.store.get_steps(run_id)["b"].status is StepStatus.QUEUED
    # The cancelled generation's message turns up: it must not run the re-run's step.
    lossy.engine.execute(TaskMessage(run_id, "b", None, 1, "gen", generation=0))
    assert lossy.store.get_steps(run_id)["b"].status is StepStatus.QUEUED
    lossy.engine.execute(TaskMessage(run_id, "b", None, 1, "gen", generation=1))
    assert lossy.wait(run_id, timeout=10) is RunStatus.SUCCEEDED


def test_resume_releases_at_once_a_child_whose_parents_all_finished(lossy):
    """However a parent's count was lost, a resume sees every parent finished and
    releases the child then and there (no reconciler pass needed)."""
    lossy.lose = {"a", "b"}
    run_id = lossy.submit(lossy.compile(load_data({"name": "join", "steps": [
        {"name": "a", "module": "echo"}, {"name": "b", "module": "echo"},
        {"name": "c", "module": "echo", "depends_on": ["a", "b"]}]})))
    store = lossy.store
    for name in ("a", "b"):  # both ran and were recorded; b's count for c never landed
        assert store.transition_step(run_id, name, {StepStatus.QUEUED}, StepStatus.RUNNING,
                                     attempts=1)
        assert store.transition_step(run_id, name, {StepStatus.RUNNING},
                                     StepStatus.SUCCEEDED, outputs={})
    store.count_parent(run_id, "c", "a")
    assert store.get_steps(run_id)["c"].waiting_on == 1
    lossy.engine.resume(run_id)
    assert store.get_steps(run_id)["c"].status is not StepStatus.PENDING
    assert lossy.wait(run_id, timeout=10) is RunStatus.SUCCEEDED


class FlakyStore(MemoryStore):
    """A store that cannot be reached for its step-finishing writes while ``down``."""

    down = False

    def finish_step(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if self.down:
            raise StoreUnavailable("MongoDB is unreachable; waited 300s")
        return super().finish_step(*args, **kwargs)

    def transition_step(self, run_id, name, expect, status, **kwargs):  # type: ignore[no-untyped-def]
        if self.down and status is StepStatus.SUCCEEDED:
            raise StoreUnavailable("MongoDB is unreachable; waited 300s")
        return super().transition_step(run_id, name, expect, status, **kwargs)


def test_an_outcome_that_could_not_be_recorded_is_recorded_later_not_run_again(
        settings, tmp_path):
    """Past the store's patience, the attempt's outcome goes back to the broker inside
    the message: recorded once the store answers, and the step is not run again."""
    marker = tmp_path / "ran"
    store = FlakyStore()
    sent: list[TaskMessage] = []
    ex = EmbeddedExecutor(settings=settings, store=store)
    try:
        plan = ex.compile(load_data({"name": "later", "steps": [
            {"name": "a", "module": "bash", "params": {"cmd": f"echo x >> {marker}"}},
            {"name": "b", "module": "echo", "depends_on": ["a"]}]}))
        ex.dispatch = sent.append  # type: ignore[method-assign]
        run_id = ex.submit(plan)
        store.down = True
        with pytest.raises(StoreUnavailable) as caught:
            ex.engine.execute(sent.pop(0))
        pending = caught.value.pending
        assert isinstance(pending, TaskMessage) and pending.outcome["status"] == "succeeded"
        assert store.get_steps(run_id)["a"].status is StepStatus.RUNNING
        store.down = False
        ex.engine.execute(pending)  # the store is back
        assert store.get_steps(run_id)["a"].status is StepStatus.SUCCEEDED
        assert marker.read_text() == "x\n"  # ran once
        assert [line.text for line in store.logs(run_id, "a")] == ["INFO exit code 0"]
        ex.engine.execute(sent.pop(0))  # b, released by a's late record
        assert store.get_run(run_id).status is RunStatus.SUCCEEDED
    finally:
        ex.close()


def test_a_reconciler_pass_does_bounded_work_and_the_next_goes_on(mongo_url, settings):
    from chordflow.tasks.recovery import reconcile

    store = MongoStore(mongo_url, f"r{uuid.uuid4().hex[:12]}")
    ex = LossyExecutor(settings=settings, store=store)
    try:
        doc = load_data({"name": "bounded", "steps": [{"name": "a", "module": "echo"}]})
        runs = set()
        for _ in range(3):
            ex.lose = {"a"}
            runs.add(ex.submit(ex.compile(doc)))
        seen: set[str] = set()
        # (Other tests' runs may share the collections: nx-27017 ignores database names.)
        for _ in range(200):
            report = reconcile(ex.engine, None, 0.0, "chordflow", limit=1)
            assert len(report) <= 1  # one run a pass, no more
            seen |= set(report) & runs
            if seen == runs:
                break
        assert seen == runs  # each pass went on where the last stopped
        for run_id in runs:
            assert ex.wait(run_id, timeout=10) is RunStatus.SUCCEEDED
    finally:
        ex.close()
