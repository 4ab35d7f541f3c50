"""Scheduled runs of stored workflows: cron and interval triggers.

Decision: schedules are documents in MongoDB (collection ``schedules``), and Celery beat
only drives a clock. Beat (``chordflow worker --beat``, already running for the
reconciler) sends the task ``chordflow.schedules.tick`` every ``schedule_tick_seconds``
(default 10); each tick reads the schedules that are due and submits their runs. Beat's
own schedule file holds nothing but the tick, so schedules are created, changed and
paused through the API at any time without restarting beat, and every API process and
worker sees the same ones.

One document per schedule::

    {_id, workflow (stored name), version (int) | None (the latest at each run),
     variables, cron | None, interval_seconds | None (exactly one of the two),
     timezone (of the cron expression; default UTC), enabled, next_run_at (UNIX time),
     last_run_at, last_run_id, last_error, created_at, updated_at, created_by}

**Exactly once per occurrence.** A tick finds the due schedules (``enabled`` and
``next_run_at <= now``) and claims each with a compare-and-set on ``next_run_at``:
``update_one({_id, next_run_at: <old>}, {$set: {next_run_at: <next>}})``. Only the tick
whose update matched submits; a second beat (two workers started with ``--beat``), an
overlapping tick or a redelivered tick message finds ``next_run_at`` changed and does
nothing. The claim comes before the submission, so a crash between the two loses that
occurrence (at most once) rather than running it twice. Everything is a single-document
update with plain queries, comparisons and ``$set``: it works on the MongoDB-protocol
servers the store supports (nx-27017 has no aggregation, ``$push`` or ``$addToSet``).

**Missed windows run once.** The next time is always computed from *now*, not from the
missed occurrence: after beat was down for an hour, a schedule "every minute" runs once
on recovery, then on its next regular occurrence, never 60 times in a burst (Celery
beat's behaviour, and Airflow's ``catchup=False``). Intervals keep their phase (the next
run is the first ``last + k * interval`` after now), cron times follow the expression in
the schedule's time zone (croniter, daylight saving time included).

**First run.** An interval schedule first runs one interval after it is created (or
resumed); a cron schedule at its first occurrence after that. Resuming a paused
schedule, or changing its cron, interval or time zone, computes ``next_run_at`` from now
again, so a schedule paused for a week does not run the moment it is resumed.

**Failures.** A run that cannot be submitted (the stored workflow was deleted, renamed or
disabled, a variable is no longer declared) is recorded as ``last_error`` and logged; the
schedule stays enabled and tries again at its next occurrence. Schedules refer to the
workflow by name, so a renamed workflow must have its schedules recreated.

A run started by a schedule has the trigger ``schedule:<schedule id>``; one started by
hand through the schedule (``POST /schedules/{id}/trigger``) has
``manual-schedule:<schedule id>`` and leaves ``next_run_at`` alone.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chordflow.api.library import WorkflowLibrary
from chordflow.errors import ChordflowError
from chordflow.workflow.loader import load_data
from croniter import CroniterBadCronError, CroniterBadDateError, croniter
from pymongo.collection import Collection
from pymongo.database import Database

log = logging.getLogger("chordflow.schedules")

#: Shortest interval accepted; beat ticks every ``schedule_tick_seconds`` anyway, so a
#: shorter interval than the tick runs once per tick.
MIN_INTERVAL_SECONDS = 1.0
#: The longest interval: ten years. A longer one is a typo, and its times would soon
#: pass the last date a calendar can show (the year 9999).
MAX_INTERVAL_SECONDS = 10 * 366 * 86400.0
#: Most schedules one tick submits; the rest are due at the next tick.
TICK_BATCH = 500
#: Fields a change (PATCH) may set.
CHANGEABLE = frozenset({"cron", "interval_seconds", "timezone", "variables", "enabled",
                        "version"})


class ScheduleMissing(ChordflowError, LookupError):
    """No schedule with that id: 404."""


class InvalidSchedule(ChordflowError, ValueError):
    """A cron expression, interval or time zone that cannot be used: 422."""


# -- next times ---------------------------------------------------------------------------

def zone(name: str) -> ZoneInfo:
    """The time zone ``name`` (IANA, e.g. ``Europe/Paris``); InvalidSchedule if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"unknown time zone '{name}' (use an IANA name such as "
                              "'UTC' or 'Europe/Paris')") from None


