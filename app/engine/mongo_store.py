"""The MongoDB store: the same records as the in-memory store, one document each.

Collections::

    workflows  every definition ever run, by content digest (name, version, definition)
    runs       one document per run; ``steps_left`` and ``active`` are its counters
    steps      one document per step of a run, ``_id`` = "<run>/<step>"
    items      one document per ``foreach`` element, ``_id`` = "<run>/<step>/<index>"
    marks      idempotence marks: a counter is decremented only by whoever inserts the
               mark first (a duplicated message finds the mark and changes nothing)
    waiting    task keys queued for a ``max_parallel`` slot, oldest first
    events     the append-only log of every run, in pages: one document per run per
               batch a process writes (``events``: the list; ``ts`` and ``last``: the
               times of its first and last event), so a task's events cost no write of
               their own and a wide fan-out writes a few documents a second, not
               thousands

Everything dispatch depends on is a single-document atomic update: a compare-and-set
on ``status`` (and ``attempts``), an ``$inc`` on a counter, or an insert that fails on
a duplicate ``_id``. The store uses nothing beyond plain field queries and ``$set``,
``$inc`` and ``$in``, so it also runs on MongoDB-protocol servers that implement only
those (``nx-27017``, used by the tests when no MongoDB is at hand).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, fields
from typing import Any, TypeVar

import pymongo
from pymongo import ReturnDocument
from pymongo.collection import Collection as MongoCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from app.engine.dispatch import TaskKey
from app.engine.records import Event, ItemRecord, LogLine, RunRecord, StepRecord, now
from app.engine.state import RunStatus, StepStatus, check_run, check_step
from app.errors import RunNotFound

_STEP_FIELDS = {f.name for f in fields(StepRecord)} - {"items"}
_ITEM_FIELDS = {f.name for f in fields(ItemRecord)}
_RUN_FIELDS = {f.name for f in fields(RunRecord)}
StatusT = TypeVar("StatusT", RunStatus, StepStatus)
#: Ids per ``$in`` query (about 60 bytes each).
IDS_PER_QUERY = 10_000
#: Events per document of the event log (a page stays far below MongoDB's 16 MB).
EVENTS_PER_PAGE = 500


class MongoStore:
    def __init__(self, url: str, database: str, *, client: pymongo.MongoClient[Any] | None = None):
        self.client: pymongo.MongoClient[Any] = client or pymongo.MongoClient(
            url, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, tz_aware=False,
        )
        db = self.client[database]
        self.db = db
        self.workflows: MongoCollection[Any] = db["workflows"]
        self.runs: MongoCollection[Any] = db["runs"]
        self.steps: MongoCollection[Any] = db["steps"]
        self.items: MongoCollection[Any] = db["items"]
        self.marks: MongoCollection[Any] = db["marks"]
        self.waiting: MongoCollection[Any] = db["waiting"]
        self.events_: MongoCollection[Any] = db["events"]

    def ensure_indexes(self) -> None:
        """Indexes for the queries the engine, the reconciler and the API make."""
        self.runs.create_index([("status", 1), ("created_at", -1)])
        self.runs.create_index([("workflow", 1), ("created_at", -1)])
        self.runs.create_index([("created_at", -1)])
        self.steps.create_index([("run_id", 1), ("status", 1)])
        self.items.create_index([("run_id", 1), ("step", 1)])
        self.waiting.create_index([("run_id", 1), ("seq", 1)])
        self.events_.create_index([("run_id", 1), ("last", 1)])
        self.db["logs"].create_index([("run_id", 1), ("ts", 1)])
        self.workflows.create_index([("name", 1), ("version", 1)])

    def ping(self) -> None:
        self.client.admin.command("ping")

    def close(self) -> None:
        self.client.close()

    # -- runs -------------------------------------------------------------------------

    def create_run(self, run: RunRecord, steps: Iterable[StepRecord], workflow: Any) -> None:
        definition = workflow.model_dump(mode="json") if hasattr(workflow, "model_dump") \
            else dict(workflow)
        self.workflows.update_one(
            {"_id": run.digest},
            {"$setOnInsert": {"name": run.workflow, "version": run.version,
                              "definition": definition, "created_at": now()}},
            upsert=True,
        )
        docs = [self._step_doc(step) for step in steps]
        if docs:
            self.steps.insert_many(docs, ordered=False)
        self.runs.insert_one(self._run_doc(run))

    def get_run(self, run_id: str) -> RunRecord:
        doc = self.runs.find_one({"_id": run_id})
        if doc is None:
            raise RunNotFound(f"no run '{run_id}'")
        return _run_record(doc)

    def get_workflow(self, run_id: str) -> Any:
        run = self.get_run(run_id)
        doc = self.workflows.find_one({"_id": run.digest})
        if doc is None:
            raise RunNotFound(f"run '{run_id}' names workflow {run.digest}, which is missing")
        return doc["definition"]

    def list_runs(self, status: Collection[RunStatus] | None = None) -> list[RunRecord]:
        query = {} if status is None else {"status": {"$in": [str(s) for s in status]}}
        return [_run_record(doc) for doc in self.runs.find(query)]

    def find_runs(
        self, *, workflow: str | None = None, status: Collection[RunStatus] | None = None,
        created_after: float | None = None, created_before: float | None = None,
        after: tuple[float, str] | None = None, limit: int = 50,
    ) -> list[RunRecord]:
        """Runs newest first, filtered; ``after`` = (created_at, id) of the last run of
        the previous page (keyset pagination: stable while new runs arrive)."""
        query: dict[str, Any] = {}
        if workflow is not None:
            query["workflow"] = workflow
        if status:
            query["status"] = {"$in": [str(s) for s in status]}
        created: dict[str, float] = {}
        if created_after is not None:
            created["$gte"] = created_after
        if created_before is not None:
            created["$lt"] = created_before
        if created:
            query["created_at"] = created
        if after is not None:
            query = {"$and": [query, {"$or": [
                {"created_at": {"$lt": after[0]}},
                {"created_at": after[0], "_id": {"$lt": after[1]}},
            ]}]}
        docs = self.runs.find(query).sort([("created_at", -1), ("_id", -1)]).limit(limit)
        return [_run_record(doc) for doc in docs]

    def claim_idempotency_key(self, key: str, run_id: str) -> str | None:
        """Tie ``key`` to ``run_id``; the run it was tied to before, if any."""
        try:
            self.db["idempotency"].insert_one({"_id": key, "run_id": run_id,
                                               "created_at": now()})
        except DuplicateKeyError:
            doc = self.db["idempotency"].find_one({"_id": key})
            return str(doc["run_id"]) if doc else None
        return None

    def release_idempotency_key(self, key: str) -> None:
        self.db["idempotency"].delete_one({"_id": key})

    def set_run_status(
        self, run_id: str, expect: Collection[RunStatus], status: RunStatus, **fields: Any
    ) -> bool:
        for frm in expect:
            check_run(frm, status)
        result = self.runs.update_one(
            {"_id": run_id, "status": _status_in(expect)},
            {"$set": {"status": str(status), **fields}},
        )
        return result.modified_count == 1

    # -- steps ------------------------------------------------------------------------

    def get_steps(
        self, run_id: str, names: Collection[str] | None = None
    ) -> dict[str, StepRecord]:
        if names is None:
            query: dict[str, Any] = {"run_id": run_id}
        else:
            query = {"_id": {"$in": [f"{run_id}/{n}" for n in names]}}
        records = {doc["name"]: _step_record(doc) for doc in self.steps.find(query)}
        with_items = [name for name, rec in records.items() if rec.items is not None]
        if with_items:
            ids = [f"{run_id}/{name}/{i}" for name in with_items  # by id: see Engine.steps_of
                   for i in range(len(records[name].items or ()))]
            # In slices: a command stays far below MongoDB's 16 MB at any foreach size.
            docs = (doc for start in range(0, len(ids), IDS_PER_QUERY)
                    for doc in self.items.find({"_id": {"$in": ids[start:start + IDS_PER_QUERY]}}))
            for doc in docs:
                rec = records[doc["step"]]
                assert rec.items is not None
                rec.items[doc["index"]] = _item_record(doc)
        return records

    def transition_step(
        self,
        run_id: str,
        name: str,
        expect: Collection[StepStatus],
        status: StepStatus,
        *,
        attempt: int | None = None,
        expect_generation: int | None = None,
        **fields: Any,
    ) -> bool:
        for frm in expect:
            check_step(frm, status)
        items = fields.pop("items", None)
        if items is not None:
            # Elements first, so a step never shows ready without them; a duplicate
            # release writes the same documents again and loses nothing.
            self._insert_items(run_id, name, items)
            fields["items_total"] = len(items)
        return _compare_and_set(self.steps, f"{run_id}/{name}", expect, status, attempt,
                                fields, expect_generation)

    def queue_steps(self, run_id: str, names: Collection[str], queued_at: float) -> None:
        check_step(StepStatus.PENDING, StepStatus.QUEUED)
        self.steps.update_many(
            {"_id": {"$in": [f"{run_id}/{n}" for n in names]},
             "status": str(StepStatus.PENDING)},
            {"$set": {"status": str(StepStatus.QUEUED), "queued_at": queued_at}},
        )

    def finish_step(
        self,
        run_id: str,
        name: str,
        expect: Collection[StepStatus],
        status: StepStatus,
        *,
        attempt: int | None = None,
        expect_generation: int | None = None,
        **fields: Any,
    ) -> StepRecord | None:
        for frm in expect:
            check_step(frm, status)
        query = _expecting(f"{run_id}/{name}", expect, attempt, expect_generation)
        doc = self.steps.find_one_and_update(
            query, {"$set": {"status": str(status), **_plain(fields)}},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else _step_record(doc)

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
        **fields: Any,
    ) -> bool:
        for frm in expect:
            check_step(frm, status)
        if not _compare_and_set(self.items, f"{run_id}/{name}/{index}", expect, status,
                                attempt, fields, expect_generation):
            return False
        if "attempts" in fields:  # the step shows its busiest element's attempts
            self.steps.update_one(
                {"_id": f"{run_id}/{name}", "attempts": {"$lt": fields["attempts"]}},
                {"$set": {"attempts": fields["attempts"]}},
            )
        return True

    def _insert_items(self, run_id: str, name: str, items: list[ItemRecord]) -> None:
        docs = [
            {"_id": f"{run_id}/{name}/{i}", "run_id": run_id, "step": name, "index": i,
             **_plain(asdict(item))}
            for i, item in enumerate(items)
        ]
        try:
            self.items.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise

    # -- idempotent counters ------------------------------------------------------------

    def _mark(self, key: str) -> bool:
        """True the first time ``key`` is marked, False ever after."""
        try:
            self.marks.insert_one({"_id": key})
        except DuplicateKeyError:
            return False
        return True

    def count_parent(self, run_id: str, child: str, parent: str) -> int | None:
        if not self._mark(f"{run_id}/parent/{child}/{parent}"):
            return None
        doc = self.steps.find_one_and_update(
            {"_id": f"{run_id}/{child}"}, {"$inc": {"waiting_on": -1}},
            return_document=ReturnDocument.AFTER,
        )
        return int(_found(doc)["waiting_on"])

    def count_item(self, run_id: str, name: str, index: int) -> int | None:
        if not self._mark(f"{run_id}/item/{name}/{index}"):
            return None
        doc = self.steps.find_one_and_update(
            {"_id": f"{run_id}/{name}"}, {"$inc": {"items_left": -1}},
            return_document=ReturnDocument.AFTER,
        )
        return int(_found(doc)["items_left"])

    def count_steps(self, run_id: str, n: int = 1) -> int:
        doc = self.runs.find_one_and_update(
            {"_id": run_id}, {"$inc": {"steps_left": -n}},
            return_document=ReturnDocument.AFTER,
        )
        return int(_found(doc)["steps_left"])

    # -- max_parallel slots ---------------------------------------------------------------

    def admit(self, run_id: str, key: str, limit: int) -> list[str]:
        try:
            self.waiting.insert_one({"_id": f"{run_id}/{key}", "run_id": run_id, "key": key,
                                     "seq": time.time_ns()})
        except DuplicateKeyError:
            return []  # already waiting
        return self._pump(run_id, limit)

    def release(self, run_id: str, key: str, limit: int) -> list[str]:
        freed = self.marks.delete_one({"_id": f"{run_id}/slot/{key}"}).deleted_count == 1
        if freed:
            self.runs.update_one({"_id": run_id}, {"$inc": {"active": -1}})
        return self._pump(run_id, limit)

    def _pump(self, run_id: str, limit: int) -> list[str]:
        """Admit waiting keys in order while a slot is free.

        A slot is reserved (``active`` incremented under the limit) before a waiting key
        is taken, and given back if there was none. Whoever adds a waiting key or frees a
        slot pumps afterwards, and a pump that gave a reservation back looks again, so no
        key is left waiting while a slot is free.
        """
        admitted: list[str] = []
        while True:
            reserved = self.runs.update_one(
                {"_id": run_id, "active": {"$lt": limit}}, {"$inc": {"active": 1}}
            ).modified_count == 1
            if not reserved:
                return admitted
            doc = self.waiting.find_one_and_delete({"run_id": run_id},
                                                   sort=[("seq", 1)])
            if doc is not None:
                try:
                    self.marks.insert_one({"_id": f"{run_id}/slot/{doc['key']}"})
                except DuplicateKeyError:
                    # It held a slot already (admitted again by a resume): give the new
                    # reservation back, and let the caller queue it (idempotent).
                    self.runs.update_one({"_id": run_id}, {"$inc": {"active": -1}})
                admitted.append(doc["key"])
                continue
            self.runs.update_one({"_id": run_id}, {"$inc": {"active": -1}})
            if self.waiting.find_one({"run_id": run_id}) is None:
                return admitted

    def reset_steps(
        self, run_id: str, waiting_on: Mapping[str, int],
        forget: Collection[tuple[str, str]], generation: int,
    ) -> None:
        names = list(waiting_on)
        docs = {d["name"]: d for d in self.steps.find(
            {"_id": {"$in": [f"{run_id}/{n}" for n in names]}})}
        marks = [f"{run_id}/slot/{n}" for n in names]
        marks += [f"{run_id}/parent/{child}/{parent}" for parent, child in forget]
        for name in names:
            total = docs[name].get("items_total") or 0
            marks += [f"{run_id}/item/{name}/{i}" for i in range(total)]
            marks += [f"{run_id}/slot/{name}[{i}]" for i in range(total)]
        if marks:
            self.marks.delete_many({"_id": {"$in": marks}})
        self.items.delete_many({"run_id": run_id, "step": {"$in": names}})
        for name, waiting in waiting_on.items():
            self.steps.update_one({"_id": f"{run_id}/{name}"}, {"$set": {
                "status": str(StepStatus.PENDING), "params": None, "outputs": None,
                "error": None, "queued_at": None, "started_at": None, "finished_at": None,
                "worker": None, "task_id": None, "waiting_on": waiting, "items_total": None,
                "items_left": 0, "generation": generation,
            }})
        self.waiting.delete_many({"run_id": run_id})
        self.runs.update_one({"_id": run_id}, {"$set": {"active": 0}})

    # -- events ---------------------------------------------------------------------------

    def append_event(self, event: Event) -> None:
        self.append_events([event])

    def append_logs(self, lines: list[LogLine]) -> None:
        self.db["logs"].insert_many([asdict(line) for line in lines])

    def logs(self, run_id: str, step: str | None = None) -> list[LogLine]:
        docs = self.db["logs"].find({"run_id": run_id}).sort([("ts", 1), ("_id", 1)])
        return [LogLine(d["run_id"], d["step"], d["attempt"], d["stream"], d["text"],
                        d.get("worker"), d["ts"]) for d in docs
                if step is None or TaskKey.parse(d["step"]).step == step]

    def append_events(self, events: list[Event]) -> None:
        by_run: dict[str, list[Event]] = {}
        for event in events:
            by_run.setdefault(event.run_id, []).append(event)
        pages = []
        for run_id, run_events in by_run.items():
            for start in range(0, len(run_events), EVENTS_PER_PAGE):
                page = run_events[start:start + EVENTS_PER_PAGE]
                pages.append({
                    "run_id": run_id,
                    "ts": min(e.ts for e in page), "last": max(e.ts for e in page),
                    "events": [_plain({"type": e.type, "step": e.step, "data": e.data,
                                       "ts": e.ts}) for e in page],
                })
        if pages:
            self.events_.insert_many(pages)

    def events(self, run_id: str, after: int = 0, since: float | None = None) -> list[Event]:
        query: dict[str, Any] = {"run_id": run_id}
        if since is not None:
            query["last"] = {"$gte": since}
        pages = self.events_.find(query).sort([("ts", 1), ("_id", 1)])
        found = [Event(run_id, e["type"], e.get("step"), e.get("data"), e["ts"])
                 for page in pages for e in page["events"]
                 if since is None or e["ts"] >= since]
        found.sort(key=lambda e: e.ts)  # stable: a page's own order breaks ties
        return found[after:]

    # -- documents ----------------------------------------------------------------------------

    @staticmethod
    def _run_doc(run: RunRecord) -> dict[str, Any]:
        doc = _plain(asdict(run))
        doc["_id"] = doc.pop("id")
        doc["active"] = 0
        return doc

    @staticmethod
    def _step_doc(step: StepRecord) -> dict[str, Any]:
        """A new step's document: fields still unset are left out (a run of thousands of
        steps is written in one go; readers take a missing field as unset)."""
        doc = _plain({k: v for k, v in asdict(step).items()
                      if k != "items" and v is not None})
        doc["_id"] = f"{step.run_id}/{step.name}"
        return doc


def _compare_and_set(
    collection: MongoCollection[Any], doc_id: str, expect: Collection[StepStatus],
    status: StepStatus, attempt: int | None, fields: Mapping[str, Any],
    generation: int | None = None,
) -> bool:
    """Set ``status`` and ``fields`` if the status is in ``expect`` (and the attempts
    equal ``attempt``): one atomic update of one document."""
    result = collection.update_one(_expecting(doc_id, expect, attempt, generation),
                                   {"$set": {"status": str(status), **_plain(fields)}})
    return result.modified_count == 1


def _expecting(
    doc_id: str, expect: Collection[StepStatus], attempt: int | None,
    generation: int | None = None,
) -> dict[str, Any]:
    """The query of a compare-and-set: this document, in one of these states."""
    query: dict[str, Any] = {"_id": doc_id, "status": _status_in(expect)}
    if attempt is not None:
        query["attempts"] = attempt
    if generation is not None:
        query["generation"] = generation
    return query


def _status_in(expect: Collection[StatusT]) -> Any:
    """A status condition: equality for one status (MongoDB-protocol servers answer it
    faster than ``$in``: nx-27017 takes half the time), ``$in`` for several."""
    statuses = [str(s) for s in expect]
    return statuses[0] if len(statuses) == 1 else {"$in": statuses}  # [] matches nothing


def _found(doc: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if doc is None:
        raise RunNotFound("the run's records are missing")
    return doc


def _plain(value: Any) -> Any:
    """StrEnums to str (BSON has no enums); everything else as it is."""
    if isinstance(value, StepStatus | RunStatus):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, ItemRecord):
        return _plain(asdict(value))
    return value


def _run_record(doc: Mapping[str, Any]) -> RunRecord:
    values = {k: v for k, v in doc.items() if k in _RUN_FIELDS}
    values["id"] = doc["_id"]
    values["status"] = RunStatus(doc["status"])
    return RunRecord(**values)


def _step_record(doc: Mapping[str, Any]) -> StepRecord:
    values = {k: v for k, v in doc.items() if k in _STEP_FIELDS}
    values["status"] = StepStatus(doc["status"])
    rec = StepRecord(**values)
    total = doc.get("items_total")
    if total is not None:
        rec.items = [ItemRecord() for _ in range(total)]
    return rec


def _item_record(doc: Mapping[str, Any]) -> ItemRecord:
    values = {k: v for k, v in doc.items() if k in _ITEM_FIELDS}
    values["status"] = StepStatus(doc["status"])
    return ItemRecord(**values)

