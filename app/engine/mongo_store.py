"""The MongoDB store: the same records as the in-memory store, one document each.

Collections::

    workflows  every definition ever run, by content digest (name, version, definition;
               a large one as ``parts``, see app/engine/large_values.py)
    workflow_parts  the compressed parts of large definitions, ``_id`` = "<digest>/<n>"
    runs       one document per run; ``steps_left`` and ``active`` are its counters,
               ``slots`` the keys holding its ``max_parallel`` slots
    steps      one document per step of a run, ``_id`` = "<run>/<step>"; ``joined``
               holds the parents counted for it (see ``count_parent``)
    items      one document per ``foreach`` element, ``_id`` = "<run>/<step>/<index>"
    marks      the counts of ``foreach`` elements, one document per group of
               ``COUNT_GROUP`` elements, ``_id`` = "<run>/item/<step>/g<group>" (see
               ``count_item``)
    waiting    task keys queued for a ``max_parallel`` slot, oldest first
    events     the append-only log of every run, in pages: one document per run per
               batch a process writes (``events``: the list; ``ts`` and ``last``: the
               times of its first and last event), so a task's events cost no write of
               their own and a wide fan-out writes a few documents a second, not
               thousands
    logs       what each attempt printed and logged

Everything dispatch depends on is a single-document atomic update: a compare-and-set
on ``status`` (and ``attempts``, the lease), an ``$inc`` on a counter together with the
mark that makes it idempotent, or an insert that fails on a duplicate ``_id``. The
store uses nothing beyond plain field queries, ``$exists`` and ``$set``, ``$unset``,
``$inc`` and ``$in``, so it also runs on MongoDB-protocol servers that implement only
those (``nx-27017``, used by the tests when no MongoDB is at hand).

Every operation waits out an outage of the server (``patience``: retries with backoff
up to a tolerance, then StoreUnavailable) and can be repeated safely; see
app/engine/patience.py and app/engine/patient_collection.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, fields
from typing import Any, TypeVar

import pymongo
from chordflow.engine import large_values
from chordflow.engine.dispatch import TaskKey
from chordflow.engine.live_output import page_doc, page_lines, with_live
from chordflow.engine.patience import UNREACHABLE, Patience
from chordflow.engine.patient_collection import PatientCollection
from chordflow.engine.recent import Recent
from chordflow.engine.records import Event, ItemRecord, LogLine, RunRecord, StepRecord, now
from chordflow.engine.run_search import search_filter
from chordflow.engine.state import RunStatus, StepStatus, check_run, check_step
from chordflow.errors import RunNotFound, StoreUnavailable
from pymongo.collection import Collection as MongoCollection
from pymongo.errors import DuplicateKeyError

_STEP_FIELDS = {f.name for f in fields(StepRecord)} - {"items"}
_ITEM_FIELDS = {f.name for f in fields(ItemRecord)}
_RUN_FIELDS = {f.name for f in fields(RunRecord)}
StatusT = TypeVar("StatusT", RunStatus, StepStatus)
#: Ids per ``$in`` query (about 60 bytes each).
IDS_PER_QUERY = 10_000
#: Events per document of the event log (a page stays far below MongoDB's 16 MB).
EVENTS_PER_PAGE = 500
#: Seconds pymongo looks for the server on one try (a patient call tries again), and
#: waits for one reply (a step's module may return a list of 100,000 elements).
SERVER_SELECTION_SECONDS = 2.0
SOCKET_SECONDS = 120.0
#: Seconds a store made without a patience waits for an unreachable server: someone is
#: waiting for an answer (the CLI, an HTTP client), and retrying is theirs to decide.
CLIENT_PATIENCE = 5.0
#: ``foreach`` elements counted in one document before they count for their step.
COUNT_GROUP = 64


class MongoStore:
    def __init__(self, url: str, database: str, *, client: pymongo.MongoClient[Any] | None = None,
                 patience: Patience | float = CLIENT_PATIENCE):
        self.client: pymongo.MongoClient[Any] = client or pymongo.MongoClient(
            url, serverSelectionTimeoutMS=int(SERVER_SELECTION_SECONDS * 1000),
            connectTimeoutMS=int(SERVER_SELECTION_SECONDS * 1000),
            socketTimeoutMS=int(SOCKET_SECONDS * 1000), tz_aware=False,
        )
        self.patience = patience if isinstance(patience, Patience) else \
            Patience(patience, what=f"MongoDB ({_host_of(url)})")
        db = self.client[database]
        self.db = db
        # The raw collections, for readers that page through them themselves (metrics).
        self.workflows: MongoCollection[Any] = db["workflows"]
        self.runs: MongoCollection[Any] = db["runs"]
        self.steps: MongoCollection[Any] = db["steps"]
        self.items: MongoCollection[Any] = db["items"]
        self.marks: MongoCollection[Any] = db["marks"]
        self.waiting: MongoCollection[Any] = db["waiting"]
        self.events_: MongoCollection[Any] = db["events"]
        # What the engine uses: each operation patient and repeatable.
        patient = self.patience
        self._workflows = PatientCollection(self.workflows, patient)
        self._runs = PatientCollection(self.runs, patient)
        self._steps = PatientCollection(self.steps, patient)
        self._items = PatientCollection(self.items, patient)
        self._marks = PatientCollection(self.marks, patient)
        self._waiting = PatientCollection(self.waiting, patient)
        self._events = PatientCollection(self.events_, patient)
        self._logs = PatientCollection(db["logs"], patient)
        #: Running attempts' output so far, in pages (app/engine/live_output.py).
        self._live_logs = PatientCollection(db["live_logs"], patient)
        self._parts = PatientCollection(db["workflow_parts"], patient)
        #: The attempts each foreach step was raised to by this process.
        self._attempts_seen: Recent[str, int] = Recent(10_000)
        #: Definitions this process stored (by digest): a run of one needs no write.
        self._stored: Recent[str, bool] = Recent(1_000)
        self._ops = PatientCollection(db["ops"], patient)

    def ensure_indexes(self) -> None:
        """Indexes for the queries the engine, the reconciler and the API make."""
        self._runs.create_index([("status", 1), ("created_at", -1)])
        self._runs.create_index([("workflow", 1), ("created_at", -1)])
        self._runs.create_index([("created_at", -1)])
        self._steps.create_index([("run_id", 1), ("status", 1)])
        self._items.create_index([("run_id", 1), ("step", 1)])
        self._waiting.create_index([("run_id", 1), ("seq", 1)])
        self._events.create_index([("run_id", 1), ("last", 1)])
        self._logs.create_index([("run_id", 1), ("ts", 1)])
        self._live_logs.create_index([("run_id", 1)])
        self._workflows.create_index([("name", 1), ("version", 1)])

    def ping(self) -> None:
        """One try: raise StoreUnavailable if the server does not answer."""
        try:
            self.client.admin.command("ping")
        except UNREACHABLE as exc:
            raise StoreUnavailable(f"{self.patience.what} is unreachable: {exc}") from exc

    def close(self) -> None:
        self.client.close()

    # -- runs -------------------------------------------------------------------------

    def create_run(self, run: RunRecord, steps: Iterable[StepRecord], workflow: Any) -> None:
        if self._stored.get(run.digest) is None:
            self._store_definition(run, workflow)
            self._stored.put(run.digest, True)
        # Steps first: a run is never seen without them. (Duplicates are the same steps,
        # written by an earlier try of this very submission: see the API's replay.)
        self._steps.insert_many([self._step_doc(step) for step in steps],
                                ignore_duplicates=True)
        self._runs.insert_one(self._run_doc(run))

    def _store_definition(self, run: RunRecord, workflow: Any) -> None:
        """The definition, once per digest (an upsert that changes nothing if stored)."""
        definition = workflow.model_dump(mode="json") if hasattr(workflow, "model_dump") \
            else dict(workflow)
        stored: dict[str, Any] = {"definition": definition}
        text = large_values.text_of(definition)
        if len(text) > large_values.INLINE_BYTES:  # beyond one document: in parts
            parts = large_values.split(run.digest, text)
            self._parts.insert_many(parts, ignore_duplicates=True)
            stored = {"parts": len(parts), "encoding": large_values.ENCODING}
        self.patience.call(lambda: self.workflows.update_one(
            {"_id": run.digest},
            {"$setOnInsert": {"name": run.workflow, "version": run.version,
                              "created_at": now(), **stored}},
            upsert=True,
        ))

    def get_run(self, run_id: str) -> RunRecord:
        doc = self._runs.find_one({"_id": run_id})
        if doc is None:
            raise RunNotFound(f"no run '{run_id}'")
        return _run_record(doc)

    def get_workflow(self, run_id: str) -> Any:
        run = self.get_run(run_id)
        doc = self._workflows.find_one({"_id": run.digest})
        if doc is None:
            raise RunNotFound(f"run '{run_id}' names workflow {run.digest}, which is missing")
        if "parts" not in doc:
            return doc["definition"]
        count = int(doc["parts"])
        parts = self._parts.find({"_id": {"$in": large_values.part_ids(run.digest, count)}})
        try:
            return large_values.join(list(parts), count)
        except ValueError as exc:
            raise RunNotFound(f"run '{run_id}' names workflow {run.digest}: {exc}") from None

    def list_runs(self, status: Collection[RunStatus] | None = None, *,
                  after: str | None = None, limit: int = 0) -> list[RunRecord]:
        """Runs (in a status), by id; ``after`` an id and ``limit`` page through them."""
        query: dict[str, Any] = {} if status is None else {"status": _status_in(status)}
        if after is not None:
            query["_id"] = {"$gt": after}
        sort = [("_id", 1)] if after is not None or limit else None
        return [_run_record(doc) for doc in self._runs.find(query, sort=sort, limit=limit)]

    def find_runs(
        self, *, workflow: str | None = None, status: Collection[RunStatus] | None = None,
        created_after: float | None = None, created_before: float | None = None,
        after: tuple[float, str] | None = None, limit: int = 50, trigger: str | None = None,
        search: str | None = None,
    ) -> list[RunRecord]:
        """Runs newest first, filtered; ``after`` = (created_at, id) of the last run of
        the previous page (keyset pagination: stable while new runs arrive); ``search``
        as ``search_filter`` says."""
        query = _runs_filter(workflow, status, created_after, created_before, trigger, search)
        if after is not None:
            query = {"$and": [query, {"$or": [
                {"created_at": {"$lt": after[0]}},
                {"created_at": after[0], "_id": {"$lt": after[1]}},
            ]}]}
        docs = self._runs.find(query, sort=[("created_at", -1), ("_id", -1)], limit=limit)
        return [_run_record(doc) for doc in docs]

    def count_runs(
        self, *, workflow: str | None = None, created_after: float | None = None,
        created_before: float | None = None, trigger: str | None = None,
        search: str | None = None,
    ) -> dict[str, int]:
        """How many runs have each status, filtered as ``find_runs`` (one count per
        status: what the dashboard's counters show)."""
        def count(status: RunStatus) -> Callable[[], int]:
            query = _runs_filter(workflow, [status], created_after, created_before, trigger,
                                 search)
            return lambda: int(self._runs.raw.count_documents(query))

        return {str(status): self._runs.patience.call(count(status)) for status in RunStatus}

    def rename_workflow_runs(self, old: str, new: str, since: float) -> int:
        """Give the runs of ``old`` made since ``since`` (the stored workflow's creation:
        an earlier, deleted workflow of that name keeps its own) the name ``new``, so
        that a renamed workflow's history lists under its new name; how many."""
        return self._runs.update_many({"workflow": old, "created_at": {"$gte": since}},
                                      {"$set": {"workflow": new}})

    def claim_idempotency_key(self, key: str, run_id: str) -> str | None:
        """Tie ``key`` to ``run_id``; the run it was tied to before, if any."""
        keys = PatientCollection(self.db["idempotency"], self.patience)
        try:
            keys.insert_one({"_id": key, "run_id": run_id, "created_at": now()})
        except DuplicateKeyError:
            doc = keys.find_one({"_id": key})
            return str(doc["run_id"]) if doc else None
        return None

    def release_idempotency_key(self, key: str) -> None:
        PatientCollection(self.db["idempotency"], self.patience).delete_one({"_id": key})

    def set_run_status(
        self, run_id: str, expect: Collection[RunStatus], status: RunStatus, **fields: Any
    ) -> bool:
        for frm in expect:
            check_run(frm, status)
        # Its own token field: counts and slots change the run's document all the time.
        return self._runs.update_one(
            {"_id": run_id, "status": _status_in(expect)},
            {"$set": {"status": str(status), **fields}}, token="status_op",
        )

    # -- steps ------------------------------------------------------------------------

    def get_steps(
        self, run_id: str, names: Collection[str] | None = None
    ) -> dict[str, StepRecord]:
        if names is None:
            docs = self._steps.find({"run_id": run_id})
        else:
            ids = [f"{run_id}/{n}" for n in names]
            docs = [doc for start in range(0, len(ids), IDS_PER_QUERY)
                    for doc in self._steps.find({"_id": {"$in": ids[start:start + IDS_PER_QUERY]}})]
        records = {doc["name"]: _step_record(doc) for doc in docs}
        with_items = [name for name, rec in records.items() if rec.items is not None]
        if with_items:
            ids = [f"{run_id}/{name}/{i}" for name in with_items  # by id: see Engine.steps_of
                   for i in range(len(records[name].items or ()))]
            # In slices: a command stays far below MongoDB's 16 MB at any foreach size.
            for start in range(0, len(ids), IDS_PER_QUERY):
                for doc in self._items.find({"_id": {"$in": ids[start:start + IDS_PER_QUERY]}}):
                    rec = records[doc["step"]]
                    assert rec.items is not None
                    rec.items[doc["index"]] = _item_record(doc)
        return records

    def step_status(self, run_id: str, name: str) -> StepStatus:
        doc = self._steps.find_one({"_id": f"{run_id}/{name}"}, {"status": 1})
        if doc is None:
            raise RunNotFound(f"run '{run_id}' has no step '{name}'")
        return StepStatus(doc["status"])

    def get_item(self, run_id: str, name: str, index: int) -> ItemRecord | None:
        doc = self._items.find_one({"_id": f"{run_id}/{name}/{index}"})
        return None if doc is None else _item_record(doc)

    def get_items(self, run_id: str, name: str, indices: range) -> dict[int, ItemRecord]:
        ids = [f"{run_id}/{name}/{i}" for i in indices]
        return {int(doc["index"]): _item_record(doc)
                for start in range(0, len(ids), IDS_PER_QUERY)
                for doc in self._items.find({"_id": {"$in": ids[start:start + IDS_PER_QUERY]}})}

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
        for frm in expect:
            check_step(frm, status)
        items = fields.pop("items", None)
        if items is not None:
            # Elements first, so a step never shows ready without them; a duplicate
            # release writes the same documents again and loses nothing.
            self._insert_items(run_id, name, items)
            fields["items_total"] = len(items)
        return _compare_and_set(self._steps, f"{run_id}/{name}", expect, status, attempt,
                                fields, expect_generation, expect_lease)

    def queue_steps(self, run_id: str, names: Collection[str], queued_at: float) -> None:
        check_step(StepStatus.PENDING, StepStatus.QUEUED)
        self._steps.update_many(
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
        expect_lease: float | None = None,
        **fields: Any,
    ) -> StepRecord | None:
        for frm in expect:
            check_step(frm, status)
        query = _expecting(f"{run_id}/{name}", expect, attempt, expect_generation)
        if expect_lease is not None:
            query["lease_until"] = expect_lease
        doc = self._steps.find_one_and_update(
            query, {"$set": {"status": str(status), **_plain(fields)}})
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
        expect_lease: float | None = None,
        **fields: Any,
    ) -> bool:
        for frm in expect:
            check_step(frm, status)
        if not _compare_and_set(self._items, f"{run_id}/{name}/{index}", expect, status,
                                attempt, fields, expect_generation, expect_lease):
            return False
        if "attempts" in fields and self._raise_attempts(f"{run_id}/{name}", fields["attempts"]):
            # The step shows its busiest element's attempts.
            self._steps.update_one(
                {"_id": f"{run_id}/{name}", "attempts": {"$lt": fields["attempts"]}},
                {"$set": {"attempts": fields["attempts"]}},
            )
        return True

    def _raise_attempts(self, step_id: str, attempts: int) -> bool:
        """Whether the step's attempts may still be below ``attempts``: not once this
        process raised them that far (the elements of one foreach all start at 1)."""
        return self._attempts_seen.raise_to(step_id, attempts)

    def set_lease(self, run_id: str, name: str, index: int | None, attempt: int,
                  holder: str, until: float, timeout: float | None = None) -> bool:
        """Renew (or, with ``until`` 0, give up) the lease of a running attempt held by
        ``holder``; False if it holds it no longer (taken over, finished, cancelled).

        One try of at most ``timeout`` seconds, never a wait: a holder that cannot
        reach the store must notice at once (see app/engine/lease.py).
        StoreUnavailable if the store does not answer.
        """
        collection = self.steps if index is None else self.items
        doc_id = f"{run_id}/{name}" if index is None else f"{run_id}/{name}/{index}"

        def renew() -> bool:
            with pymongo.timeout(timeout):
                return collection.update_one(
                    {"_id": doc_id, "status": str(StepStatus.RUNNING), "attempts": attempt,
                     "holder": holder},
                    {"$set": {"lease_until": until}},
                ).matched_count == 1

        try:
            return self.patience.call(renew, tolerance=0)
        except pymongo.errors.PyMongoError as exc:  # a timeout: as good as unreachable
            if isinstance(exc, pymongo.errors.OperationFailure) and exc.code != 50:
                raise
            raise StoreUnavailable(f"{self.patience.what} did not answer in time") from exc

    def _insert_items(self, run_id: str, name: str, items: list[ItemRecord]) -> None:
        # Without the fields still unset (read back as their defaults): inserting
        # 100,000 of them is the largest write a run makes.
        self._items.insert_many([
            {"_id": f"{run_id}/{name}/{i}", "run_id": run_id, "step": name, "index": i,
             **{k: v for k, v in _plain(asdict(item)).items() if v is not None}}
            for i, item in enumerate(items)
        ], ignore_duplicates=True)
        n = len(items)
        self._marks.insert_many([
            {"_id": _group_id(run_id, name, g), "size": size, "left": size, "done": {}}
            for g in range(-(-n // COUNT_GROUP))
            for size in [min(COUNT_GROUP, n - g * COUNT_GROUP)]
        ], ignore_duplicates=True)

    # -- idempotent counters ------------------------------------------------------------

    def count_parent(self, run_id: str, child: str, parent: str) -> int | None:
        """One atomic update of the child's document: the mark that ``parent`` was
        counted (``joined.<parent>``) and the count itself, together, so nothing can come
        between them (a task terminated there would leave the child waiting forever).

        The mark holds the call's token: a repeat after a lost reply recognises its own
        count even when other parents have counted since (it then reports what is left
        now, which may release the child a second time: harmless, as every release is a
        compare-and-set).
        """
        doc_id, mark = f"{run_id}/{child}", f"joined.{parent}"
        patience = self.patience

        def count() -> int | None:
            token = patience.token
            doc = self.steps.find_one_and_update(
                {"_id": doc_id, mark: {"$exists": False}},
                {"$inc": {"waiting_on": -1}, "$set": {mark: token}},
                return_document=pymongo.ReturnDocument.AFTER)
            if doc is None:
                doc = self.steps.find_one({"_id": doc_id}, {"waiting_on": 1, "joined": 1})
                if doc is None:
                    raise RunNotFound("the run's records are missing")
                if not (patience.retrying and (doc.get("joined") or {}).get(parent) == token):
                    return None  # counted before
            return int(doc["waiting_on"])

        return patience.call(count)

    def count_item(self, run_id: str, name: str, index: int) -> int | None:
        """Two counts, each a mark and a decrement in one update of one document (as
        ``count_parent``), so that a repeat after a lost reply never counts twice: the
        element in its group's document (``COUNT_GROUP`` elements), then, by whoever
        empties the group, the group's elements in the step's ``items_left``. One write
        per element, one more per group; the step's document changes a few thousand
        times for 100,000 elements, and never holds more than a mark per group.

        Returns what is left of the element's group while it is not empty (so: not
        zero), else the elements left to the step.
        """
        group = index // COUNT_GROUP
        doc_id = _group_id(run_id, name, group)
        doc = self._count_once(self._marks, doc_id, "done", [f"i{index}"], "left")
        if doc is None:  # counted before: perhaps by a task stopped before its group's count
            doc = self._marks.find_one({"_id": doc_id})
            if doc is None or doc["left"] != 0:
                return None
        elif doc["left"] != 0:
            return int(doc["left"])
        return self._count_group(run_id, name, group, int(doc["size"]))

    def count_items(self, run_id: str, name: str, indices: Collection[int]) -> int | None:
        """``count_item`` for many elements (a batch's), one write per group they fall
        in: all their marks and the decrement in one update. Those counted before (by
        their own tasks, by an earlier delivery of the batch) are left out: the update
        is tried again without them. The elements left to the step if a group emptied,
        else None."""
        groups: dict[int, list[str]] = {}
        for index in sorted(set(indices)):
            groups.setdefault(index // COUNT_GROUP, []).append(f"i{index}")
        left: int | None = None
        for group, keys in groups.items():
            doc_id = _group_id(run_id, name, group)
            while keys:
                doc = self._count_once(self._marks, doc_id, "done", keys, "left")
                if doc is None:
                    doc = self._marks.find_one({"_id": doc_id}) or {}
                    unmarked = [key for key in keys if key not in (doc.get("done") or {})]
                    if unmarked == keys:  # refused, yet nothing marked: leave it to a resume
                        break
                    keys = unmarked
                    if keys or doc.get("left") != 0:
                        continue
                    # All counted before, perhaps by a delivery stopped before its
                    # group's count: that count (marked per group) is made here if so.
                if doc["left"] == 0:
                    counted = self._count_group(run_id, name, group, int(doc["size"]))
                    left = left if counted is None else counted
                break
        return left

    def _count_group(self, run_id: str, name: str, group: int, size: int) -> int | None:
        """A group's elements, all counted, in the step's ``items_left``."""
        doc = self._count_once(self._steps, f"{run_id}/{name}", "groups", [f"g{group}"],
                               "items_left", size)
        return None if doc is None else int(doc["items_left"])

    def _count_once(self, coll: PatientCollection, doc_id: str, marks: str,
                    keys: list[str], counter: str, n: int | None = None
                    ) -> dict[str, Any] | None:
        """Decrement ``counter`` by ``n`` (by default, one per key) and set the marks
        ``marks.<key>`` in one update: the document after it, or None if any was marked
        before by another call. A repeat after a lost reply recognises its own marks by
        the call's token (and gets the document as it is now)."""
        patience = self.patience
        paths = [f"{marks}.{key}" for key in keys]

        def count() -> dict[str, Any] | None:
            token = patience.token
            doc = coll.raw.find_one_and_update(
                {"_id": doc_id, **{path: {"$exists": False} for path in paths}},
                {"$inc": {counter: -(len(keys) if n is None else n)},
                 "$set": dict.fromkeys(paths, token)},
                return_document=pymongo.ReturnDocument.AFTER)
            if doc is None:
                doc = coll.raw.find_one({"_id": doc_id})
                if doc is None:
                    raise RunNotFound("the run's records are missing")
                done = doc.get(marks) or {}
                if not (patience.retrying and all(done.get(key) == token for key in keys)):
                    return None  # counted before
            return dict(doc)

        return patience.call(count)

    def count_steps(self, run_id: str, n: int = 1) -> int:
        doc = self._runs.find_one_and_update({"_id": run_id}, {"$inc": {"steps_left": -n}},
                                             token=None)
        return int(_found(doc)["steps_left"])

    # -- max_parallel slots ---------------------------------------------------------------

    def admit(self, run_id: str, key: str, limit: int) -> list[str]:
        try:
            self._waiting.insert_one({"_id": f"{run_id}/{key}", "run_id": run_id, "key": key,
                                      "seq": time.time_ns()})
        except DuplicateKeyError:
            return []  # already waiting
        return self._pump(run_id, limit)

    def release(self, run_id: str, key: str, limit: int) -> list[str]:
        if key:
            # The holder's mark and the count together, in one update of the run's
            # document: a repeat (or a second release) matches nothing and frees nothing.
            mark = _slot_mark(key)
            self._runs.update_one({"_id": run_id, mark: {"$exists": True}},
                                  {"$unset": {mark: ""}, "$inc": {"active": -1}}, token=None)
        return self._pump(run_id, limit)

    def _pump(self, run_id: str, limit: int) -> list[str]:
        """Admit waiting keys, oldest first, while a slot is free.

        A slot is taken for the oldest waiting key by one update of the run's document
        (``active`` below the limit, the key's mark in ``slots`` absent: both changed
        together), then the key leaves the queue. Whoever adds a waiting key or frees a
        slot pumps afterwards, so no key is left waiting while a slot is free. Two pumps
        may both admit a key that held a slot already (a resume admitting it again):
        the caller's queueing is a compare-and-set, so it is sent once.
        """
        admitted: list[str] = []
        while True:
            oldest = self._waiting.find({"run_id": run_id}, sort=[("seq", 1)], limit=1)
            if not oldest:
                return admitted
            key = oldest[0]["key"]
            taken = self._take_slot(run_id, key, limit)
            if taken is False:
                return admitted  # every slot is held
            removed = self._waiting.delete_one({"_id": oldest[0]["_id"]})
            if taken or removed:
                admitted.append(key)

    def _take_slot(self, run_id: str, key: str, limit: int) -> bool | None:
        """Take a slot for ``key``: True if taken now, None if it held one already,
        False if none is free. A repeat after a lost reply finds its own token."""
        patience, mark = self.patience, _slot_mark(key)

        def take() -> bool | None:
            token = patience.token
            if self.runs.update_one(
                    {"_id": run_id, "active": {"$lt": limit}, mark: {"$exists": False}},
                    {"$inc": {"active": 1}, "$set": {mark: token}}).modified_count == 1:
                return True
            doc = self.runs.find_one({"_id": run_id}, {"slots": 1})
            held = ((doc or {}).get("slots") or {}).get(mark.split(".", 1)[1])
            if held is None:
                return False
            return True if patience.retrying and held == token else None

        return patience.call(take)

    def reset_steps(
        self, run_id: str, waiting_on: Mapping[str, int],
        forget: Collection[tuple[str, str]], generation: int,
    ) -> None:
        names = list(waiting_on)
        docs = {d["name"]: d for d in self._steps.find(
            {"_id": {"$in": [f"{run_id}/{n}" for n in names]}})}
        marks = []
        for name in names:
            total = docs[name].get("items_total") or 0
            marks += [_group_id(run_id, name, g) for g in range(-(-total // COUNT_GROUP))]
        if marks:
            self._marks.delete_many({"_id": {"$in": marks}})
        forgotten: dict[str, list[str]] = {}
        for parent, child in forget:
            forgotten.setdefault(child, []).append(parent)
        self._items.delete_many({"run_id": run_id, "step": {"$in": names}})
        for child, parents in forgotten.items():
            if child not in waiting_on:
                self._steps.update_one({"_id": f"{run_id}/{child}"},
                                       {"$unset": {f"joined.{p}": "" for p in parents}})
        for name, waiting in waiting_on.items():
            update: dict[str, Any] = {"$set": {
                "status": str(StepStatus.PENDING), "params": None, "outputs": None,
                "error": None, "queued_at": None, "started_at": None, "finished_at": None,
                "worker": None, "task_id": None, "waiting_on": waiting, "items_total": None,
                "items_left": 0, "groups": {}, "generation": generation, "lease_until": None,
                "holder": None, "resends": 0,
            }}
            if forgotten.get(name):
                update["$unset"] = {f"joined.{p}": "" for p in forgotten[name]}
            self._steps.update_one({"_id": f"{run_id}/{name}"}, update)
        self._waiting.delete_many({"run_id": run_id})
        self._runs.update_one({"_id": run_id}, {"$set": {"active": 0, "slots": {}}})

    def record_resend(self, run_id: str, name: str, index: int | None,
                      queued_at: float | None, resends: int) -> bool:
        """Count a resend of a queued attempt's message, if nobody counted it first
        (the reconciler backs off by this count; see app/engine/recovery.py)."""
        collection = self._steps if index is None else self._items
        doc_id = f"{run_id}/{name}" if index is None else f"{run_id}/{name}/{index}"
        return collection.update_one(
            {"_id": doc_id, "status": str(StepStatus.QUEUED), "queued_at": queued_at,
             "resends": resends},
            {"$set": {"resends": resends + 1}})

    # -- the reconciler's own record --------------------------------------------------------

    def note_reconcile(self, errors: int, unserved: Mapping[str, int]) -> None:
        """Count a pass's errors and name the queues no worker serves (for the API)."""
        self.patience.call(lambda: self.db["ops"].update_one(
            {"_id": "reconciler"},
            {"$inc": {"errors_total": errors},
             "$set": {"unserved_queues": dict(unserved), "last_pass": now()}},
            upsert=True))

    def reconcile_state(self) -> dict[str, Any]:
        """What the reconciler last noted (``errors_total``, ``unserved_queues``)."""
        return self._ops.find_one({"_id": "reconciler"}) or {}

    # -- events ---------------------------------------------------------------------------

    def append_event(self, event: Event) -> None:
        self.append_events([event])

    def append_logs(self, lines: list[LogLine]) -> None:
        self._logs.insert_many([{"_id": uuid.uuid4().hex, **asdict(line)} for line in lines])

    def logs(self, run_id: str, step: str | None = None) -> list[LogLine]:
        docs = self._logs.find({"run_id": run_id}, sort=[("ts", 1), ("_id", 1)])
        recorded = [LogLine(d["run_id"], d["step"], d["attempt"], d["stream"], d["text"],
                            d.get("worker"), d["ts"]) for d in docs
                    if step is None or TaskKey.parse(d["step"]).step == step]
        pages = sorted((d for d in self._live_logs.find({"run_id": run_id})
                        if step is None or TaskKey.parse(d["step"]).step == step),
                       key=lambda d: (d["step"], d["attempt"], d["page"]))
        return with_live(recorded, (line for d in pages for line in page_lines(d)))

    def put_live_logs(self, run_id: str, step: str, attempt: int,
                      pages: Mapping[int, list[LogLine]], count: int) -> None:
        raw = self._live_logs.raw  # one try: the next snapshot is the retry
        for number, lines in pages.items():
            doc = page_doc(run_id, step, attempt, number, lines)
            raw.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        raw.delete_many({"run_id": run_id, "step": step, "attempt": attempt,
                         "page": {"$gte": count}})

    def drop_live_logs(self, run_id: str, step: str, attempt: int) -> None:
        self._live_logs.raw.delete_many({"run_id": run_id, "step": step, "attempt": attempt})

    def append_events(self, events: list[Event]) -> None:
        by_run: dict[str, list[Event]] = {}
        for event in events:
            by_run.setdefault(event.run_id, []).append(event)
        pages = []
        for run_id, run_events in by_run.items():
            for start in range(0, len(run_events), EVENTS_PER_PAGE):
                page = run_events[start:start + EVENTS_PER_PAGE]
                pages.append({
                    "_id": uuid.uuid4().hex,  # before the first try: a repeat is a duplicate
                    "run_id": run_id,
                    "ts": min(e.ts for e in page), "last": max(e.ts for e in page),
                    "events": [_plain({"type": e.type, "step": e.step, "data": e.data,
                                       "ts": e.ts}) for e in page],
                })
        self._events.insert_many(pages)

    def events(self, run_id: str, after: int = 0, since: float | None = None) -> list[Event]:
        query: dict[str, Any] = {"run_id": run_id}
        if since is not None:
            query["last"] = {"$gte": since}
        pages = self._events.find(query, sort=[("ts", 1), ("_id", 1)])
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
    collection: PatientCollection, doc_id: str, expect: Collection[StepStatus],
    status: StepStatus, attempt: int | None, fields: Mapping[str, Any],
    generation: int | None = None, lease: float | None = None,
) -> bool:
    """Set ``status`` and ``fields`` if the status is in ``expect`` (and the attempts
    equal ``attempt``, the lease ``lease``): one atomic update of one document."""
    query = _expecting(doc_id, expect, attempt, generation)
    if lease is not None:
        query["lease_until"] = lease
    return collection.update_one(query, {"$set": {"status": str(status), **_plain(fields)}})


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


def _slot_mark(key: str) -> str:
    """The field of the run's document that marks ``key`` as holding a slot: ``m[3]``
    becomes ``slots.m~3`` (brackets in a field path read as an array index to some
    MongoDB-protocol servers; step names hold no ``~``)."""
    return "slots." + key.replace("[", "~").replace("]", "")


def _host_of(url: str) -> str:
    """The URL's host part, without credentials: what log lines and errors may show."""
    rest = url.split("://", 1)[-1]
    return rest.rsplit("@", 1)[-1].split("/", 1)[0]


def _status_in(expect: Collection[StatusT]) -> Any:
    """A status condition: equality for one status (MongoDB-protocol servers answer it
    faster than ``$in``: nx-27017 takes half the time), ``$in`` for several."""
    statuses = [str(s) for s in expect]
    return statuses[0] if len(statuses) == 1 else {"$in": statuses}  # [] matches nothing


def _group_id(run_id: str, name: str, group: int) -> str:
    """The document counting a group of a foreach step's elements (``count_item``)."""
    return f"{run_id}/item/{name}/g{group}"


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


def _runs_filter(workflow: str | None, status: Collection[RunStatus] | None,
                 created_after: float | None, created_before: float | None,
                 trigger: str | None, search: str | None = None) -> dict[str, Any]:
    """The query of ``find_runs`` and ``count_runs``."""
    query: dict[str, Any] = search_filter(search) if search and search.strip() else {}
    if workflow is not None:
        query["workflow"] = workflow
    if status:
        query["status"] = {"$in": [str(s) for s in status]}
    if trigger is not None:
        query["trigger"] = trigger
    created: dict[str, float] = {}
    if created_after is not None:
        created["$gte"] = created_after
    if created_before is not None:
        created["$lt"] = created_before
    if created:
        query["created_at"] = created
    return query
