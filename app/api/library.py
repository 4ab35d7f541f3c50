"""Stored workflows: every version kept, soft delete, rename, enable/disable.

Collections (all updates are single-document, so they work on the MongoDB-protocol
servers the store supports: plain queries, ``$set``, comparisons, inserts that fail
on a duplicate ``_id``)::

    library           one document per workflow, ``_id`` = a stable workflow id:
                      name, enabled, deleted, latest (version), timestamps
    library_versions  one document per version, ``_id`` = "<workflow id>/<version>":
                      the document exactly as given (JSON text) and its digest
    library_names     the name claims, ``_id`` = name -> workflow id

Versions hang off the stable id, so a rename changes the ``library`` document and the
claims, never the versions. A name is unique because its claim's ``_id`` is; version
numbers are unique because a version's ``_id`` is (two concurrent updates cannot both
insert "<id>/4": the loser takes 5). Deleting releases the name (a new workflow may
take it) and keeps the versions.

A name resolves only when its claim points at a live workflow that carries that name,
so every step of a create, rename or delete leaves exactly one name resolving. A claim
whose workflow is deleted, or that a crashed request left dangling for longer than
``STALE_CLAIM_SECONDS``, is taken over by the next create or rename.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chordflow.engine.records import now
from chordflow.errors import ChordflowError
from chordflow.workflow.dialects import to_canonical
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

#: A claim not (yet) matched by its workflow is left alone this long: a create or
#: rename in flight finishes well within it; only a crashed one leaves it longer.
STALE_CLAIM_SECONDS = 60.0
#: Concurrent updates each try the next number; this many collisions in a row is a bug.
MAX_VERSION_ATTEMPTS = 100


class WorkflowMissing(ChordflowError, LookupError):
    """No stored workflow (or version) by that name: 404."""


class WorkflowDisabled(ChordflowError):
    """The stored workflow is disabled and cannot be run: 409."""


class WorkflowExists(ChordflowError):
    """Another live workflow has that name: 409."""


@dataclass(frozen=True)
class StoredEntry:
    """A stored workflow's state (the ``library`` document)."""

    id: str
    name: str
    latest: int
    enabled: bool
    deleted: bool
    created_at: float
    updated_at: float
    deleted_at: float | None
    created_by: str | None

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> StoredEntry:
        return cls(id=doc["_id"], name=doc["name"], latest=int(doc["latest"]),
                   enabled=bool(doc["enabled"]), deleted=bool(doc["deleted"]),
                   created_at=doc["created_at"], updated_at=doc["updated_at"],
                   deleted_at=doc.get("deleted_at"), created_by=doc.get("created_by"))


@dataclass(frozen=True)
class StoredVersion:
    """One version: the document as it was given, with its digest."""

    workflow_id: str
    version: int
    document: dict[str, Any]
    digest: str
    created_at: float
    created_by: str | None
    #: The text as the author sent it (a YAML body), comments and layout included;
    #: None for a JSON body, whose document (in its keys' order) is the text.
    source: str | None = None

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> StoredVersion:
        return cls(workflow_id=doc["workflow_id"], version=int(doc["version"]),
                   document=json.loads(doc["document"]), digest=doc["digest"],
                   created_at=doc["created_at"], created_by=doc.get("created_by"),
                   source=doc.get("source"))

    def text(self) -> str:
        """The version as written: its YAML source, else its document as indented JSON
        in the order its keys were sent (what a diff compares)."""
        if self.source is not None:
            return self.source
        return json.dumps(self.document, indent=2, ensure_ascii=False) + "\n"