def next_cron(expression: str, after: float, timezone: str = "UTC") -> float:
    """The first time strictly after ``after`` matching ``expression`` in ``timezone``."""
    start = datetime.fromtimestamp(after, zone(timezone))
    try:
        return float(croniter(expression, start).get_next(float))
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as exc:
        raise InvalidSchedule(f"invalid cron expression '{expression}': {exc}") from None


def next_interval(interval: float, after: float, anchor: float | None = None) -> float:
    """The first ``anchor + k * interval`` strictly after ``after`` (k >= 1): the phase of
    the schedule is kept and missed occurrences are skipped, not made up. Without an
    anchor, one interval after ``after``."""
    if anchor is None or anchor > after:
        return after + interval
    steps = math.floor((after - anchor) / interval) + 1
    return anchor + steps * interval


def validate_trigger(cron: str | None, interval_seconds: float | None,
                     timezone: str = "UTC") -> None:
    """Exactly one of ``cron`` and ``interval_seconds``, each usable; InvalidSchedule."""
    if (cron is None) == (interval_seconds is None):
        raise InvalidSchedule("give exactly one of 'cron' and 'interval_seconds'")
    zone(timezone)
    if cron is not None:
        if not cron.strip():
            raise InvalidSchedule("the cron expression is empty")
        if not croniter.is_valid(cron):
            raise InvalidSchedule(
                f"invalid cron expression '{cron}': expected five fields (minute hour "
                "day-of-month month day-of-week, e.g. '*/15 * * * *'), an optional sixth "
                "for seconds, or a nickname such as '@hourly'")
        next_cron(cron, time.time(), timezone)  # one that never fires fails here
    elif interval_seconds is not None and not \
            MIN_INTERVAL_SECONDS <= interval_seconds <= MAX_INTERVAL_SECONDS:
        raise InvalidSchedule(f"interval_seconds must be at least {MIN_INTERVAL_SECONDS:g} "
                              f"and at most {MAX_INTERVAL_SECONDS:.0f} (ten years)")


# -- records ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    id: str
    workflow: str
    version: int | None
    variables: dict[str, Any]
    cron: str | None
    interval_seconds: float | None
    timezone: str
    enabled: bool
    next_run_at: float
    last_run_at: float | None = None
    last_run_id: str | None = None
    last_error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    created_by: str | None = None

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Schedule:
        interval = doc.get("interval_seconds")
        version = doc.get("version")
        return cls(id=doc["_id"], workflow=doc["workflow"],
                   version=None if version is None else int(version),
                   variables=dict(doc.get("variables") or {}), cron=doc.get("cron"),
                   interval_seconds=None if interval is None else float(interval),
                   timezone=doc.get("timezone") or "UTC", enabled=bool(doc["enabled"]),
                   next_run_at=float(doc["next_run_at"]), last_run_at=doc.get("last_run_at"),
                   last_run_id=doc.get("last_run_id"), last_error=doc.get("last_error"),
                   created_at=float(doc.get("created_at") or 0.0),
                   updated_at=float(doc.get("updated_at") or 0.0),
                   created_by=doc.get("created_by"))

    def next_after(self, after: float) -> float:
        """The next occurrence strictly after ``after`` (missed ones skipped)."""
        if self.cron is not None:
            return next_cron(self.cron, after, self.timezone)
        assert self.interval_seconds is not None
        return next_interval(self.interval_seconds, after, self.next_run_at)

    @property
    def scheduled_trigger(self) -> str:
        return f"schedule:{self.id}"

    @property
    def manual_trigger(self) -> str:
        return f"manual-schedule:{self.id}"


