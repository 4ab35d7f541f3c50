"""API keys: shown once, stored as a slow salted hash (scrypt), revocable.

A key reads ``cf_<id>_<secret>``: the id finds the record, the secret is checked
against its scrypt hash. Checking scrypt on every request would cost ~50 ms each, so a
successfully checked key is remembered in the process for ``CACHE_SECONDS`` (by a
SHA-256 of the key, never the key itself); a revocation takes effect everywhere
within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from typing import Any

from pymongo.database import Database

from app.api.security import Principal, Role
from app.engine.records import now

CACHE_SECONDS = 10.0
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)


class ApiKeys:
    def __init__(self, db: Database[Any]):
        self.collection = db["api_keys"]
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def create(self, name: str, role: Role) -> tuple[str, str]:
        """A new key: (its id, the key itself, which is not stored and shown only now)."""
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        self.collection.insert_one({
            "_id": key_id, "name": name, "role": str(role), "salt": salt.hex(),
            "hash": _hash(secret, salt).hex(), "created_at": now(), "revoked_at": None,
        })
        return key_id, f"cf_{key_id}_{secret}"

    def list(self) -> list[dict[str, Any]]:
        """Every key without its hash: id, name, role, created_at, revoked_at."""
        return [
            {k: doc.get(k) for k in ("name", "role", "created_at", "revoked_at")}
            | {"key_id": doc["_id"]}
            for doc in self.collection.find({}).sort("created_at", 1)
        ]

    def revoke(self, key_id: str) -> bool:
        done = self.collection.update_one({"_id": key_id, "revoked_at": None},
                                          {"$set": {"revoked_at": now()}})
        with self._lock:
            self._cache.clear()
        return done.modified_count == 1

    def verify(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).digest()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        prefix, _, rest = token.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != "cf" or not key_id or not secret:
            return None
        doc = self.collection.find_one({"_id": key_id})
        if doc is None or doc.get("revoked_at") is not None:
            return None
        if not hmac.compare_digest(_hash(secret, bytes.fromhex(doc["salt"])),
                                   bytes.fromhex(doc["hash"])):
            return None
        principal = Principal(key_id, doc["name"], Role(doc["role"]))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (time.monotonic() + CACHE_SECONDS, principal)
        return principal