def document_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of the document's canonical JSON (sorted keys): equal content, equal
    digest, whatever the key order it was sent in."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def runnable_definition(document: Mapping[str, Any], name: str, version: int,
                        environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The canonical form of a stored document, named and versioned as stored.

    The run must carry the stored name (the document's own name may predate a rename)
    and the library's version number (so a run says which version ran). The three
    dialects keep their name in different places and the procedures dialect has no
    version field, so the document is converted to the canonical form, which has both.
    """
    definition = to_canonical(document, name_hint=name, environ=environ)
    definition["name"] = name
    definition["version"] = str(version)
    return definition


class WorkflowLibrary:
    """Stored workflows on MongoDB. Documents are validated by the caller (compiling
    needs the engine's module registry); the library only stores and resolves."""

    def __init__(self, db: Database[Any], environ: Mapping[str, str] | None = None):
        #: What a stored DAG-engine document's ``${NAME}`` may read when it runs
        #: (``Settings.dialect_environ``: only what an admin allows).
        self.environ = dict(environ or {})
        self.collection: Collection[Any] = db["library"]
        self.versions_: Collection[Any] = db["library_versions"]
        self.names: Collection[Any] = db["library_names"]

    def ensure_indexes(self) -> None:
        """Indexes for listing versions and workflows (optional: small collections)."""
        self.versions_.create_index([("workflow_id", 1), ("version", 1)])
        self.collection.create_index([("deleted", 1), ("name", 1)])

    # -- reading ------------------------------------------------------------------------

    def get(self, name: str) -> StoredEntry:
        """The live workflow named ``name``; WorkflowMissing if none (or deleted)."""
        claim = self.names.find_one({"_id": name})
        doc = self.collection.find_one({"_id": claim["workflow_id"]}) if claim else None
        if doc is None or doc["deleted"] or doc["name"] != name:
            raise WorkflowMissing(f"no stored workflow '{name}'")
        return StoredEntry.of(doc)

    def workflows(self, include_deleted: bool = False) -> list[StoredEntry]:
        """Workflows by name; deleted ones only when asked (they keep their last name)."""
        query: dict[str, Any] = {} if include_deleted else {"deleted": False}
        docs = self.collection.find(query).sort([("name", 1), ("created_at", 1)])
        return [StoredEntry.of(doc) for doc in docs]

    def versions(self, name: str) -> list[StoredVersion]:
        """Every version of the live workflow ``name``, oldest first."""
        entry = self.get(name)
        docs = self.versions_.find({"workflow_id": entry.id}).sort("version", 1)
        return [StoredVersion.of(doc) for doc in docs]

    def version(self, name: str, version: int | str | None = None) -> StoredVersion:
        """Version ``version`` (default: the latest) of the live workflow ``name``."""
        return self._version(self.get(name), version)

    def runnable(self, name: str, version: str | None = None) -> dict[str, Any]:
        """The definition to run: the given version or the latest; enabled only.

        Returned in the canonical dialect with the stored name and the version number
        (see ``runnable_definition``); the stored document itself is left as given.
        """
        entry = self.get(name)
        if not entry.enabled:
            raise WorkflowDisabled(f"stored workflow '{name}' is disabled; enable it to run it")
        stored = self._version(entry, version)
        return runnable_definition(stored.document, name, stored.version, self.environ)

    def _version(self, entry: StoredEntry, version: int | str | None) -> StoredVersion:
        number = entry.latest if version is None else _version_number(entry.name, version)
        doc = self.versions_.find_one({"_id": f"{entry.id}/{number}"})
        if doc is None:
            raise WorkflowMissing(f"stored workflow '{entry.name}' has no version {version}")
        return StoredVersion.of(doc)

    # -- changing -----------------------------------------------------------------------

    def create(self, name: str, document: Mapping[str, Any], by: str | None = None,
               source: str | None = None) -> tuple[StoredEntry, StoredVersion]:
        """A new workflow at version 1; WorkflowExists if ``name`` is taken.

        The claim comes first (it is what makes the name unique), the ``library``
        document last: the name resolves only once everything is written.
        """
        workflow_id = secrets.token_hex(8)
        self._claim(name, workflow_id)
        stored = self._insert_version(workflow_id, 1, document, by, source)
        ts = now()
        doc = {"_id": workflow_id, "name": name, "latest": stored.version, "enabled": True,
               "deleted": False, "created_at": ts, "updated_at": ts, "deleted_at": None,
               "created_by": by}
        self.collection.insert_one(doc)
        return StoredEntry.of(doc), stored

    def update(self, name: str, document: Mapping[str, Any], by: str | None = None,
               source: str | None = None) -> tuple[StoredEntry, StoredVersion]:
        """A new version of ``name`` (the next free number); every earlier one is kept.
        ``source``: the text it was written as (YAML), kept for diffs."""
        entry = self.get(name)
        stored = self._insert_version(entry.id, entry.latest + 1, document, by, source)
        # Only ever raise ``latest``: a slower concurrent update must not lower it.
        self.collection.update_one({"_id": entry.id, "latest": {"$lt": stored.version}},
                                   {"$set": {"latest": stored.version, "updated_at": now()}})
        return self._entry(entry.id), stored

    def delete(self, name: str) -> StoredEntry:
        """Soft delete: not listed, not runnable, name released; versions kept."""
        entry = self.get(name)
        ts = now()
        done = self.collection.update_one(
            {"_id": entry.id, "deleted": False},
            {"$set": {"deleted": True, "deleted_at": ts, "updated_at": ts}})
        if done.matched_count != 1:
            raise WorkflowMissing(f"no stored workflow '{name}'")
        self.names.delete_one({"_id": name, "workflow_id": entry.id})
        return self._entry(entry.id)

    def rename(self, name: str, new_name: str) -> StoredEntry:
        """Give ``name`` the name ``new_name``; WorkflowExists if that is taken."""
        entry = self.get(name)
        if new_name == name:
            return entry
        self._claim(new_name, entry.id)
        done = self.collection.update_one(
            {"_id": entry.id, "name": name, "deleted": False},
            {"$set": {"name": new_name, "updated_at": now()}})
        if done.matched_count != 1:  # deleted or renamed meanwhile
            self.names.delete_one({"_id": new_name, "workflow_id": entry.id})
            raise WorkflowMissing(f"no stored workflow '{name}'")
        self.names.delete_one({"_id": name, "workflow_id": entry.id})
        return self._entry(entry.id)

    def set_enabled(self, name: str, enabled: bool) -> StoredEntry:
        """Enable or disable ``name``; a disabled workflow is kept but cannot run."""
        entry = self.get(name)
        self.collection.update_one({"_id": entry.id, "deleted": False},
                                   {"$set": {"enabled": enabled, "updated_at": now()}})
        return self._entry(entry.id)

    def restore(self, name: str, versions: list[Mapping[str, Any]], *, enabled: bool = True,
                created_at: float | None = None, created_by: str | None = None
                ) -> StoredEntry:
        """A new workflow ``name`` with the given versions, their numbers, times and
        authors kept (a backup restored: chordflow.api.backup); WorkflowExists if the
        name is taken. Each version: ``{version, document, source, created_at,
        created_by}``. As ``create``: the claim first, the ``library`` document last."""
        workflow_id = secrets.token_hex(8)
        self._claim(name, workflow_id)
        latest = 0
        for given in sorted(versions, key=lambda v: int(v["version"])):
            number = int(given["version"])
            document = given["document"]
            doc = {"_id": f"{workflow_id}/{number}", "workflow_id": workflow_id,
                   "version": number, "document": json.dumps(document, ensure_ascii=False),
                   "digest": document_digest(document),
                   "created_at": given.get("created_at") or now(),
                   "created_by": given.get("created_by")}
            if given.get("source") is not None:
                doc["source"] = given["source"]
            self.versions_.insert_one(doc)
            latest = max(latest, number)
        ts = now()
        entry = {"_id": workflow_id, "name": name, "latest": latest, "enabled": enabled,
                 "deleted": False, "created_at": created_at or ts, "updated_at": ts,
                 "deleted_at": None, "created_by": created_by}
        self.collection.insert_one(entry)
        return StoredEntry.of(entry)

    # -- internals ----------------------------------------------------------------------

    def _entry(self, workflow_id: str) -> StoredEntry:
        doc = self.collection.find_one({"_id": workflow_id})
        if doc is None:
            raise WorkflowMissing(f"no stored workflow with id '{workflow_id}'")
        return StoredEntry.of(doc)

    def _claim(self, name: str, workflow_id: str) -> None:
        """Make ``name`` point at ``workflow_id``, taking over a stale claim."""
        for _ in range(3):
            try:
                self.names.insert_one({"_id": name, "workflow_id": workflow_id,
                                       "created_at": now()})
                return
            except DuplicateKeyError:
                held = self.names.find_one({"_id": name})
                if held is not None and not self._stale(held):
                    break
                if held is not None:
                    self.names.delete_one({"_id": name, "workflow_id": held["workflow_id"]})
        raise WorkflowExists(f"a stored workflow named '{name}' exists")

    def _stale(self, claim: Mapping[str, Any]) -> bool:
        """A claim nobody will complete: its workflow is deleted (final), or it has
        not matched its workflow for longer than any request takes."""
        doc = self.collection.find_one({"_id": claim["workflow_id"]})
        if doc is not None and doc["deleted"]:
            return True
        dangling = doc is None or doc["name"] != claim["_id"]
        return dangling and now() - float(claim.get("created_at") or 0) > STALE_CLAIM_SECONDS

    def _insert_version(self, workflow_id: str, first: int, document: Mapping[str, Any],
                        by: str | None, source: str | None = None) -> StoredVersion:
        """Insert ``document`` as version ``first``, or the next number not taken."""
        text = json.dumps(document, ensure_ascii=False)
        digest = document_digest(document)
        for number in range(first, first + MAX_VERSION_ATTEMPTS):
            doc = {"_id": f"{workflow_id}/{number}", "workflow_id": workflow_id,
                   "version": number, "document": text, "digest": digest,
                   "created_at": now(), "created_by": by}
            if source is not None:
                doc["source"] = source
            try:
                self.versions_.insert_one(doc)
            except DuplicateKeyError:
                continue
            return StoredVersion.of(doc)
        raise RuntimeError(f"no free version number for workflow {workflow_id} after "
                           f"{MAX_VERSION_ATTEMPTS} attempts")


def _version_number(name: str, version: int | str) -> int:
    """``3``, ``"3"`` or ``"v3"`` -> 3; anything else names no version."""
    text = str(version).strip().removeprefix("v")
    if not text.isdigit():
        raise WorkflowMissing(f"stored workflow '{name}' has no version '{version}'")
    return int(text)
