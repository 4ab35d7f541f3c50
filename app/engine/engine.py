"""The engine: every state transition of a run, shared by every executor.

Execution is choreography (DESIGN.md, "Execution model"). There is no central
scheduler loop: the task that finishes a step records the result and releases the
children it unblocked. A child with several parents is released by an idempotent
counter in the store, so the last parent to finish releases it exactly once, and a
step starts as soon as its own parents are done. A child that will not run (a failed
parent, a skipped parent, a false ``when``) is decided on the spot and releases its
own children in turn, iteratively, so a chain of ten thousand skipped steps needs no
deep recursion.

Every write is a compare-and-set on the state the caller expects, so duplicated or
late messages (a redelivery, a timed-out attempt that returns after all) change
nothing. The one exception is deliberate: where workers can be lost under a running
step (Celery), each running attempt holds a lease that its process renews, and a
message for an attempt whose lease was given up or has run out takes the step over as
a new attempt (app/engine/lease.py); that is how a step survives a worker killed
mid-step, without ever running twice at once.

Executors differ only in how a :class:`TaskMessage` reaches :meth:`Engine.execute`: a
thread pool for the embedded executor, Celery for workers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from chordflow.connections.catalog import Catalog, Resolved
from chordflow.data.staging import Staged, Stager
from chordflow.engine.counting import RunCounts
from chordflow.engine.dispatch import MIN_BATCHES, Dispatcher, TaskKey, TaskMessage
from chordflow.engine.eventlog import EventLog
from chordflow.engine.invoke import call_step
from chordflow.engine.lease import (
    TAKEOVER_GRACE,
    Lease,
    LeaseKeeper,
    LeaseState,
    lease_state,
    process_identity,
)
from chordflow.engine.live_output import LiveOutput
from chordflow.engine.outcome import Outcome
from chordflow.engine.plan import Plan, StepPlan, compile_plan
from chordflow.engine.recent import Recent
from chordflow.engine.records import Event, ItemRecord, LogLine, RunRecord, StepRecord, now
from chordflow.engine.recovery import Recovery
from chordflow.engine.redaction import redact
from chordflow.engine.release import Release
from chordflow.engine.state import (
    CLAIMABLE,
    QUEUED_ONLY,
    RUNNING_ONLY,
    STEP_FINISHED,
    STEP_UNFINISHED,
    RunStatus,
    StepStatus,
)
from chordflow.engine.store import Store
from chordflow.engine.waiting import cancel_job, job_record, recorded_job, resume_state
from chordflow.errors import (
    ChordflowError,
    DispatchFailed,
    ReferenceResolutionError,
    RunNotFound,
    StepCancelled,
    StepFailed,
    StepWaiting,
    StoreUnavailable,
    ValidationFailed,
)
from chordflow.modules.context import CapturingLogger, StepContext, step_environment
from chordflow.modules.limits import Captured, log_batches, log_pieces, oversized_outputs
from chordflow.modules.registry import ParamsInvalid, Registry
from chordflow.workflow.limits import Limits
from chordflow.workflow.limits import current as current_limits
from chordflow.workflow.models import Workflow
from chordflow.workflow.templating import resolve_in
from pydantic import ValidationError as PydanticValidationError

#: Attempts a step may take over beyond its retries after losing its worker.
MAX_TAKEOVERS = 3
#: Running runs whose records a worker keeps (see ``Engine.running_run``).
RUN_CACHE_SIZE = 256

log = logging.getLogger("chordflow.engine")
step_log = logging.getLogger("chordflow.step")


FinishCallback = Callable[[str, RunStatus], None]
#: A new cancel event for one task, watched while inside (tasks/cancel_watch.py).
CancelEvents = Callable[[], AbstractContextManager[threading.Event]]


def new_run_id() -> str:
    return uuid.uuid4().hex


class Engine(Release, Recovery):
    """Runs plans against a store, handing tasks to a dispatcher."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        dispatcher: Dispatcher,
        *,
        secrets: Mapping[str, str] | None = None,
        workdir: os.PathLike[str] | str | None = None,
        on_finish: FinishCallback | None = None,
        worker: str | None = None,
        lease_seconds: float | None = None,
        count_linger: float | None = None,
        step_env: Mapping[str, str] | None = None,
        file_roots: Iterable[os.PathLike[str] | str] | None = None,
        limits: Limits | None = None,
        expand_elsewhere: int | None = None,
        stager: Stager | None = None,
        connections: Catalog | None = None,
        foreach_batch: int = 1,
        foreach_min_messages: int = MIN_BATCHES,
    ):
        self.store = store
        self.events = EventLog(store)
        #: Steps counted for their run; ``count_linger`` batches a task's counts (see
        #: app/engine/counting.py), worth it where each count is a round trip.
        self.counts = RunCounts(store, self._counted_out, count_linger)
        self.registry = registry
        self.dispatcher = dispatcher
        self.secrets = dict(secrets or {})
        #: Runs steps' ``stage_in`` and ``stage_out`` through this host's stage cache
        #: (app/data/staging.py); made from the settings on first use if not given.
        self._stager = stager
        #: The named connections steps may use (chordflow.connections); their
        #: credentials come from ``secrets``, so they are masked like every secret.
        self.connections = connections or Catalog()
        #: What steps' subprocesses inherit of this process's environment.
        self.step_env = dict(step_environment() if step_env is None else step_env)
        #: Where steps' local paths may lead besides their run's scratch directory
        #: (modules/paths.py); None: anywhere, for a local run of the user's own.
        self.file_roots = None if file_roots is None else tuple(Path(r) for r in file_roots)
        #: How large a run may grow as it runs (a referenced ``foreach`` list), and
        #: what a step may leave behind (its outputs, its captured output per attempt).
        self.limits = limits or current_limits()
        #: A ``foreach`` list longer than this is expanded by a worker (a message), not
        #: here: the API and the CLI submit without sending 100,000 messages themselves.
        #: None: expand here (workers, the embedded executor).
        self.expand_elsewhere = expand_elsewhere
        self.workdir = workdir
        self.on_finish = on_finish
        #: Who runs the attempts this engine executes (Celery: the worker's node name).
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        #: Leases on running attempts, where a worker can be lost under one (Celery);
        #: None in one process, where nothing is lost without the whole run.
        self.leases = LeaseKeeper(store, lease_seconds) if lease_seconds else None
        #: Running attempts' output, in the store about once a second as they run.
        self.live_output = LiveOutput(
            store, lambda: self.worker,
            lambda text: redact(text, self.secrets) if self.secrets else text)
        #: What recorded runs' plans compile against: a worker compiles a run that
        #: another host validated, and a module missing here must fail only its own
        #: steps, at once, naming this worker (Registry.tolerant).
        self.plan_registry = registry.tolerant()
        #: A ``foreach`` becomes a Celery chord where the dispatcher can send one.
        self.chords = bool(getattr(dispatcher, "supports_chords", False))
        #: The most elements of a chord one message carries (dispatch.foreach_batches).
        self.foreach_batch = foreach_batch
        self.foreach_min_messages = foreach_min_messages
        #: The batch this thread runs (``_run_batch``): its elements' counts wait for it.
        self._batch = threading.local()
        self._plans: dict[str, Plan] = {}
        self._plans_lock = threading.Lock()
        #: Running runs by (id, re-run generation): what a task needs of its run (id,
        #: variables, max_parallel) never changes within a generation, so a worker reads
        #: it once rather than once per step.
        self._runs: Recent[tuple[str, int], RunRecord] = Recent(RUN_CACHE_SIZE)
        #: ``foreach`` steps this process marked running (see ``_mark_started``).
        self._started: Recent[tuple[str, str, int], bool] = Recent(RUN_CACHE_SIZE)

    # -- plans ---------------------------------------------------------------------

    def compile(self, workflow: Workflow) -> Plan:
        """Validate and compile a workflow submitted here (its secrets must exist)."""
        plan = compile_plan(workflow, self.registry, self.secrets.keys())
        with self._plans_lock:
            self._plans[plan.digest] = plan
        return plan

    def plan_for(self, run: RunRecord) -> Plan:
        """The run's plan, compiled once per process and cached by content digest."""
        plan = self._plans.get(run.digest)
        if plan is None:
            definition = self.store.get_workflow(run.id)
            try:
                workflow = (
                    definition
                    if isinstance(definition, Workflow)
                    else Workflow.model_validate(definition)
                )
                plan = compile_plan(workflow, self.plan_registry)
            except (PydanticValidationError, ValidationFailed) as exc:
                # Written by something other than a submission (a hand-made record, a
                # module gone since): as unreadable as a missing definition.
                raise RunNotFound(f"run '{run.id}' names workflow {run.digest}, which "
                                  f"does not compile here: {exc}") from None
            with self._plans_lock:
                self._plans.setdefault(plan.digest, plan)
        return plan

    def steps_of(self, run: RunRecord) -> dict[str, StepRecord]:
        """Every step record of the run in the plan's order, looked up by id.

        A query by ``run_id`` needs the secondary index, which a MongoDB-protocol server
        like nx-27017 does not use: it reads the whole collection, so every report,
        API read and run end grew slower with the number of steps ever recorded. By
        ``_id`` it costs the same at any size, on every server.
        """
        order = self.plan_for(run).order
        found = self.store.get_steps(run.id, order)
        return {name: found[name] for name in order}  # in the plan's order

    # -- starting, cancelling -------------------------------------------------------------

    def submit(
        self,
        plan: Plan,
        variables: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        trigger: str = "manual",
    ) -> str:
        """Record a new pending run of ``plan``; ``start`` sets it going."""
        with self._plans_lock:
            self._plans.setdefault(plan.digest, plan)
        run = RunRecord(
            id=run_id or new_run_id(),
            workflow=plan.name,
            version=plan.workflow.version,
            digest=plan.digest,
            variables=plan.effective_variables(variables),
            steps_left=len(plan.leaves),
            max_parallel=plan.workflow.max_parallel,
            trigger=trigger,
        )
        steps = [
            StepRecord(
                run_id=run.id,
                name=sp.name,
                module=sp.module,
                method=sp.method_name,
                waiting_on=len(sp.parents),
            )
            for sp in plan.steps.values()
        ]
        self.store.create_run(run, steps, plan.workflow)
        self._event(run.id, "run_created", data={"workflow": plan.name, "trigger": trigger})
        return run.id

    def start(self, run_id: str) -> None:
        """Set a pending run going: its roots are queued and sent.

        If the dispatcher cannot send them (the broker is down), the run is recorded
        failed with the reason, so that nothing starts it later (a retried submission
        then starts exactly one run), and DispatchFailed is raised.
        """
        if not self.store.set_run_status(
            run_id, {RunStatus.PENDING}, RunStatus.RUNNING, started_at=now()
        ):
            return
        self._event(run_id, "run_started")
        run = self.store.get_run(run_id)
        plan = self.plan_for(run)
        try:
            self._start_roots(run, plan)
        except DispatchFailed as exc:
            error = f"the run could not start: {exc}"
            if self.store.set_run_status(run_id, {RunStatus.RUNNING}, RunStatus.FAILED,
                                         finished_at=now(), error=error):
                self._event(run_id, "run_failed", data={"error": error})
                if self.on_finish:
                    self.on_finish(run_id, RunStatus.FAILED)
            raise DispatchFailed(f"{exc}; run {run_id} is recorded failed and will not "
                                 "start: submit it again once the broker answers") from exc

    def _start_roots(self, run: RunRecord, plan: Plan) -> None:
        # Roots with nothing to decide are queued in one write (a wide fan-out has
        # thousands), then sent together; a cancel meanwhile leaves theirs cancelled,
        # and their claim fails.
        plain = [name for name in plan.roots if run.max_parallel is None
                 and plan.steps[name].when is None and plan.steps[name].foreach is None]
        if plain:
            self.store.queue_steps(run.id, plain, now())
            self.dispatcher.dispatch_many([
                self._message(run, plan.steps[name], TaskKey(name), 1, 0.0)
                for name in plain])
        known: dict[str, StepRecord | None] = {}
        queued = set(plain)
        finished = [name for name in plan.roots
                    if name not in queued and self._release(run, plan, name, known)]
        if finished:
            self._propagate(run, plan, finished, known)

    def cancel(self, run_id: str, reason: str = "cancelled") -> bool:
        """Cancel a pending or running run: nothing more starts, running work is stopped."""
        if not self.store.set_run_status(
            run_id,
            {RunStatus.PENDING, RunStatus.RUNNING},
            RunStatus.CANCELLED,
            finished_at=now(),
            error=reason,
        ):
            return False
        reruns = self.store.get_run(run_id).reruns
        task_ids: list[str] = []
        #: Steps and foreach elements waiting for a job elsewhere
        #: (app/engine/waiting.py): their jobs are cancelled too.
        jobs: dict[TaskKey, dict[str, Any]] = {}
        # Twice: a step released while the first sweep ran is caught by the second. By
        # run_id, not steps_of: a cancel must not depend on the plan still compiling.
        for _ in range(2):
            for name, rec in self.store.get_steps(run_id).items():
                task_ids += _live_task_ids(run_id, name, rec, reruns)
                jobs.update(_live_jobs(name, rec))
                self._cancel_step(run_id, name, rec, reason)
        self.dispatcher.revoke(run_id, task_ids)
        for key, job in jobs.items():
            self._cancel_job(run_id, key, job)
        self._event(run_id, "run_cancelled", data={"reason": reason})
        if self.on_finish:
            self.on_finish(run_id, RunStatus.CANCELLED)
        return True

    def _cancel_step(self, run_id: str, name: str, rec: StepRecord, reason: str) -> None:
        if rec.status in STEP_UNFINISHED:
            self.store.transition_step(run_id, name, STEP_UNFINISHED, StepStatus.CANCELLED,
                                       finished_at=now(), error=reason)
            # Read again: the step may have become ready, with items, meanwhile.
            rec = self.store.get_steps(run_id, (name,))[name]
        for index, item in enumerate(rec.items or ()):
            if item.status in STEP_UNFINISHED:
                self.store.transition_item(run_id, name, index, STEP_UNFINISHED,
                                           StepStatus.CANCELLED, finished_at=now(),
                                           error=reason)

    # -- executing one task ----------------------------------------------------------------

    def execute(
        self,
        msg: TaskMessage,
        cancel_event: threading.Event | None = None,
        deadline: float | None = None,
        task_id: str | None = None,
        cancel_events: CancelEvents | None = None,
    ) -> str | None:
        """Run one attempt of one step (or ``foreach`` element), then release its children.

        ``deadline`` (a ``time.monotonic()`` value) is when the attempt must stop; by
        default ``timeout`` seconds from now. An executor that watches the deadline
        itself passes the one it watches, so both agree on when time is up. ``task_id``
        is the executor's id for this delivery, recorded so a cancel can revoke it.

        Never raises for a step's own failure: that is recorded, and its error returned
        if the step failed for good (an executor may show the task as failed). A
        message for a step that is not queued for exactly this attempt is a duplicate
        and does nothing. StoreUnavailable if the store stays unreachable past its
        patience (with ``pending`` set if the attempt ran: its outcome, to record later).

        A batch of ``foreach`` elements (``msg.batch``) runs them one after the other,
        each with a cancel event of its own from ``cancel_events``; see ``_run_batch``.
        """
        with self.events.deferred():
            if msg.batch:
                failure = self._run_batch(msg, cancel_events, task_id, cancel_event)
            else:
                failure = self._execute(msg, cancel_event, deadline, task_id)
        # The attempt's events are in the store before its message is acknowledged: a
        # worker killed right after a step finished loses none of that step's story.
        # (After its children were sent, so no step waits for this write.) A store gone
        # meanwhile leaves them to the background writer: the step itself is recorded.
        try:
            self.events.flush()
        except StoreUnavailable:
            log.warning("the events of %s wait for the store", msg.task_id)
        return failure

    def _run_batch(self, msg: TaskMessage, cancel_events: CancelEvents | None,
                   task_id: str | None, cancelled: threading.Event | None = None
                   ) -> str | None:
        """Run a batch's elements in turn, each exactly as if it had a message of its own
        (its claim, lease, record, retry and count are its own), but read together and
        counted together. Elements already finished (a redelivered batch, a cancelled
        run) cost nothing, and once ``cancelled`` is set (the run was cancelled) the
        batch stops. The failures of those that failed for good, if any.

        A store outage past its patience raises StoreUnavailable with ``pending`` (the
        element's outcome to record, or else the batch) and ``rest`` (then the batch
        again, to come back later: what is finished by then is skipped and counted),
        for the executor to send back.
        """
        run = self.running_run(msg)
        if run is None:
            return None
        items = self.store.get_items(run.id, msg.step, msg.elements)
        failures: list[str] = []
        finished: list[int] = []  # by this batch, counted together below
        self._batch.finished = ((run.id, msg.step), finished)
        try:
            for index in msg.elements:
                if cancelled is not None and cancelled.is_set():
                    return None  # the cancel recorded every element left
                item = items.get(index)
                if item is None or item.status in STEP_FINISHED:
                    continue
                element = replace(msg, index=index, batch=0)
                try:
                    with cancel_events() if cancel_events else nullcontext(None) as event:
                        failure = self._execute(element, event, None, task_id, item)
                except StoreUnavailable as exc:
                    # The batch comes back whole, after the element's outcome (if it
                    # ran): its finished elements are counted then.
                    exc.rest = msg if exc.pending is not None else None  # type: ignore
                    exc.pending = exc.pending or msg
                    raise
                except DispatchFailed:
                    raise  # what it had to send could not be: the batch goes back whole
                except Exception as exc:  # recorded for this element; the others go on
                    self.fail_unexpected(element, exc, task_id=task_id)
                    failure = f"internal error: {type(exc).__name__}: {exc}"
                if failure is not None:
                    failures.append(f"{element.key.token}: {failure}")
        finally:
            self._batch.finished = None
        # Also those an earlier delivery finished, perhaps without counting them.
        counted = finished + [i for i, item in items.items() if item.status in STEP_FINISHED]
        if counted and self.store.count_items(run.id, msg.step, counted) == 0:
            plan = self.plan_for(run)
            rec = self._gather(run, plan.steps[msg.step])
            if rec is not None:
                self._propagate(run, plan, [msg.step], {msg.step: rec})
        if not failures:
            return None
        return failures[0] if len(failures) == 1 else \
            f"{len(failures)} elements failed; {failures[0]}"

    def _execute(
        self,
        msg: TaskMessage,
        cancel_event: threading.Event | None,
        deadline: float | None,
        task_id: str | None,
        item: ItemRecord | None = None,
    ) -> str | None:
        run = self.running_run(msg)
        if run is None:
            return None
        plan = self.plan_for(run)
        sp = plan.steps[msg.step]
        key = msg.key
        if msg.readmit:  # a retry's delay is over: queue again for a max_parallel slot
            self._admit(run, sp, key)
            return None
        if msg.expand:  # a long foreach released elsewhere: expand it here
            known: dict[str, StepRecord | None] = {}
            if self._release(run, plan, sp.name, known, expand_here=True):
                self._propagate(run, plan, [sp.name], known)  # decided otherwise here
            return None
        if msg.outcome is not None:  # an attempt whose recording had to wait for the store
            return self._record(run, plan, sp, msg, Outcome.from_message(msg.outcome))
        records = self.store.get_steps(run.id, sp.reads) if sp.reads else {}
        scope = self._scope(run, records)
        if key.index is not None:
            item = item or self.store.get_item(run.id, sp.name, key.index)
            if item is None:
                return None
            scope["item"] = item.value
            scope["item_index"] = key.index

        what = "params"
        try:
            rendered = sp.params.render(resolve_in(scope))
            params = sp.method.validate(rendered)
            what = "staging"
            staging = None if sp.staging is None else sp.staging.render(resolve_in(scope))
        except (ReferenceResolutionError, ParamsInvalid) as exc:
            # Rendering is deterministic: retrying cannot help, so fail for good.
            error = f"{what}: {exc}"
            if self._finish_task(run, plan, sp, key, msg.attempt, CLAIMABLE,
                                 StepStatus.FAILED, error=error, attempts=msg.attempt,
                                 generation=msg.generation, **self._queued(msg)):
                return error
            return None

        started, leased_at = now(), time.monotonic()
        attempt = self._claim(run, key, msg, started, task_id, rendered)
        if attempt is None:
            return None
        msg = replace(msg, attempt=attempt)
        # A method that waits for work elsewhere finds what it left (app/engine/waiting.py).
        resume = resume_state(self._unit(run.id, key), attempt) if sp.method.waits else None
        cancel_event = cancel_event or threading.Event()
        lease = None
        if self.leases is not None:
            # From when the claim's expiry was computed: a claim that waited out a store
            # outage may have written a lease that is nearly gone already.
            lease = self.leases.hold(self.leases.new(run.id, sp.name, key.index, attempt,
                                                     leased_at, cancel_event))
            self.leases.fresh(lease)
        try:
            if key.index is not None:
                self._mark_started(run, sp.name, started)
            self._event(run.id, "step_started", key,
                        {"attempt": attempt, "worker": self.worker})
            outcome = self._attempt(run, sp, key, msg, params, rendered, scope, cancel_event,
                                    deadline, lease, staging, resume)
        except BaseException:
            if lease is not None:  # stopped without an outcome: let it be taken over now
                self.leases.give_up(lease)  # type: ignore[union-attr]
            raise
        if lease is None:
            return self._record(run, plan, sp, msg, outcome)
        # Ended past its lease's stop (killed by the reaper, say): as good as lost.
        self.leases.check(lease)  # type: ignore[union-attr]
        # Held while the outcome is recorded (renewed as soon as a store that went away
        # answers again, so nobody takes the step over meanwhile), never stopped for it.
        lease.settled = True
        try:
            if lease.lost.is_set():
                self._abandon(msg, lease)
                return None
            return self._record(run, plan, sp, msg, outcome)
        finally:
            self.leases.drop(lease)  # type: ignore[union-attr]

    def _attempt(
        self, run: RunRecord, sp: StepPlan, key: TaskKey, msg: TaskMessage,
        params: dict[str, Any], rendered: dict[str, Any], scope: dict[str, Any],
        cancel_event: threading.Event, deadline: float | None, lease: Lease | None,
        staging: dict[str, Any] | None = None, resume: dict[str, Any] | None = None,
    ) -> Outcome:
        """Run the step's module once: what it returned, or how it failed.

        ``resume``: what the method left when it last raised StepWaiting in this attempt
        (app/engine/waiting.py); a ``waiting`` outcome carries what it leaves now.

        ``staging`` (rendered ``stage_in`` and ``stage_out``): inputs fetched into the
        scratch directory first and held in the host's cache while the module runs,
        outputs pushed once it succeeded (app/data/staging.py); what they did is in
        the outputs' ``staging``.

        Outputs over ``limits.outputs`` fail the step for good (they would be
        the same again). What it printed and logged is kept within
        ``limits.logs``, head and tail (modules/limits.py).
        """
        captured = Captured(self.limits.logs)
        watched = self.live_output.watch(run.id, key.token, msg.attempt, captured)
        try:
            return self._run_attempt(run, sp, key, msg, params, rendered, scope,
                                     cancel_event, deadline, lease, staging, resume, captured)
        finally:
            self.live_output.forget(watched)

    def _run_attempt(
        self, run: RunRecord, sp: StepPlan, key: TaskKey, msg: TaskMessage,
        params: dict[str, Any], rendered: dict[str, Any], scope: dict[str, Any],
        cancel_event: threading.Event, deadline: float | None, lease: Lease | None,
        staging: dict[str, Any] | None, resume: dict[str, Any] | None, captured: Captured,
    ) -> Outcome:
        """``_attempt`` itself, its output followed as it comes."""
        ctx = StepContext(
            run_id=run.id,
            step=sp.name,
            attempt=msg.attempt,
            workdir_root=self.workdir,
            logger=CapturingLogger(step_log, {"run_id": run.id, "step": key.token}, captured),
            # Only those its params reference: a module sees no other secret.
            secrets={name: self.secrets[name] for name in sp.secrets if name in self.secrets},
            deadline=deadline or ((time.monotonic() + msg.timeout) if msg.timeout else None),
            cancel_event=cancel_event,
            item_index=key.index,
            workflow=run.workflow,
            captured=captured,
            worker=self.worker,
            lease=lease,
            base_env=self.step_env,
            file_roots=self.file_roots,
            limits=self.limits,
            connection=sp.step.connection,
            connections=self._resolve_connection,
            on_event=lambda kind, data: self._step_event(run.id, kind, key, msg.attempt, data),
            resume=resume,
        )
        try:
            staged: Staged | None = None
            if staging is not None:
                staged = self.stager.stage_in(staging, ctx)
            try:
                outputs = call_step(sp, params, ctx)
            finally:
                if staged is not None:
                    staged.release()
            if sp.outputs is not None:
                declared = sp.outputs.render(
                    resolve_in({**scope, "params": rendered, "outputs": outputs})
                )
                outputs = {**outputs, **declared}
            if staged is not None:
                outputs = {**outputs, "staging": self.stager.stage_out(staged, ctx)}
        except StepCancelled:
            return Outcome("cancelled", error="cancelled", captured=captured.lines())
        except StepWaiting as waiting:
            return Outcome("waiting", wait=waiting.after, state=waiting.state,
                           captured=captured.lines())
        except StepFailed as exc:
            return Outcome("failed", error=str(exc), final=exc.final,
                           captured=captured.lines())
        except Exception as exc:  # a step module's own failure, whatever its type
            step_log.debug("step %s failed", key.token, exc_info=True)
            return Outcome("crashed", error=f"{type(exc).__name__}: {exc}",
                           captured=captured.lines())
        too_large = oversized_outputs(key.token, outputs, self.limits.outputs)
        if too_large is not None:
            return Outcome("failed", error=too_large, final=True, captured=captured.lines())
        return Outcome("succeeded", outputs=outputs, captured=captured.lines())

    def _resolve_connection(self, ref: str | Mapping[str, Any]) -> Resolved:
        """A step's ``connection:`` with its credentials from this process's secrets."""
        return self.connections.resolve(ref, self.secrets)

    @property
    def stager(self) -> Stager:
        """What stages steps' inputs and outputs (made from the settings on first use)."""
        if self._stager is None:
            self._stager = Stager.from_settings()
        return self._stager

    def _record(self, run: RunRecord, plan: Plan, sp: StepPlan, msg: TaskMessage,
                outcome: Outcome) -> str | None:
        """Record an attempt's outcome: its output first (whoever sees the step finished
        finds it), then its result, then release what it unblocked. The error, if that
        failed the step for good.

        Waits out a store outage (the store's patience); past it, StoreUnavailable
        carries the outcome, for the executor to send back to be recorded later.
        """
        key = msg.key
        try:
            self._keep_output(run.id, key, msg.attempt, outcome.captured)
            self.live_output.recorded(run.id, key.token, msg.attempt)  # drop its live pages
            outcome.captured = []  # kept: a later try of this recording does not repeat it
            if outcome.status == "succeeded":
                self._finish_task(run, plan, sp, key, msg.attempt, RUNNING_ONLY,
                                  StepStatus.SUCCEEDED, outputs=outcome.outputs)
                return None
            if outcome.status == "waiting":
                self._wait(run, sp, msg, outcome)
                return None
            if outcome.status in ("cancelled", "crashed") and \
                    self.store.get_run(run.id).status is RunStatus.CANCELLED:
                return None  # stopped by the cancel, which has recorded it
            error = outcome.error or "failed"
            return error if self.attempt_failed(msg, error, final=outcome.final) else None
        except StoreUnavailable as exc:
            exc.pending = replace(msg, outcome=outcome.to_message(), countdown=0.0)
            raise

    def _wait(self, run: RunRecord, sp: StepPlan, msg: TaskMessage, outcome: Outcome) -> None:
        """The attempt waits for work elsewhere: record its state, send its wake-up
        (see app/engine/waiting.py). Cancelled meanwhile: cancel the job it started."""
        key = msg.key
        state = redact(outcome.state or {}, self.secrets) if self.secrets else \
            (outcome.state or {})
        if self._transition(run.id, key, RUNNING_ONLY, StepStatus.QUEUED, attempt=msg.attempt,
                            attempts=msg.attempt - 1, queued_at=now() + outcome.wait,
                            job=job_record(msg.attempt, state, msg.poll + 1)):
            self._event(run.id, "step_waiting", key,
                        {"attempt": msg.attempt, "after": outcome.wait,
                         "job": state.get("id"), "polls": msg.poll + 1})
            self.dispatcher.dispatch(replace(
                self._message(run, sp, key, msg.attempt, outcome.wait), poll=msg.poll + 1))
        elif self.store.get_run(run.id).status is RunStatus.CANCELLED and \
                not recorded_job(self._unit(run.id, key), msg.attempt, state):
            # Only a job the cancel could not see (submitted by this very call): one
            # it found recorded, it killed.
            self._cancel_job(run.id, key, job_record(msg.attempt, state, msg.poll))

    def _cancel_job(self, run_id: str, key: TaskKey, job: Mapping[str, Any]) -> None:
        """Stop the job a step (or a ``foreach`` element) of a cancelled run waits for
        (its method's ``cancel`` hook, with its params rendered again, the element's
        ``${item}`` included: the recorded ones are masked)."""
        name = key.step
        try:
            run = self.store.get_run(run_id)
            sp = self.plan_for(run).steps[name]
            if sp.method.cancel is None:
                return
            records = self.store.get_steps(run_id, sp.reads) if sp.reads else {}
            scope = self._scope(run, records)
            if key.index is not None:
                item = self.store.get_item(run_id, name, key.index)
                scope["item"] = item.value if item is not None else None
                scope["item_index"] = key.index
            params = sp.method.validate(sp.params.render(resolve_in(scope)))
            ctx = StepContext(
                run_id=run_id, step=name, attempt=int(job.get("attempt") or 0),
                logger=logging.LoggerAdapter(step_log, {"run_id": run_id,
                                                        "step": key.token}),
                workdir_root=self.workdir, workflow=run.workflow, worker=self.worker,
                secrets={n: self.secrets[n] for n in sp.secrets if n in self.secrets},
                connections=self._resolve_connection, resume=job.get("state"),
                item_index=key.index,
            )
            error = cancel_job(sp.method, params, ctx)
        except (ChordflowError, KeyError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        state = job.get("state") or {}
        data = {"job": state.get("id") if isinstance(state, dict) else None}
        self._event(run_id, "job_cancelled" if error is None else "job_cancel_failed", key,
                    data if error is None else {**data, "error": error})

    def _abandon(self, msg: TaskMessage, lease: Lease) -> None:
        """An attempt that lost its lease records nothing. If nobody took it over (the
        store was unreachable), its message goes back to the broker, so that the step
        is taken over once the store answers."""
        log.warning("run %s step %s: attempt %d lost its lease (%s); nothing recorded",
                    msg.run_id, msg.key.token, msg.attempt, lease.reason,
                    extra={"run_id": msg.run_id, "step": msg.key.token})
        if not lease.refused:
            assert self.leases is not None
            self.dispatcher.dispatch(replace(msg, countdown=self.leases.seconds, retry=False))

    def running_run(self, msg: TaskMessage) -> RunRecord | None:
        """The message's run if it is running (read once per generation and cached).

        A cached record may say running after the run was cancelled or finished; that
        is safe, because cancel moves every unfinished step to cancelled and a finished
        run has no queued step, so the claim's compare-and-set refuses the message; and
        a message of an earlier generation cannot claim a step a re-run queued (the
        claim compares the generation too).
        """
        key = (msg.run_id, msg.generation)
        run = self._runs.get(key)
        if run is not None:
            return run
        run = self.store.get_run(msg.run_id)
        if run.status is not RunStatus.RUNNING:
            return None
        if run.reruns == msg.generation:
            self._runs.put(key, run)
        return run

    def _keep_output(self, run_id: str, key: TaskKey, attempt: int,
                     captured: list[tuple[float, str, str]]) -> None:
        """Store what the attempt printed and logged (secrets masked).

        Already within the log limit (``Captured``); here each text is split into
        pieces far below MongoDB's 16 MB document (at line ends where it can), and the
        lines are written in batches. Times are made strictly increasing in the
        attempt's order, the order readers sort by. If the store refuses them, one
        line saying so is still tried: output is worth less than the step's result,
        but it must not vanish without a word.
        """
        if not captured:
            return
        lines: list[LogLine] = []
        last = 0.0
        for ts, stream, text in captured:
            text = redact(text, self.secrets) if self.secrets else text
            for piece in log_pieces(text):
                last = max(ts, last + 1e-6)
                lines.append(LogLine(run_id, key.token, attempt, stream, piece, self.worker,
                                     last))
        try:
            for batch in log_batches(lines, lambda line: len(line.text)):
                self.store.append_logs(batch)
        except StoreUnavailable:
            raise  # waited out by the caller, like the result
        except Exception as exc:  # never fail a step for its output
            log.warning("could not store the output of %s", key.token, exc_info=True)
            lost = (f"WARNING the output of this attempt could not be stored "
                    f"({type(exc).__name__}: {str(exc)[:300]})")
            try:
                self.store.append_logs([LogLine(run_id, key.token, attempt, "log", lost,
                                                self.worker, last + 1e-6)])
            except Exception:
                log.warning("could not store that the output of %s was lost", key.token)

    def _claim(
        self, run: RunRecord, key: TaskKey, msg: TaskMessage, started: float,
        task_id: str | None, rendered: dict[str, Any],
    ) -> int | None:
        """Mark the attempt running; return its number, or None if the message is stale.

        With leases (app/engine/lease.py), a message for an attempt recorded as running
        takes the step over as the next attempt once that attempt's lease is given up,
        or has expired and stayed so for the grace; until then the message comes back
        later to look again.
        """
        fields: dict[str, Any] = {"started_at": started, "worker": self.worker,
                                  "task_id": task_id, "params": rendered, **self._queued(msg)}
        if self.leases is not None:
            fields.update(lease_until=self.leases.until(), holder=process_identity())
        # Queued first: by the time a message is delivered, its queueing has almost
        # always been written (a step still pending is the exception, see _queue), and
        # a compare-and-set on one status is cheaper than on either of two. The second
        # try takes either: the queueing may land between the two.
        for expect in (QUEUED_ONLY, CLAIMABLE):
            if self._transition(run.id, key, expect, StepStatus.RUNNING,
                                attempt=msg.attempt - 1, attempts=msg.attempt,
                                expect_generation=msg.generation, **fields):
                return msg.attempt
        if self.leases is None:
            return None  # one process: nothing is ever lost under a running attempt
        rec = self._unit(run.id, key)
        if rec is None or rec.status is not StepStatus.RUNNING or rec.attempts != msg.attempt:
            return None
        state = lease_state(rec.lease_until, rec.holder)
        if state is LeaseState.LIVE:
            # Held: come back once it would have run out (the holder may die meanwhile).
            wait = (rec.lease_until or 0) - time.time() + TAKEOVER_GRACE
            self.dispatcher.dispatch(replace(msg, countdown=max(1.0, wait), suspect=None,
                                             retry=False))
            return None
        if state is LeaseState.EXPIRED and msg.suspect != rec.lease_until:
            self.dispatcher.dispatch(replace(msg, countdown=TAKEOVER_GRACE,
                                             suspect=rec.lease_until, retry=False))
            return None
        if msg.attempt >= self.plan_for(run).steps[key.step].step.retries + 1 + MAX_TAKEOVERS:
            # Lost worker after lost worker: the step itself kills them (memory, a hard
            # time limit). Stop taking it over.
            self._give_up_on(run, key, msg, rec)
            return None
        if not self._transition(run.id, key, RUNNING_ONLY, StepStatus.RUNNING,
                                attempt=msg.attempt, attempts=msg.attempt + 1,
                                expect_generation=msg.generation,
                                expect_lease=rec.lease_until, **fields):
            return None
        self._event(run.id, "step_taken_over", key,
                    {"lost_worker": rec.worker, "attempt": msg.attempt + 1,
                     "lease": str(state)})
        return msg.attempt + 1

    def _mark_started(self, run: RunRecord, name: str, started: float) -> None:
        """A ``foreach`` step is running once its first element is: one try per step in
        this process (the first element's claim does it; for the 99,999 others the
        compare-and-set would only fail, a wasted round trip each)."""
        if not self._started.first_time((run.id, name, run.reruns), True):
            return
        self.store.transition_step(run.id, name, QUEUED_ONLY, StepStatus.RUNNING,
                                   started_at=started, worker=self.worker)

    def _give_up_on(self, run: RunRecord, key: TaskKey, msg: TaskMessage,
                    rec: StepRecord | ItemRecord) -> bool:
        """Fail a step whose workers keep being lost under it (compare-and-set on the
        lease too: a holder that came back meanwhile keeps its attempt)."""
        plan = self.plan_for(run)
        sp = plan.steps[key.step]
        return self._finish_task(run, plan, sp, key, msg.attempt, RUNNING_ONLY,
                                 StepStatus.FAILED,
                                 error=f"its worker was lost {MAX_TAKEOVERS} times",
                                 expect_lease=rec.lease_until)

    @staticmethod
    def _queued(msg: TaskMessage) -> dict[str, float]:
        """The queueing time a claim records, in case it comes before the queueing's own
        write (which then finds the step claimed and changes nothing)."""
        return {"queued_at": msg.queued_at} if msg.queued_at is not None else {}

    def _unit(self, run_id: str, key: TaskKey) -> StepRecord | ItemRecord | None:
        """The record of a task: a step's, or a ``foreach`` element's."""
        if key.index is not None:
            return self.store.get_item(run_id, key.step, key.index)
        return self.store.get_steps(run_id, (key.step,)).get(key.step)

    def attempt_failed(self, msg: TaskMessage, error: str, *, final: bool = False) -> bool:
        """Retry the attempt if retries are left (and the failure is not ``final``),
        else fail the task for good; True if this call failed it for good.

        Also called by an executor's watchdog when an attempt exceeds its timeout; the
        compare-and-set on (status, attempt) makes a second call for the same attempt a
        no-op.
        """
        run = self.store.get_run(msg.run_id)
        plan = self.plan_for(run)
        sp = plan.steps[msg.step]
        key = msg.key
        if run.status is RunStatus.RUNNING and msg.attempt <= sp.step.retries and not final:
            delay = sp.step.retry_delay * sp.step.retry_backoff ** (msg.attempt - 1)
            if run.max_parallel is None:
                if self._transition(run.id, key, RUNNING_ONLY, StepStatus.QUEUED,
                                    attempt=msg.attempt, error=error, queued_at=now()):
                    self._event(run.id, "step_retry", key,
                                {"attempt": msg.attempt, "error": error, "delay": delay})
                    self.dispatcher.dispatch(replace(
                        self._message(run, sp, key, msg.attempt + 1, delay), retry=True))
            # Under max_parallel the slot is given up while the retry waits (as Airflow
            # does with pool slots), and the retry queues for one again afterwards.
            elif self._transition(run.id, key, RUNNING_ONLY, StepStatus.READY,
                                  attempt=msg.attempt, error=error):
                self._event(run.id, "step_retry", key,
                            {"attempt": msg.attempt, "error": error, "delay": delay})
                self._release_slot(run, plan, key)
                self.dispatcher.dispatch(replace(
                    self._message(run, sp, key, msg.attempt + 1, delay), readmit=True))
            return False
        return self._finish_task(run, plan, sp, key, msg.attempt, RUNNING_ONLY,
                                 StepStatus.FAILED, error=error)

    def gather(self, run_id: str, step: str) -> None:
        """A ``foreach`` chord's body: every element is final; finish the step."""
        run = self.store.get_run(run_id)
        if run.status is not RunStatus.RUNNING or \
                self.store.step_status(run_id, step) in STEP_FINISHED:
            return  # gathered already, by its last element's count
        plan = self.plan_for(run)
        with self.events.deferred():
            rec = self._gather(run, plan.steps[step])
            if rec is not None:
                self._propagate(run, plan, [step], {step: rec})

    # -- internals -------------------------------------------------------------------------

    def _finish_task(
        self,
        run: RunRecord,
        plan: Plan,
        sp: StepPlan,
        key: TaskKey,
        attempt: int,
        expect: frozenset[StepStatus],
        status: StepStatus,
        generation: int | None = None,
        **fields: Any,
    ) -> bool:
        """Record a task's final status, free its slot, and release what it unblocked;
        False if the record was not as expected (nothing done).

        ``generation``: the re-run generation the attempt must have been queued by.
        """
        expect_attempt = attempt - 1 if expect is CLAIMABLE else attempt
        lease = fields.pop("expect_lease", None)
        rec: StepRecord | None = None
        if key.index is None and sp.children:  # they are released from the record written
            rec = self.store.finish_step(run.id, key.step, expect, status,
                                         attempt=expect_attempt, expect_generation=generation,
                                         expect_lease=lease,
                                         **self._clean({"finished_at": now(), **fields}))
            if rec is None:
                return False
        elif not self._transition(run.id, key, expect, status, attempt=expect_attempt,
                                  expect_generation=generation, expect_lease=lease,
                                  finished_at=now(), **fields):
            return False
        self._event(run.id, f"step_{status}", key,
                    {"error": fields["error"]} if "error" in fields else None)
        self._release_slot(run, plan, key)
        deferred = getattr(self._batch, "finished", None)
        if key.index is not None and deferred is not None and deferred[0] == (run.id, key.step):
            deferred[1].append(key.index)  # counted with its batch's (``_run_batch``)
            return True
        if key.index is not None:
            # With a chord its body gathers too; counting as well makes the gather happen
            # even if the chord fired early (a duplicate element counted as a part).
            if self.store.count_item(run.id, sp.name, key.index) != 0:
                return True
            rec = self._gather(run, sp)
            if rec is None:
                return True
        self._propagate(run, plan, [sp.name], {sp.name: rec})
        return True

    def _message(
        self, run: RunRecord, sp: StepPlan, key: TaskKey, attempt: int, countdown: float,
        queued_at: float | None = None,
    ) -> TaskMessage:
        step = sp.step
        return TaskMessage(run.id, sp.name, key.index, attempt, run.workflow, step.queue,
                           step.priority, step.timeout, countdown, generation=run.reruns,
                           queued_at=queued_at)

    def _clean(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Mask secrets in whatever is about to be recorded."""
        if self.secrets:
            for name in ("params", "outputs", "error"):
                if fields.get(name) is not None:
                    fields[name] = redact(fields[name], self.secrets)
        return fields

    def _transition(
        self, run_id: str, key: TaskKey, expect: frozenset[StepStatus], status: StepStatus,
        *, attempt: int | None = None, expect_generation: int | None = None,
        expect_lease: float | None = None, **fields: Any,
    ) -> bool:
        self._clean(fields)
        if key.index is None:
            return self.store.transition_step(run_id, key.step, expect, status,
                                              attempt=attempt,
                                              expect_generation=expect_generation,
                                              expect_lease=expect_lease, **fields)
        fields.pop("params", None)
        return self.store.transition_item(run_id, key.step, key.index, expect, status,
                                          attempt=attempt,
                                          expect_generation=expect_generation,
                                          expect_lease=expect_lease, **fields)

    def _counted_out(self, run_id: str) -> None:
        """A batch of counts finished the run's count (the background writer)."""
        self._finish_run(run_id, self.plan_for(self.store.get_run(run_id)))

    def _finish_run(self, run_id: str, plan: Plan) -> None:
        steps = self.store.get_steps(run_id, plan.order)
        unfinished = [name for name, rec in steps.items() if rec.status not in STEP_FINISHED]
        if unfinished:  # a miscount (see Store.count_steps): a resume finishes the run
            log.warning("run %s counted out with %d steps unfinished (%s, ...)", run_id,
                        len(unfinished), unfinished[0])
            return
        failed = [
            name for name in plan.order
            if steps[name].status is StepStatus.FAILED
            and not plan.steps[name].step.continue_on_failure
        ]
        outputs: dict[str, Any] | None = None
        error: str | None = None
        if failed:
            error = f"step '{failed[0]}' failed: {steps[failed[0]].error}"
        else:
            run = self.store.get_run(run_id)
            try:
                outputs = plan.outputs.render(resolve_in(self._scope(run, steps)))
            except ReferenceResolutionError as exc:
                error = f"outputs: {exc}"
        status = RunStatus.FAILED if error else RunStatus.SUCCEEDED
        fields = self._clean({"outputs": outputs, "error": error})
        error = fields["error"]
        # This process's events of the run are in before it shows finished, its own
        # event right after (other processes' within their linger).
        self.events.flush()
        if self.store.set_run_status(run_id, {RunStatus.RUNNING}, status, finished_at=now(),
                                     **fields):
            self._event(run_id, f"run_{status}", data={"error": error} if error else None)
            self.events.flush()
            if self.on_finish:
                self.on_finish(run_id, status)

    def _scope(self, run: RunRecord, records: Mapping[str, StepRecord]) -> dict[str, Any]:
        return {
            "variables": run.variables,
            "steps": {name: rec.view() for name, rec in records.items()},
            "run": {"id": run.id, "workflow": run.workflow},
            "secrets": self.secrets,
        }

    def _event(
        self, run_id: str, kind: str, key: TaskKey | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        if data and self.secrets:
            data = redact(data, self.secrets)
        self.events.append(Event(run_id, kind, key.token if key else None, data))

    def _step_event(self, run_id: str, kind: str, key: TaskKey, attempt: int,
                    data: dict[str, Any]) -> None:
        """An event a running module reports (``StepContext.progress``), from whatever
        thread it runs in: left to the background writer, so a slow store never holds
        the module up (an rclone whose progress nobody reads would stall)."""
        with self.events.deferred():
            self._event(run_id, kind, key, {"attempt": attempt, **data})

    def fail_unexpected(self, msg: TaskMessage, exc: BaseException,
                        task_id: str | None = None) -> None:
        """An executor caught an error outside any step (a bug, a store outage).

        The attempt is failed only if this delivery holds it: a duplicate that crashed
        must not fail an attempt another worker is running.
        """
        log.error("task %s crashed: %s", msg.task_id,
                  "".join(traceback.format_exception(exc)))
        try:
            rec = self._unit(msg.run_id, msg.key)
            if rec is None or rec.status is not StepStatus.RUNNING or \
                    rec.attempts != msg.attempt or rec.worker != self.worker or \
                    (task_id is not None and rec.task_id != task_id) or \
                    (self.leases is not None and rec.holder != process_identity()):
                return  # not this process's attempt (a duplicate crashed, say)
            self.attempt_failed(msg, f"internal error: {type(exc).__name__}: {exc}")
        except ChordflowError:
            log.exception("could not record the failure of %s", msg.task_id)


def _live_jobs(name: str, rec: StepRecord) -> dict[TaskKey, dict[str, Any]]:
    """The jobs elsewhere that a step and its ``foreach`` elements, not finished yet,
    wait for (app/engine/waiting.py)."""
    jobs = {TaskKey(name): rec.job} if rec.job and rec.status in STEP_UNFINISHED else {}
    for index, item in enumerate(rec.items or ()):
        if item.job and item.status in STEP_UNFINISHED:
            jobs[TaskKey(name, index)] = item.job
    return jobs


def _live_task_ids(run_id: str, name: str, rec: StepRecord, generation: int) -> list[str]:
    """Executor ids of a step's queued and running attempts (and its elements')."""
    ids = []
    units: list[tuple[str, StepRecord | ItemRecord]] = [(name, rec)]
    units += [(f"{name}[{i}]", item) for i, item in enumerate(rec.items or ())]
    for token, unit in units:
        if unit.status is StepStatus.RUNNING and unit.task_id:
            ids.append(unit.task_id)
        elif unit.status is StepStatus.QUEUED:
            suffix = f".r{generation}" if generation else ""
            ids.append(f"{run_id}:{token}:{unit.attempts + 1}{suffix}")
            if unit.job and unit.job.get("polls"):  # a wake-up (app/engine/waiting.py)
                ids.append(f"{run_id}:{token}:{unit.attempts + 1}{suffix}.p{unit.job['polls']}")
    return ids
