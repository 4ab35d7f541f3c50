"""Releasing steps: what happens after a step finishes (the choreography).

The finishing task counts the step for its children and its run, decides the fate of
each child whose parents are now all done (upstream_failed, skipped by a parent or its
own ``when``, or ready), expands ``foreach`` steps (a chord, or elements queuing for
``max_parallel`` slots) and queues what may run. A mixin of the Engine: the methods
share its store, dispatcher and transitions.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from chordflow.engine.dispatch import TaskKey, foreach_batches
from chordflow.engine.plan import Plan, StepPlan
from chordflow.engine.records import ItemRecord, RunRecord, StepRecord, now
from chordflow.engine.state import (
    PENDING_ONLY,
    QUEUED_ONLY,
    READY_ONLY,
    RUNNING_ONLY,
    STEP_FINISHED,
    StepStatus,
)
from chordflow.errors import ConditionError, ReferenceResolutionError
from chordflow.workflow.templating import resolve_in

if TYPE_CHECKING:
    from chordflow.engine.engine import Engine



class Release:
    """Counting, releasing, queueing; mixed into the Engine."""

    def _release_slot(self: Engine, run: RunRecord, plan: Plan, key: TaskKey) -> None:
        if run.max_parallel is not None:
            for token in self.store.release(run.id, key.token, run.max_parallel):
                admitted = TaskKey.parse(token)
                self._queue(run, plan.steps[admitted.step], admitted)

    def _chord_mode(self: Engine, run: RunRecord) -> bool:
        """Elements dispatched together as a chord (no ``max_parallel`` to hold them)."""
        return self.chords and run.max_parallel is None

    def _gather(self: Engine, run: RunRecord, sp: StepPlan) -> StepRecord | None:
        """All elements of a ``foreach`` step are done: finish the step itself.

        Returns the finished record, or None if not finished now (not all elements
        are, or another task gathered first).
        """
        rec = self.store.get_steps(run.id, (sp.name,))[sp.name]
        items = rec.items or []
        if any(item.status not in STEP_FINISHED for item in items):
            return None  # an early trigger (a duplicate counted by the chord): not yet
        outputs = {"items": [item.outputs for item in items]}
        failed = [(i, item) for i, item in enumerate(items)
                  if item.status is not StepStatus.SUCCEEDED]
        if failed:
            first_i, first = failed[0]
            error = (f"{len(failed)} of {len(items)} items failed; "
                     f"item {first_i}: {first.error}")
            status = StepStatus.FAILED
        else:
            error, status = None, StepStatus.SUCCEEDED
        attempts = max((item.attempts for item in items), default=0)
        done = self.store.finish_step(
            run.id, sp.name,
            RUNNING_ONLY if status is StepStatus.SUCCEEDED else QUEUED_ONLY | RUNNING_ONLY, status,
            **self._clean({"outputs": outputs, "error": error, "finished_at": now(),
                           "attempts": attempts}),
        )
        if done is not None:
            self._event(run.id, f"step_{status}", TaskKey(sp.name),
                        {"error": error} if error else None)
        return done

    def _propagate(
        self: Engine, run: RunRecord, plan: Plan, finished: list[str],
        known: dict[str, StepRecord | None] | None = None, *, count_run: bool = True,
        again: bool = False,
    ) -> None:
        """Count finished steps for their children and the run; release what is unblocked.

        ``known`` holds records of finished steps as this task wrote them, so releasing
        their children need not read them back (a chain reads nothing). ``count_run``
        False: the steps in ``finished`` were counted for the run already (a resume
        releasing again); steps this call decides are counted all the same. ``again``:
        a resume, so children may have been queued already (see ``_release``).
        """
        known = known if known is not None else {}
        counted = set() if count_run else set(finished)
        stack = list(finished)
        while stack:
            done = stack.pop()
            for child in plan.steps[done].children:
                # One parent needs no counter: only the task whose compare-and-set
                # finished that parent gets here (a resume queues by compare-and-set
                # first, see _queue). Several parents count.
                if len(plan.steps[child].parents) == 1 or \
                        self.store.count_parent(run.id, child, done) == 0:
                    if self._release(run, plan, child, known, again=again):
                        stack.append(child)
            if done not in counted and (run.count_all or not plan.steps[done].children) and \
                    self.counts.count(run.id, defer=self.events.deferring):
                self._finish_run(run.id, plan)

    def _release(
        self: Engine, run: RunRecord, plan: Plan, name: str,
        known: dict[str, StepRecord | None] | None = None, *, again: bool = False,
        expand_here: bool = False,
    ) -> bool:
        """All parents of ``name`` are done: decide its fate. True if it finished already
        (then its record is added to ``known``). ``again``: it may have been released
        before (a resume), so it is sent only if recording it queued succeeds."""
        sp = plan.steps[name]
        known = known if known is not None else {}
        parents = {p: rec for p in sp.parents if (rec := known.get(p)) is not None}
        missing = [p for p in sp.parents if p not in parents]
        if missing:
            parents.update(self.store.get_steps(run.id, missing))
        decide = partial(self._decide, run.id, name, known)
        if any(
            p.status is StepStatus.UPSTREAM_FAILED
            or (p.status is StepStatus.FAILED
                and not plan.steps[p.name].step.continue_on_failure)
            for p in parents.values()
        ):
            return decide(StepStatus.UPSTREAM_FAILED)
        if any(p.status in (StepStatus.SKIPPED, StepStatus.CANCELLED) for p in parents.values()):
            return decide(StepStatus.SKIPPED)
        scope = self._scope(run, parents)
        if sp.when is not None:
            try:
                go = sp.when.evaluate(resolve_in(scope))
            except ConditionError as exc:
                return decide(StepStatus.FAILED, error=f"when: {exc}")
            if not go:
                return decide(StepStatus.SKIPPED)
        if sp.foreach is not None:
            try:
                items = sp.foreach.render(resolve_in(scope))
            except ReferenceResolutionError as exc:
                return decide(StepStatus.FAILED, error=f"foreach: {exc}")
            if not isinstance(items, list):
                return decide(
                    StepStatus.FAILED,
                    error=f"foreach: expected a list, got {type(items).__name__}",
                )
            if len(items) > self.limits.foreach_items:
                return decide(StepStatus.FAILED, error=(
                    f"foreach: the list has {len(items):,} elements, over the limit of "
                    f"{self.limits.foreach_items:,} (CHORDFLOW_MAX_FOREACH_ITEMS)"))
            if not items:
                return decide(StepStatus.SUCCEEDED, outputs={"items": []})
            if not expand_here and self.expand_elsewhere is not None and \
                    len(items) > self.expand_elsewhere:
                # The step stays pending until a worker expands it; a lost message is
                # sent again by a resume (the step is pending with its parents done).
                self.dispatcher.dispatch(replace(
                    self._message(run, sp, TaskKey(name), 0, 0.0), expand=True))
                return False
            if self._chord_mode(run):
                self._dispatch_chord(run, sp, items)
                return False
            if not self.store.transition_step(
                run.id, name, PENDING_ONLY, StepStatus.READY,
                items=[ItemRecord(status=StepStatus.READY, value=v, generation=run.reruns)
                       for v in items],
                items_left=len(items),
            ):
                return False
            self._event(run.id, "step_ready", TaskKey(name), {"items": len(items)})
            for index in range(len(items)):
                self._admit(run, sp, TaskKey(name, index))
            return False
        if run.max_parallel is None:  # nothing holds it back: queue it at once
            self._queue(run, sp, TaskKey(name), PENDING_ONLY, send_first=not again)
        elif self.store.transition_step(run.id, name, PENDING_ONLY, StepStatus.READY):
            self._admit(run, sp, TaskKey(name))
        return False

    def _dispatch_chord(self: Engine, run: RunRecord, sp: StepPlan, items: list[Any]) -> None:
        """All elements queued at once and sent as one chord; its body gathers them."""
        queued = now()
        if not self.store.transition_step(
            run.id, sp.name, PENDING_ONLY, StepStatus.READY,
            items=[ItemRecord(status=StepStatus.QUEUED, value=v, queued_at=queued,
                              generation=run.reruns)
                   for v in items],
            items_left=len(items),
        ):
            return
        self.store.transition_step(run.id, sp.name, READY_ONLY, StepStatus.QUEUED,
                                   queued_at=queued)
        self._event(run.id, "step_queued", TaskKey(sp.name), {"items": len(items)})
        # A step with a timeout is sent element by element: its timeout is the task's
        # time limit, which must not be shared by a batch of them.
        largest = self.foreach_batch if sp.step.timeout is None else 1
        messages = [
            replace(self._message(run, sp, TaskKey(sp.name, start), 1, 0.0),
                    batch=count if count > 1 else 0)
            for start, count in foreach_batches(len(items), largest,
                                                self.foreach_min_messages)
        ]
        self.dispatcher.dispatch_chord(messages)  # type: ignore[attr-defined]

    def _decide(
        self: Engine, run_id: str, name: str, known: dict[str, StepRecord | None],
        status: StepStatus, **fields: Any,
    ) -> bool:
        rec = self.store.finish_step(run_id, name, PENDING_ONLY, status,
                                     **self._clean({"finished_at": now(), **fields}))
        if rec is None:
            return False
        known[name] = rec
        self._event(run_id, f"step_{status}", TaskKey(name),
                    {"error": fields["error"]} if "error" in fields else None)
        return True

    def _admit(self: Engine, run: RunRecord, sp: StepPlan, key: TaskKey) -> None:
        if run.max_parallel is None:
            self._queue(run, sp, key)
            return
        plan = self.plan_for(run)
        for token in self.store.admit(run.id, key.token, run.max_parallel):
            admitted = TaskKey.parse(token)
            self._queue(run, plan.steps[admitted.step], admitted)

    def _queue(
        self: Engine, run: RunRecord, sp: StepPlan, key: TaskKey,
        expect: frozenset[StepStatus] = READY_ONLY, *, send_first: bool = False,
    ) -> None:
        """Queue a ready step (or a pending one with nothing to wait for) and send it.

        ``send_first``: a pending step released by the task that finished its last
        parent is sent first and recorded as queued after, so the next step's worker
        does not wait for that write (the one write between two steps of a chain that
        nothing needs before the message): the claim accepts a step still pending and
        records the queueing time the message carries. Only that task releases the step
        (its parent's finish, or a join's last count, succeeds once), so it is sent
        once; anyone else (a resume) records first and sends only if that succeeded.
        """
        attempt = 1
        if run.max_parallel is not None or run.reruns:
            # A retry coming back through admission, or a step of a re-run: count on.
            attempt = self._attempts(run.id, key) + 1
        queued = now()
        if send_first:
            self.dispatcher.dispatch(self._message(run, sp, key, attempt, 0.0, queued))
            self._transition(run.id, key, expect, StepStatus.QUEUED, queued_at=queued,
                             generation=run.reruns)
            return
        if not self._transition(run.id, key, expect, StepStatus.QUEUED, queued_at=queued,
                                generation=run.reruns):
            return
        if key.index is not None:
            self.store.transition_step(run.id, sp.name, READY_ONLY, StepStatus.QUEUED,
                                       queued_at=now())
        self.dispatcher.dispatch(self._message(run, sp, key, attempt, 0.0))

    def _attempts(self: Engine, run_id: str, key: TaskKey) -> int:
        rec = self._unit(run_id, key)
        return rec.attempts if rec is not None else 0
