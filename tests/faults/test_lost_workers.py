"""Workers killed and paused under running steps: a step is taken over only once its
lease is gone, its old attempt's processes die with it, and nothing runs twice.

The worker hit serves only the workload's long steps (``--queues long``), and is hit
while each of its steps is in the middle of its sleep: the fault lands before any of
their side effects (see tests/faults/workload.py). The other worker serves both
queues and runs the beat, so lost counts are made good by the reconciler as in any
deployment."""

from __future__ import annotations

import os
import signal
import time

import pytest
from chordflow.engine.lease import TAKEOVER_GRACE

from tests.faults.stack import (
    LEASE_SECONDS,
    alive,
    living_in_groups,
    signal_all,
    wait_until,
)
from tests.faults.workload import LONG_QUEUE, Workload, check

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def workload(tmp_path) -> Workload:
    return Workload(tmp_path, long_every=10, long_sleep=1.0)


def start_pair(fresh, name: str):
    """The worker to hit (long steps only, one at a time) and another that serves
    everything."""
    hit = fresh.start_worker(name, "--queues", LONG_QUEUE, "--concurrency", "1")
    fresh.start_worker("other", "--queues", f"chordflow,{LONG_QUEUE}", "--beat",
                       "--concurrency", "3", CHORDFLOW_RECONCILE_INTERVAL="5")
    return hit


def running_steps_of(workload, worker) -> list[tuple[int, int]]:
    """(step process, pool process) of the steps ``worker`` runs right now."""
    pool = set(worker.pool_pids())
    return [(pid, ppid) for pid, ppid in workload.step_pids() if ppid in pool and alive(pid)]


def mid_sleep(workload, worker) -> bool:
    """Is each of ``worker``'s pool processes running a step, in the middle of its
    sleep?"""
    pool = set(worker.pool_pids())
    running = [s for s in workload.started() if s.ppid in pool and alive(s.pid)]
    # Every pool process in a step's sleep: none is recording a step that just ended.
    return {s.ppid for s in running} == pool and all(s.in_the_middle() for s in running)


def taken_over(service, workload) -> int:
    return sum(1 for run_id in workload.run_ids for e in service.engine.store.events(run_id)
               if e.type == "step_taken_over")


def test_sigkill_of_a_worker_and_of_a_pool_process(fresh, service, workload):
    doomed = start_pair(fresh, "doomed")
    workload.submit(service)
    assert wait_until(lambda: workload.done_lines() >= 60 and mid_sleep(workload, doomed),
                      timeout=120, poll=0.02)
    victims = running_steps_of(workload, doomed)
    step_pid, pool_pid = victims[0]
    os.kill(doomed.proc.pid, signal.SIGKILL)  # the worker's main process
    os.kill(pool_pid, signal.SIGKILL)  # and the pool process running a step
    # The killed pool process's step dies with it (its reaper), before its side effect.
    assert wait_until(lambda: not living_in_groups({step_pid}), timeout=5)
    workload.wait(service, timeout=180)
    summary = check(workload, service)
    assert summary["takeovers"] >= 1


def test_a_short_pause_is_no_reason_to_take_over(fresh, service, tmp_path):
    """The operator's table: ``kill -STOP`` of a worker's main process, then
    ``chordflow reconcile``. Nothing is taken over: a main process that does not answer
    an ``inspect`` is not a dead worker, and its pool process goes on renewing the
    lease of the step it runs (a 10 s step here, paused for 8 s of it: twice the lease,
    and longer than any ``inspect`` would wait)."""
    workload = Workload(tmp_path, long_every=25, long_sleep=10.0)
    paused = start_pair(fresh, "paused")
    # A worker with time on its hands for the long steps: were the paused step taken
    # over, nothing would delay it.
    fresh.start_worker("spare", "--queues", LONG_QUEUE, "--concurrency", "8")
    workload.submit(service)
    assert wait_until(lambda: mid_sleep(workload, paused), timeout=120, poll=0.02)
    os.kill(paused.proc.pid, signal.SIGSTOP)
    try:
        done = fresh.chordflow("reconcile", timeout=60)
        assert done.returncode == 0, done.stderr
        time.sleep(4)  # the reconcile took about 4 s of the 8
    finally:
        os.kill(paused.proc.pid, signal.SIGCONT)
    workload.wait(service, timeout=180)
    check(workload, service)
    assert taken_over(service, workload) == 0


def test_a_long_pause_is_taken_over_and_the_paused_attempt_stops_itself(
        fresh, service, workload):
    """Paused for longer than the lease, a worker's step is taken over; once the worker
    goes on, its paused attempt stops without recording anything and without writing
    its side effect. (Its step processes are resumed only after the worker: on a real
    host all wake together, and a command can win that race; what chordflow owes is
    that the attempt stops itself and records nothing, which is what is checked.)"""
    paused = start_pair(fresh, "frozen")
    workload.submit(service)
    assert wait_until(lambda: workload.done_lines() >= 60 and mid_sleep(workload, paused),
                      timeout=120, poll=0.02)
    own = paused.tree()
    signal_all(own, signal.SIGSTOP)
    steps = running_steps_of(workload, paused)
    groups = {pid for pid, _ in steps}
    for group in groups:
        os.killpg(group, signal.SIGSTOP)
    frozen = [p for p in own if p not in groups]
    try:
        # Taken over by the other worker once the lease ran out and stayed so.
        assert wait_until(lambda: taken_over(service, workload) >= len(groups),
                          timeout=LEASE_SECONDS + TAKEOVER_GRACE + 60)
        fresh.chordflow("reconcile", timeout=60)
        signal_all(frozen, signal.SIGCONT)  # the worker first: it stops its attempts
        assert wait_until(lambda: not living_in_groups(groups), timeout=10)
    finally:
        for group in groups:
            try:
                os.killpg(group, signal.SIGCONT)
            except ProcessLookupError:
                pass
        signal_all(own, signal.SIGCONT)
    workload.wait(service, timeout=180)
    summary = check(workload, service)
    assert summary["takeovers"] >= len(groups)
    log = paused.log.read_text()
    assert "lost its lease" in log