def first_run_at(cron: str | None, interval_seconds: float | None, timezone: str,
                 after: float) -> float:
    if cron is not None:
        return next_cron(cron, after, timezone)
    assert interval_seconds is not None
    return after + interval_seconds


class Schedules:
    """The ``schedules`` collection. Every change is one single-document update."""

    def __init__(self, db: Database[Any]):
        self.collection: Collection[Any] = db["schedules"]

    def ensure_indexes(self) -> None:
        """The index of the tick's query (optional: a small collection)."""
        self.collection.create_index([("enabled", 1), ("next_run_at", 1)])

    # -- reading ------------------------------------------------------------------------

    def get(self, schedule_id: str) -> Schedule:
        doc = self.collection.find_one({"_id": schedule_id})
        if doc is None:
            raise ScheduleMissing(f"no schedule '{schedule_id}'")
        return Schedule.of(doc)

    def find(self, workflow: str | None = None) -> list[Schedule]:
        query: dict[str, Any] = {} if workflow is None else {"workflow": workflow}
        docs = self.collection.find(query).sort([("workflow", 1), ("created_at", 1)])
        return [Schedule.of(doc) for doc in docs]

    def due(self, now: float, limit: int = TICK_BATCH) -> list[Schedule]:
        """Enabled schedules whose next run is at or before ``now``, oldest first."""
        docs = self.collection.find({"enabled": True, "next_run_at": {"$lte": now}}) \
            .sort("next_run_at", 1).limit(limit)
        return [Schedule.of(doc) for doc in docs]

    # -- changing -----------------------------------------------------------------------

    def create(self, workflow: str, *, cron: str | None = None,
               interval_seconds: float | None = None, timezone: str = "UTC",
               variables: Mapping[str, Any] | None = None, version: int | None = None,
               enabled: bool = True, by: str | None = None,
               now: float | None = None) -> Schedule:
        validate_trigger(cron, interval_seconds, timezone)
        ts = time.time() if now is None else now
        doc = {"_id": secrets.token_hex(8), "workflow": workflow, "version": version,
               "variables": dict(variables or {}), "cron": cron,
               "interval_seconds": interval_seconds, "timezone": timezone,
               "enabled": enabled,
               "next_run_at": first_run_at(cron, interval_seconds, timezone, ts),
               "last_run_at": None, "last_run_id": None, "last_error": None,
               "created_at": ts, "updated_at": ts, "created_by": by}
        self.collection.insert_one(doc)
        return Schedule.of(doc)

    def update(self, schedule_id: str, changes: Mapping[str, Any],
               now: float | None = None) -> Schedule:
        """Change the fields in ``changes`` (see CHANGEABLE). Setting ``cron`` clears
        ``interval_seconds`` and the other way round. A new trigger, or enabling a paused
        schedule, computes the next run from now."""
        unknown = set(changes) - CHANGEABLE
        if unknown:
            raise InvalidSchedule(f"cannot change {', '.join(sorted(unknown))}")
        current = self.get(schedule_id)
        ts = time.time() if now is None else now
        values: dict[str, Any] = dict(changes)
        if changes.get("cron") is not None:
            values["interval_seconds"] = None
        elif changes.get("interval_seconds") is not None:
            values["cron"] = None
        cron = values.get("cron", current.cron)
        interval = values.get("interval_seconds", current.interval_seconds)
        timezone = values.get("timezone") or current.timezone
        values["timezone"] = timezone
        validate_trigger(cron, interval, timezone)
        retimed = any(values.get(k, getattr(current, k)) != getattr(current, k)
                      for k in ("cron", "interval_seconds", "timezone"))
        resumed = values.get("enabled") is True and not current.enabled
        if retimed or resumed:
            values["next_run_at"] = first_run_at(cron, interval, timezone, ts)
        if "variables" in values:
            values["variables"] = dict(values["variables"] or {})
        values["updated_at"] = ts
        done = self.collection.update_one({"_id": schedule_id}, {"$set": values})
        if done.matched_count != 1:
            raise ScheduleMissing(f"no schedule '{schedule_id}'")
        return self.get(schedule_id)

    def delete(self, schedule_id: str) -> Schedule:
        schedule = self.get(schedule_id)
        done = self.collection.delete_one({"_id": schedule_id})
        if done.deleted_count != 1:
            raise ScheduleMissing(f"no schedule '{schedule_id}'")
        return schedule

    def claim(self, schedule: Schedule, next_run_at: float) -> bool:
        """Move ``schedule`` from its ``next_run_at`` to ``next_run_at``; True only for
        the one caller whose compare-and-set matched (it submits the run)."""
        done = self.collection.update_one(
            {"_id": schedule.id, "enabled": True, "next_run_at": schedule.next_run_at},
            {"$set": {"next_run_at": next_run_at}})
        return done.modified_count == 1

    def record_run(self, schedule_id: str, at: float, run_id: str | None,
                   error: str | None = None) -> None:
        values: dict[str, Any] = {"last_run_at": at, "last_error": error}
        if run_id is not None:
            values["last_run_id"] = run_id
        self.collection.update_one({"_id": schedule_id}, {"$set": values})


