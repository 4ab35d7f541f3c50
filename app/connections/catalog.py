"""Where connections are defined, and how a step's ``connection:`` becomes credentials.

Two sources, as Airflow has environment-variable and database connections: the
settings (``CHORDFLOW_CONNECTIONS`` or the config file's ``connections``: read-only,
the deployment's own) and the store (MongoDB collection ``connections``, managed
through ``/api/v1/connections`` by admins). A name defined in the settings cannot be
defined in the store too, so every process agrees on what a name means.

Workers read the store's definitions through a short cache (``STORE_TTL_SECONDS``): a
changed connection reaches every worker within that time, and a step does not cost a
round trip to MongoDB for it. Credentials are resolved from the worker's own secrets
at the moment a step uses the connection, never stored.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chordflow.connections.models import Connection, parse_connection
from chordflow.errors import ChordflowError, StepFailed

#: Seconds a worker trusts what it read of the store's connections.
STORE_TTL_SECONDS = 10.0


class ConnectionMissing(StepFailed):
    """No connection of that name is defined here."""

    final = True


class ConnectionInvalid(StepFailed):
    """A definition that cannot be used (a bad inline definition, a missing secret)."""

    final = True


class ConnectionConflict(ChordflowError):
    """A store definition whose name the settings already define."""


@dataclass(frozen=True)
class Resolved:
    """A connection with its credentials' values, as a worker uses it (never recorded)."""

    connection: Connection
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.connection.name or "(inline)"

    def credential(self, name: str) -> str | None:
        return self.credentials.get(name)

    @property
    def fingerprint(self) -> str:
        """Identifies the definition and its credentials: a pool serves one
        fingerprint, so a changed password or host gets fresh clients."""
        text = json.dumps([self.connection.model_dump(mode="json"),
                           sorted(self.credentials.items())], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def resolve_credentials(connection: Connection, secrets: Mapping[str, str]) -> Resolved:
    """Look each credential's secret up; ConnectionInvalid naming the one missing."""
    values: dict[str, str] = {}
    for fld, secret in connection.credentials.items():
        if secret not in secrets:
            raise ConnectionInvalid(
                f"connection '{connection.name or '(inline)'}': credentials.{fld} names "
                f"secret '{secret}', which is not configured here (CHORDFLOW_SECRETS or "
                "CHORDFLOW_SECRETS_DIR on the workers)")
        values[fld] = secrets[secret]
    return Resolved(connection, values)


class Catalog:
    """Every connection this process knows: the settings', then the store's."""

    def __init__(self, configured: Mapping[str, Connection] | None = None,
                 db: Any = None, ttl: float = STORE_TTL_SECONDS):
        self.configured = dict(configured or {})
        #: The store's ``connections`` collection (pymongo), or None (embedded runs).
        self.collection = db["connections"] if db is not None else None
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Connection | None]] = {}
        self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------

    def get(self, name: str) -> Connection:
        """The definition named ``name``; ConnectionMissing listing the known names."""
        found = self.configured.get(name) or self._stored(name)
        if found is None:
            known = ", ".join(self.names()) or "none are defined"
            raise ConnectionMissing(f"connection '{name}' is not defined ({known})")
        return found

    def _stored(self, name: str) -> Connection | None:
        if self.collection is None:
            return None
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(name)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        doc = self.collection.find_one({"_id": name})
        conn = _from_doc(doc) if doc else None
        with self._lock:
            self._cache[name] = (now, conn)
        return conn

    def names(self) -> list[str]:
        return sorted({*self.configured, *(d["_id"] for d in self._stored_docs())})

    def _stored_docs(self) -> list[dict[str, Any]]:
        if self.collection is None:
            return []
        return list(self.collection.find({}))

    def entries(self) -> list[dict[str, Any]]:
        """Every definition with where it comes from (``settings`` or ``api``)."""
        out = [{**c.public(), "source": "settings"} for c in self.configured.values()]
        for doc in self._stored_docs():
            if doc["_id"] not in self.configured:
                out.append({**_from_doc(doc).public(), "source": "api",
                            "updated_at": doc.get("updated_at"),
                            "updated_by": doc.get("updated_by")})
        return sorted(out, key=lambda e: e["name"])

    def entry(self, name: str) -> dict[str, Any]:
        conn = self.get(name)
        return {**conn.public(), "source": "settings" if name in self.configured else "api"}

    # -- changing (store definitions only) ----------------------------------------------

    def put(self, connection: Connection, by: str | None = None) -> bool:
        """Create or replace a store definition; True if it was new."""
        if self.collection is None:
            raise ConnectionConflict("connections are read-only here (no store)")
        if connection.name in self.configured:
            raise ConnectionConflict(
                f"connection '{connection.name}' is defined in the settings "
                "(CHORDFLOW_CONNECTIONS), which the API cannot change")
        doc = {**connection.model_dump(mode="json"), "updated_at": time.time(),
               "updated_by": by}
        doc.pop("name")
        # A replace, or an insert of a new name: not an upsert, whose new document
        # some MongoDB-protocol servers (nx-27017) give an id of their own.
        from pymongo.errors import DuplicateKeyError

        created = False
        if self.collection.replace_one({"_id": connection.name}, doc).matched_count == 0:
            try:
                self.collection.insert_one({"_id": connection.name, **doc})
                created = True
            except DuplicateKeyError:  # another admin's at the same moment: replace it
                self.collection.replace_one({"_id": connection.name}, doc)
        self._forget(connection.name)
        return created

    def delete(self, name: str) -> bool:
        if name in self.configured:
            raise ConnectionConflict(
                f"connection '{name}' is defined in the settings (CHORDFLOW_CONNECTIONS), "
                "which the API cannot change")
        if self.collection is None:
            return False
        deleted = self.collection.delete_one({"_id": name}).deleted_count > 0
        self._forget(name)
        return deleted

    def _forget(self, name: str) -> None:
        with self._lock:
            self._cache.pop(name, None)

    # -- a step's connection -----------------------------------------------------------

    def resolve(self, ref: str | Mapping[str, Any], secrets: Mapping[str, str]) -> Resolved:
        """A step's ``connection:`` (a name, or an inline definition) with credentials."""
        if isinstance(ref, str):
            return resolve_credentials(self.get(ref), secrets)
        try:
            connection = parse_connection(dict(ref))
        except ValueError as exc:
            raise ConnectionInvalid(f"inline connection: {exc}") from None
        return resolve_credentials(connection, secrets)


def _from_doc(doc: Mapping[str, Any]) -> Connection:
    body = {k: v for k, v in doc.items() if k not in ("_id", "updated_at", "updated_by")}
    return parse_connection(body, str(doc["_id"]))