def test_a_paused_pool_process_has_its_steps_killed_before_its_lease_runs_out(
        fresh, service, tmp_path):
    """Only the process running a step is paused (a debugger, a long GC pause): its
    step's own processes would go on, unwatched, while the step is taken over. The
    reaper, which is not paused, kills them when the lease is about to run out, so the
    step still runs exactly once (a 10 s step here, twice and a half the lease)."""
    workload = Workload(tmp_path, long_every=25, long_sleep=10.0)
    paused = start_pair(fresh, "gc-paused")
    workload.submit(service)
    assert wait_until(lambda: mid_sleep(workload, paused), timeout=120, poll=0.02)
    (step_pid, pool_pid), = running_steps_of(workload, paused)
    os.kill(pool_pid, signal.SIGSTOP)
    try:
        assert wait_until(lambda: not living_in_groups({step_pid}), timeout=LEASE_SECONDS)
        assert wait_until(lambda: taken_over(service, workload) >= 1,
                          timeout=LEASE_SECONDS + TAKEOVER_GRACE + 60)
    finally:
        os.kill(pool_pid, signal.SIGCONT)
    workload.wait(service, timeout=180)
    check(workload, service)


@pytest.fixture
def batching_service(fresh):
    """A submitter that batches a short ``foreach`` (whoever expands a list batches
    it: the submitter, for a list of up to 1,000)."""
    from chordflow.service import RunService

    service = RunService.celery(fresh.settings().model_copy(
        update={"foreach_min_messages": 20}))
    try:
        yield service
    finally:
        service.close()


def test_a_worker_killed_mid_batch_runs_no_element_twice_and_counts_each_once(
        fresh, batching_service, tmp_path):
    """A long ``foreach`` goes in batches (here 300 elements in 20 messages of 15). A
    worker killed while it runs an element of a batch has that batch delivered again:
    the elements it finished are skipped (and counted, which the killed delivery had
    left to the end of its batch), the element it was running is taken over, and every
    element's side effect is written once."""
    from collections import Counter

    from chordflow.engine.state import RunStatus, StepStatus
    from chordflow.workflow.loader import load_data

    service = batching_service
    n, batches = 300, {"CHORDFLOW_FOREACH_MIN_MESSAGES": "20"}
    pids, sidefx = tmp_path / "pids", tmp_path / "sidefx"
    # One pool process, as for the other kills here: a SIGKILLed worker's other pool
    # processes go on alone for a while (orphans), which is not this test's fault.
    doomed = fresh.start_worker("batches", "--concurrency", "1", **batches)
    fresh.start_worker("other", "--beat", "--concurrency", "3",
                       CHORDFLOW_RECONCILE_INTERVAL="5", **batches)
    # Every seventh element sleeps a second: the kill lands in one of those, after
    # the elements before it in its batch finished.
    run_id = service.submit(load_data({"name": "batched", "steps": [{
        "name": "each", "module": "bash",
        "foreach": [{"i": i, "sleep": int(i % 7 == 6)} for i in range(n)],
        "params": {"cmd": f"echo $$ $PPID $(date +%s.%N) ${{item.i}} >> {pids}; "
                          f"sleep ${{item.sleep}}; echo ${{item.i}} >> {sidefx}"}}]}))

    def sleeping_on_doomed() -> tuple[int, int] | None:
        pool = set(doomed.pool_pids())
        lines = pids.read_text().splitlines() if pids.exists() else []
        for line in lines:
            parts = line.split()
            if len(parts) == 4 and int(parts[1]) in pool and int(parts[3]) % 7 == 6 \
                    and 0.1 < time.time() - float(parts[2]) < 0.6 and alive(int(parts[0])):
                return int(parts[0]), int(parts[1])
        return None

    assert wait_until(lambda: sleeping_on_doomed() is not None, timeout=120, poll=0.02)
    victim = sleeping_on_doomed()
    assert victim is not None
    step_pid, pool_pid = victim
    os.kill(doomed.proc.pid, signal.SIGKILL)
    os.kill(pool_pid, signal.SIGKILL)
    assert wait_until(lambda: not living_in_groups({step_pid}), timeout=5)
    assert service.wait(run_id, timeout=240) is RunStatus.SUCCEEDED
    each = service.engine.store.get_steps(run_id, ["each"])["each"]
    items = each.items or []
    assert len({i.task_id for i in items}) < n  # they did go in batches
    lines = Counter(sidefx.read_text().split())
    assert sorted(lines, key=int) == [str(i) for i in range(n)]
    assert {k: v for k, v in lines.items() if v != 1} == {}
    assert all(i.status is StepStatus.SUCCEEDED for i in items)
    assert each.items_left == 0  # counted exactly: not left to a resume's gather
    assert sum(1 for e in service.engine.store.events(run_id)
               if e.type == "step_taken_over") >= 1
