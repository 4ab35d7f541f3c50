"""API keys: shown once, stored as a slow salted hash (scrypt), revocable.

A key reads ``cf_<id>_<secret>``: the id finds the record, the secret is checked
against its scrypt hash. Checking scrypt on every request would cost ~50 ms each, so a
successfully checked key is remembered in the process for ``CACHE_SECONDS`` (by a
SHA-256 of the key, never the key itself); a revocation or a role change takes effect
everywhere within that time.

Checking is split so that the caller (``chordflow.api.security``) can refuse a client that is
over its failure budget between the cheap parts and the scrypt: ``cached`` (no store, no
hash), ``parse`` (a malformed token costs nothing), then ``check``, which looks the id
up and hashes only for a key that exists and is not revoked.

A key may carry a job service's token for its user (``set_token``), stored encrypted
and never returned (chordflow.jobs.key_tokens).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from chordflow.api.principal import Principal, Role
from chordflow.engine.records import now
from chordflow.engine.redaction import MASK
from chordflow.jobs.key_tokens import TOKEN_FIELD, encrypt
from pymongo.database import Database

CACHE_SECONDS = 10.0
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
#: Longer tokens are malformed (ours are ~60 characters): never hashed, never looked up.
MAX_TOKEN_LENGTH = 200


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)


def digest(token: str) -> bytes:
    """What stands for a token in memory (caches, the limiter): never the token."""
    return hashlib.sha256(token.encode()).digest()


def parse(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a ``cf_<id>_<secret>`` token; None if it is not one."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != "cf" or not key_id or not secret:
        return None
    return key_id, secret


class Outcome(StrEnum):
    """How a key check ended; only VALID admits. The others say whether the id
    exists, which the failure limits need (``chordflow.api.auth_limits``)."""

    VALID = "valid"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    WRONG_SECRET = "wrong secret"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    principal: Principal | None = None

    @property
    def known_id(self) -> bool:
        return self.outcome in (Outcome.VALID, Outcome.REVOKED, Outcome.WRONG_SECRET)


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    """A key's record without its salt and hash; a stored token shows as ``***``."""
    return ({k: doc.get(k) for k in ("name", "role", "created_at", "revoked_at",
                                     "token_set_at")}
            | {"key_id": doc["_id"], "token": MASK if doc.get(TOKEN_FIELD) else None})


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
        return [_public(doc) for doc in self.collection.find({}).sort("created_at", 1)]

    def get(self, key_id: str) -> dict[str, Any] | None:
        """One key as ``list`` shows it, or None."""
        doc = self.collection.find_one({"_id": key_id})
        return None if doc is None else _public(doc)

    def revoke(self, key_id: str) -> bool:
        done = self.collection.update_one({"_id": key_id, "revoked_at": None},
                                          {"$set": {"revoked_at": now()}})
        with self._lock:
            self._cache.clear()
        return done.modified_count == 1

    def set_role(self, key_id: str, role: Role) -> bool:
        """Give an active key another role; False if there is no active key ``key_id``.
        This process forgets its checked keys at once, the others within
        ``CACHE_SECONDS``."""
        done = self.collection.update_one({"_id": key_id, "revoked_at": None},
                                          {"$set": {"role": str(role)}})
        with self._lock:
            self._cache.clear()
        return done.matched_count == 1

    def set_token(self, key_id: str, token: str, secrets: Mapping[str, str]) -> bool:
        """Store ``token`` (a job service's, chordflow.jobs.key_tokens) with an active
        key, encrypted; False if there is no active key ``key_id``. KeyTokenError if
        this process cannot encrypt (the cipher's secret is missing)."""
        done = self.collection.update_one(
            {"_id": key_id, "revoked_at": None},
            {"$set": {TOKEN_FIELD: encrypt(token, secrets), "token_set_at": now()}})
        return done.matched_count == 1

    def clear_token(self, key_id: str) -> bool:
        """Forget a key's stored token; False if there is no key ``key_id``."""
        done = self.collection.update_one({"_id": key_id},
                                          {"$set": {TOKEN_FIELD: None, "token_set_at": None}})
        return done.matched_count == 1

    def cached(self, token: str) -> Principal | None:
        """The principal of a token checked within ``CACHE_SECONDS``: no store, no hash."""
        key = digest(token)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def check(self, token: str) -> Verdict:
        """Check a token against the store. An unknown or revoked id, or a malformed
        token, is refused without hashing: only a live key's secret costs a scrypt."""
        parsed = parse(token)
        if parsed is None:
            return Verdict(Outcome.MALFORMED)
        key_id, secret = parsed
        doc = self.collection.find_one({"_id": key_id})
        if doc is None:
            return Verdict(Outcome.UNKNOWN)
        if doc.get("revoked_at") is not None:
            return Verdict(Outcome.REVOKED)
        if not hmac.compare_digest(_hash(secret, bytes.fromhex(doc["salt"])),
                                   bytes.fromhex(doc["hash"])):
            return Verdict(Outcome.WRONG_SECRET)
        principal = Principal(key_id, doc["name"], Role(doc["role"]))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest(token)] = (time.monotonic() + CACHE_SECONDS, principal)
        return Verdict(Outcome.VALID, principal)

    def verify(self, token: str) -> Principal | None:
        """The principal of ``token``, or None (unlimited: ``chordflow.api.security`` adds
        the failure limits)."""
        return self.cached(token) or self.check(token).principal
