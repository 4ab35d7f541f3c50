"""Getting runs going again: resume after lost messages, re-run after a failure.

Both work from the store alone, so they survive any restart:

- ``resume`` re-sends what a running run is waiting for: queued attempts whose
  messages may be lost (a broker restarted empty), running attempts whose lease was
  given up or ran out (taken over as a new attempt, see app/engine/lease.py), steps
  whose parents all finished but that were never released (a worker died between
  recording a step and releasing its children), ``foreach`` steps whose elements all
  finished but that were never gathered, and slots left free. Every one of these
  actions is idempotent, so resuming a healthy run changes nothing, and the periodic
  reconciler can resume every running run.

  The reconciler resends a queued attempt's message with growing delays
  (``backoff``): ``grace`` seconds after it was queued, then twice that after the
  first resend, four times after the second, ... (each wait at most
  ``MAX_RESEND_DELAY``), counting its resends in the record. A step queued where no
  worker listens is then not sent again at every pass, and its messages do not pile
  up; the pass reports which queues such steps wait on.
- ``rerun`` starts a failed (or cancelled) run again from its failed steps, keeping
  the outputs of the steps that succeeded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from chordflow.engine.dispatch import TaskKey
from chordflow.engine.lease import TAKEOVER_GRACE, LeaseState, holder_gone, lease_state
from chordflow.engine.records import ItemRecord, StepRecord, now
from chordflow.engine.state import STEP_FINISHED, RunStatus, StepStatus

if TYPE_CHECKING:
    from chordflow.engine.engine import Engine
    from chordflow.engine.plan import StepPlan
    from chordflow.engine.records import RunRecord

#: The longest the reconciler waits between two resends of one queued attempt.
MAX_RESEND_DELAY = 3600.0


def resend_due(queued_at: float, grace: float, resends: int) -> float:
    """When a queued attempt resent ``resends`` times is due for its next resend."""
    return queued_at + sum(min(grace * 2 ** k, MAX_RESEND_DELAY) for k in range(resends + 1))


#: Steps a re-run starts again: the failed ones and those they stopped.
RERUN_STATUSES = frozenset(
    {StepStatus.FAILED, StepStatus.UPSTREAM_FAILED, StepStatus.CANCELLED}
)


@dataclass
class Recovered:
    """What a resume did, step by step (tokens like ``fetch`` or ``each[3]``)."""

    resent: list[str] = field(default_factory=list)
    taken_over: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    gathered: list[str] = field(default_factory=list)
    #: Attempts queued for longer than the grace, by queue (None: the default queue).
    waiting: dict[str | None, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.resent or self.taken_over or self.released or self.gathered)


class Recovery:
    """``resume`` and ``rerun``, mixed into the Engine (they need its transitions)."""

    def resume(
        self: Engine,
        run_id: str,
        *,
        grace: float = 0.0,
        backoff: bool = False,
        start_pending: bool = True,
    ) -> Recovered:
        """Re-send whatever a running run waits for; see the module docstring.

        ``grace`` leaves alone attempts queued less than that many seconds ago (their
        messages are most likely still on their way); ``backoff`` resends an attempt
        again only after a delay that doubles with each resend (the reconciler).

        A run still pending after ``grace`` was recorded by a submitter that stopped
        before starting it, and whose client was told of an error. Asked explicitly
        (``chordflow resume``), it starts; otherwise (``start_pending`` false: the
        reconciler) it is failed, saying so, rather than started behind the back of a
        client that has most likely submitted it again.
        """
        done = Recovered()
        run = self.store.get_run(run_id)
        if run.status is RunStatus.PENDING:
            if run.created_at > time.time() - grace:
                return done  # its submitter is most likely starting it right now
            if start_pending:
                self.start(run_id)
            elif self.store.set_run_status(
                    run_id, {RunStatus.PENDING}, RunStatus.FAILED, finished_at=now(),
                    error="the submission did not complete (its submitter stopped before "
                          "starting the run); submit it again"):
                self._event(run_id, "run_failed", data={"error": "submission incomplete"})
            done.released.append("*")
            return done
        if run.status is not RunStatus.RUNNING:
            return done
        plan = self.plan_for(run)
        steps = self.store.get_steps(run_id, plan.order)  # by id: see Engine.steps_of
        clock = time.time()

        # A step recorded as finished whose children were never released: count it for
        # them again (counting a parent twice changes nothing). A count for the run that
        # was lost is made up for below, by finishing a run whose steps all finished.
        recount = [
            name for name in plan.order if steps[name].status in STEP_FINISHED
            and any(steps[c].status is StepStatus.PENDING for c in plan.steps[name].children)
        ]
        if recount:
            self._propagate(run, plan, recount, count_run=False, again=True)
            steps = self.store.get_steps(run_id, plan.order)
        for name in plan.order:  # counted, but the release itself was lost
            if steps[name].status is StepStatus.PENDING and all(
                steps[p].status in STEP_FINISHED for p in plan.steps[name].parents
            ):
                if self._release(run, plan, name, again=True):
                    self._propagate(run, plan, [name], again=True)
                done.released.append(name)
        if done.released or recount:
            steps = self.store.get_steps(run_id, plan.order)

        for name in plan.order:
            rec, sp = steps[name], plan.steps[name]
            if rec.items is not None and rec.status in (StepStatus.QUEUED, StepStatus.RUNNING) \
                    and all(item.status in STEP_FINISHED for item in rec.items):
                self.gather(run_id, name)
                done.gathered.append(name)
                continue
            units: list[tuple[TaskKey, StepRecord | ItemRecord]] = (
                [(TaskKey(name), rec)] if rec.items is None
                else [(TaskKey(name, i), item) for i, item in enumerate(rec.items)]
            )
            for key, unit in units:
                if unit.status is StepStatus.READY and rec.status is not StepStatus.PENDING:
                    # Its queueing, or a retry's return for a slot, was lost.
                    self._admit(run, sp, key)
                    done.resent.append(key.token)
                elif unit.status is StepStatus.QUEUED:
                    queued = unit.queued_at or 0
                    if queued > clock - grace:
                        continue
                    done.waiting[sp.step.queue] = done.waiting.get(sp.step.queue, 0) + 1
                    if backoff and clock < resend_due(queued, grace, unit.resends):
                        continue
                    if self.store.record_resend(run_id, name, key.index, unit.queued_at,
                                                unit.resends):
                        self.dispatcher.dispatch(
                            self._message(run, sp, key, unit.attempts + 1, 0.0))
                        done.resent.append(key.token)
                elif unit.status is StepStatus.RUNNING and self.leases is not None:
                    if self._take_over(run, sp, key, unit):
                        done.taken_over.append(key.token)
        steps = self.store.get_steps(run_id, plan.order)
        if all(rec.status in STEP_FINISHED for rec in steps.values()):
            self._finish_run(run_id, plan)  # the count that would have finished it was lost
        elif run.max_parallel is not None:  # free slots, waiting keys: admit them
            for token in self.store.release(run_id, "", run.max_parallel):
                admitted = TaskKey.parse(token)
                self._queue(run, plan.steps[admitted.step], admitted)
                done.resent.append(token)
        if done:
            self._event(run_id, "run_resumed", data={
                "resent": done.resent, "taken_over": done.taken_over,
                "released": done.released, "gathered": done.gathered,
            })
        return done

    def _take_over(self: Engine, run: RunRecord, sp: StepPlan, key: TaskKey,
                   unit: StepRecord | ItemRecord) -> bool:
        """Send the message that takes over a running attempt whose lease is no longer
        live (False if it is). A holder known to be gone (a process of this machine
        that no longer exists) has its lease given up first, so that a worker on any
        host takes the step over at once; an expired lease is taken over by a message
        that comes back after the grace, if the lease is still the same."""
        state = lease_state(unit.lease_until, unit.holder)
        if state is LeaseState.LIVE:
            return False
        message = self._message(run, sp, key, unit.attempts, 0.0)
        if state is LeaseState.RELEASED and holder_gone(unit.holder):
            self.store.set_lease(run.id, sp.name, key.index, unit.attempts,
                                 unit.holder or "", 0.0)
        elif state is LeaseState.EXPIRED:
            message = replace(message, suspect=unit.lease_until, countdown=TAKEOVER_GRACE)
        self.dispatcher.dispatch(message)
        return True

    def rerun(self: Engine, run_id: str) -> list[str]:
        """Run a failed or cancelled run again from its failed steps; return those reset.

        Steps that succeeded (or were skipped by their own condition) keep their records
        and outputs; attempts keep counting, as Airflow's try numbers do.
        """
        run = self.store.get_run(run_id)
        if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
            raise ValueError(f"run {run_id} is {run.status}; only a failed or cancelled "
                             "run can be re-run")
        plan = self.plan_for(run)
        steps = self.store.get_steps(run_id, plan.order)
        reset = [name for name in plan.order if steps[name].status in RERUN_STATUSES
                 or steps[name].status not in STEP_FINISHED]
        if not reset:
            return []
        again = set(reset)
        waiting = {name: sum(1 for p in plan.steps[name].parents if p in again)
                   for name in reset}
        forget = [(parent, child) for parent in reset for child in plan.steps[parent].children]
        self.store.reset_steps(run_id, waiting, forget, run.reruns + 1)
        if not self.store.set_run_status(
            run_id, {RunStatus.FAILED, RunStatus.CANCELLED}, RunStatus.RUNNING,
            error=None, finished_at=None, outputs=None, steps_left=len(reset),
            count_all=True, reruns=run.reruns + 1,
        ):
            raise ValueError(f"run {run_id} changed while it was being re-run")
        self._event(run_id, "run_rerun", data={"steps": reset, "at": now()})
        run = self.store.get_run(run_id)
        finished = [name for name in reset
                    if waiting[name] == 0 and self._release(run, plan, name)]
        if finished:
            self._propagate(run, plan, finished)
        return reset
