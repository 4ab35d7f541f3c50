"""The store interface: every read and write the engine makes.

Each write that dispatch depends on is one atomic compare-and-set on one record (one
MongoDB document): a status change that names the status it expects, a counter that
remembers who already counted. That is what lets any number of workers finish steps
concurrently, and lets a duplicated message change nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, Protocol

from chordflow.engine.records import Event, ItemRecord, LogLine, RunRecord, StepRecord
from chordflow.engine.state import RunStatus, StepStatus


class Store(Protocol):
    def create_run(self, run: RunRecord, steps: Iterable[StepRecord], workflow: Any) -> None:
        """Record a new run, its steps (pending) and the workflow it runs, at once."""

    def get_run(self, run_id: str) -> RunRecord:
        """The run; raise RunNotFound if there is none."""

    def get_workflow(self, run_id: str) -> Any:
        """The workflow (definition) a run was created from."""

    def get_steps(
        self, run_id: str, names: Collection[str] | None = None
    ) -> dict[str, StepRecord]:
        """Step records by name (all of them when ``names`` is None)."""

    def step_status(self, run_id: str, name: str) -> StepStatus:
        """A step's status alone: not its elements (a ``foreach`` of 100,000 has as many
        records)."""

    def get_item(self, run_id: str, name: str, index: int) -> ItemRecord | None:
        """One ``foreach`` element's record (None if the step has no such element): what
        an element's task reads, never the whole list (that would make a ``foreach``
        of n elements read n² records)."""

    def get_items(self, run_id: str, name: str, indices: range) -> dict[int, ItemRecord]:
        """The records of a run of consecutive elements (a batch's), in one read; an
        index with no element is left out."""

    def set_run_status(
        self, run_id: str, expect: Collection[RunStatus], status: RunStatus, **fields: Any
    ) -> bool:
        """Compare-and-set the run's status, also setting ``fields``; False if not in ``expect``."""

    def transition_step(
        self,
        run_id: str,
        name: str,
        expect: Collection[StepStatus],
        status: StepStatus,
        *,
        attempt: int | None = None,
        expect_generation: int | None = None,
        expect_lease: float | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set a step's status (and, if given, its ``attempts``, the re-run
        ``generation`` that queued it and its ``lease_until``)."""

    def finish_step(
        self,
        run_id: str,
        name: str,
        expect: Collection[StepStatus],
        status: StepStatus,
        *,
        attempt: int | None = None,
        expect_generation: int | None = None,
        expect_lease: float | None = None,
        **fields: Any,
    ) -> StepRecord | None:
        """``transition_step`` to a final status, returning the record as written.

        In the same round trip: the finishing task hands the record on to release the
        step's children, which need not read it back.
        """

    def queue_steps(self, run_id: str, names: Collection[str], queued_at: float) -> None:
        """Move the steps named from pending to queued, in one write (a run's roots).

        Steps no longer pending (cancelled meanwhile) are left as they are.
        """

    def transition_item(
        self,
        run_id: str,
        name: str,
        index: int,
        expect: Collection[StepStatus],
        status: StepStatus,
        *,
        attempt: int | None = None,
        expect_generation: int | None = None,
        expect_lease: float | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set one ``foreach`` element's status (as ``transition_step``)."""

    def set_lease(self, run_id: str, name: str, index: int | None, attempt: int,
                  holder: str, until: float, timeout: float | None = None) -> bool:
        """Set the lease of a running attempt (of a step, or of element ``index``) held
        by ``holder``: renew it, or give it up with ``until`` 0. False if ``holder``
        holds it no longer. One try, of at most ``timeout`` seconds: StoreUnavailable if
        the store does not answer."""

    def count_parent(self, run_id: str, child: str, parent: str) -> int | None:
        """Count ``parent`` as finished for ``child``: parents left, None if counted before.

        Atomic: the mark that ``parent`` was counted and the count are one write."""

    def count_item(self, run_id: str, name: str, index: int) -> int | None:
        """Count a ``foreach`` element as finished: elements left, None if counted before."""

    def count_items(self, run_id: str, name: str, indices: Collection[int]) -> int | None:
        """Count many elements (a batch's) at once, leaving out those counted before:
        the elements left to the step if that changed it, else None."""

    def count_steps(self, run_id: str, n: int = 1) -> int:
        """Count ``n`` steps as finished for their run: steps left.

        Not idempotent, and needs not be: the engine counts a step only after the
        compare-and-set that finished it, which succeeds once. A count lost to a crash
        in between only delays the run's end until a resume, which finishes a run whose
        steps are all finished; and the run is finished only when they all are.
        """

    def admit(self, run_id: str, key: str, limit: int) -> list[str]:
        """Queue ``key`` for a ``max_parallel`` slot; return the keys admitted now.

        First come, first served: the result may hold ``key``, earlier waiting keys,
        both or neither. Each admitted key must be dispatched by the caller.
        """

    def release(self, run_id: str, key: str, limit: int) -> list[str]:
        """Free ``key``'s slot (idempotent); return the waiting keys now admitted.

        With ``key`` "" nothing is freed: waiting keys are admitted into free slots.
        """

    def reset_steps(
        self, run_id: str, waiting_on: Mapping[str, int],
        forget: Collection[tuple[str, str]], generation: int,
    ) -> None:
        """Make steps pending again for a re-run, with fresh counters.

        Each step in ``waiting_on`` loses its outputs, error, times and elements, waits
        for that many parents and belongs to the re-run's ``generation`` (so only that
        generation's messages can claim it); each (parent, child) in ``forget`` may be
        counted again; the run's ``max_parallel`` slots are all freed.
        """

    def record_resend(self, run_id: str, name: str, index: int | None,
                      queued_at: float | None, resends: int) -> bool:
        """Count a resend of a queued attempt (of a step, or element ``index``) that was
        queued at ``queued_at`` and resent ``resends`` times so far; False if it changed
        meanwhile (claimed, or resent by someone else)."""

    def append_event(self, event: Event) -> None:
        """Append to the run's log."""

    def append_events(self, events: list[Event]) -> None:
        """Append several events (of any runs) at once."""

    def append_logs(self, lines: list[LogLine]) -> None:
        """Keep what an attempt printed and logged."""

    def logs(self, run_id: str, step: str | None = None) -> list[LogLine]:
        """A run's output in time order; of one step (and its elements) if ``step``.
        Attempts still running show their live output (app/engine/live_output.py)."""

    def put_live_logs(self, run_id: str, step: str, attempt: int,
                      pages: Mapping[int, list[LogLine]], count: int) -> None:
        """A running attempt's output so far: replace ``pages`` (by number) and drop
        those from ``count`` on. One try: a failure raises, nothing waits."""

    def drop_live_logs(self, run_id: str, step: str, attempt: int) -> None:
        """The attempt's output is recorded: forget its live pages."""

    def events(self, run_id: str, after: int = 0, since: float | None = None) -> list[Event]:
        """The run's log in the order things happened (``ts``), from position ``after``
        (and from time ``since``)."""