# -- firing -------------------------------------------------------------------------------

def _library(db: Any) -> WorkflowLibrary:
    """The stored workflows, reading only the environment an admin allows (a scheduled
    run happens on a worker: its documents must not read the worker's settings)."""
    from chordflow.config import get_settings

    return WorkflowLibrary(db, get_settings().dialect_environ())


def submit_scheduled(service: Any, schedule: Schedule, trigger: str,
                     library: WorkflowLibrary | None = None) -> str:
    """Submit a run of ``schedule``'s stored workflow with ``trigger``; its run id."""
    library = library or _library(service.engine.store.db)
    version = None if schedule.version is None else str(schedule.version)
    workflow = load_data(library.runnable(schedule.workflow, version))
    run_id: str = service.submit(workflow, schedule.variables, trigger=trigger)
    return run_id


@dataclass(frozen=True)
class Fired:
    """What a tick did with one due schedule."""

    schedule_id: str
    run_id: str | None
    error: str | None = None


def tick(service: Any, now: float | None = None, *,
         schedules: Schedules | None = None,
         library: WorkflowLibrary | None = None) -> list[Fired]:
    """Submit a run of every due schedule this tick wins (see the module docstring).

    ``service`` is a ``RunService`` (anything with ``engine.store.db`` and
    ``submit(workflow, variables, trigger=...)``). Returns what was fired; schedules
    claimed by another tick are left out.
    """
    now = time.time() if now is None else now
    db = service.engine.store.db
    schedules = schedules or Schedules(db)
    library = library or _library(db)
    fired: list[Fired] = []
    for schedule in schedules.due(now):
        try:
            following = schedule.next_after(now)
        except InvalidSchedule as exc:  # stored by hand or by an older version
            log.error("schedule %s: %s", schedule.id, exc)
            schedules.record_run(schedule.id, now, None, str(exc))
            continue
        if not schedules.claim(schedule, following):
            continue  # another tick (or a change through the API) got there first
        try:
            run_id = submit_scheduled(service, schedule, schedule.scheduled_trigger, library)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}" if not isinstance(
                exc, ChordflowError) else str(exc)
            log.warning("schedule %s could not start a run of '%s': %s", schedule.id,
                        schedule.workflow, message)
            schedules.record_run(schedule.id, now, None, message)
            fired.append(Fired(schedule.id, None, message))
            continue
        schedules.record_run(schedule.id, now, run_id)
        log.info("schedule %s started run %s of '%s'", schedule.id, run_id,
                 schedule.workflow)
        fired.append(Fired(schedule.id, run_id))
    return fired
