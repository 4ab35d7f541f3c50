"""Tokens stored with API keys: the submitting key's own token for a job service.

The replaced engine submitted each user's jobs with that user's BV-BRC token. Here a
run is submitted with an API key, so the user's token is stored with their key (``chordflow
keys set-token``, ``PUT /api/v1/keys/{id}/token``), and a job service configured with
``token_from: key`` (chordflow.jobs.services) sends, for each run, the token of the key
that submitted it.

Decisions:

- **Encrypted at rest** (Fernet from the cryptography package: AES-128-CBC with an
  HMAC-SHA256, so a changed ciphertext is refused, never decrypted to garbage). Its
  key is derived (HKDF-SHA256) from the secret ``TOKEN_ENCRYPTION_KEY``, which the API
  and the workers have among their secrets: a backup or a copy of the database alone
  holds no usable token. Without that secret a token is neither stored nor used, and
  the error says which secret is missing.
- **Never returned**: a key's record shows ``token: "***"`` once one is stored
  (app/api/keys.py); no endpoint answers the token.
- **Who submitted a run** is recorded by the API (collection ``run_keys``: ``{_id:
  run id, key_id}``) *before* the run starts, so no step can look before it is there. A
  run submitted otherwise (the CLI, a schedule's beat) has no key, and a job service
  with ``token_from: key`` fails its step, saying so.
- **Resolved where the service is called** (the worker, at each submit and poll; the
  API or CLI for a cancel), from MongoDB, and masked in all that the step leaves:
  its error, its wait state, its outputs and its log lines (:func:`masked`), as the
  engine masks configured secrets (app/engine/redaction.py).
- A **revoked** key's token is not used: its runs' jobs fail, naming the key.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from chordflow.engine.redaction import redact
from chordflow.errors import StepFailed, StepWaiting, StoreUnavailable
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pymongo.errors import PyMongoError

#: The secret (CHORDFLOW_SECRETS, or a file of CHORDFLOW_SECRETS_DIR) that keys the
#: tokens' encryption; the API and every worker need the same value.
CIPHER_SECRET = "TOKEN_ENCRYPTION_KEY"
#: Which key submitted each run (written by the API).
RUN_KEYS = "run_keys"
#: Where a key's encrypted token is kept in its ``api_keys`` document.
TOKEN_FIELD = "token_cipher"

T = TypeVar("T")


class KeyTokenError(StepFailed):
    """No token can be had from the submitting key (no key, none stored, revoked, the
    cipher's secret missing or different). Retrying cannot help."""

    final = True


def cipher(secrets: Mapping[str, str]) -> Fernet:
    """The tokens' cipher from this process's secrets (KeyTokenError if missing)."""
    material = secrets.get(CIPHER_SECRET)
    if not material:
        raise KeyTokenError(f"tokens stored with API keys need the secret {CIPHER_SECRET} "
                            "on the API and on every worker (CHORDFLOW_SECRETS or "
                            "CHORDFLOW_SECRETS_DIR); it is not set here")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"chordflow api-key tokens").derive(material.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(token: str, secrets: Mapping[str, str]) -> str:
    return cipher(secrets).encrypt(token.encode()).decode()


def decrypt(ciphertext: str, secrets: Mapping[str, str], key_id: str) -> str:
    try:
        return cipher(secrets).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise KeyTokenError(f"the token stored with API key {key_id} cannot be decrypted: "
                            f"the secret {CIPHER_SECRET} here is not the one it was stored "
                            "with (store the token again)") from None


def record_submitter(db: Any, run_id: str, key_id: str) -> None:
    """Remember that ``key_id`` submits (or re-runs) ``run_id``, before the run starts.
    An unreachable store is StoreUnavailable (the API's 503), as for every store call."""
    try:
        db[RUN_KEYS].replace_one({"_id": run_id}, {"_id": run_id, "key_id": key_id},
                                 upsert=True)
    except PyMongoError as exc:
        raise StoreUnavailable(f"MongoDB did not record the run's key: {exc}") from exc


def token_of_key(db: Any, key_id: str, secrets: Mapping[str, str]) -> str:
    """The token stored with an active key, decrypted (KeyTokenError saying why not)."""
    doc = db["api_keys"].find_one({"_id": key_id})
    if doc is None:
        raise KeyTokenError(f"API key {key_id} no longer exists")
    if doc.get("revoked_at") is not None:
        raise KeyTokenError(f"API key {key_id} ({doc.get('name')}) was revoked: its token "
                            "is no longer used")
    if not doc.get(TOKEN_FIELD):
        raise KeyTokenError(f"API key {key_id} ({doc.get('name')}) has no stored token: "
                            f"store one with `chordflow keys set-token {key_id}` or PUT "
                            f"/api/v1/keys/{key_id}/token")
    return decrypt(str(doc[TOKEN_FIELD]), secrets, key_id)


def token_of_run(run_id: str, what: str) -> str:
    """The token of the key that submitted ``run_id``, read on this process from the
    deployment's MongoDB with this process's secrets. ``what`` names who asks (the job
    service) in the errors."""
    from chordflow.config import get_settings
    from pymongo.errors import PyMongoError

    settings = get_settings()
    db = _database(settings.mongo_url, settings.mongo_db)
    try:
        found = db[RUN_KEYS].find_one({"_id": run_id})
        if found is None:
            raise KeyTokenError(f"{what} takes the token of the API key that submitted the "
                                f"run (token_from: key), and run {run_id} was not "
                                "submitted through the API with a key")
        return token_of_key(db, str(found["key_id"]), settings.load_secrets())
    except PyMongoError as exc:  # not final: the store may answer at the next attempt
        raise StepFailed(f"{what}: the submitting key's token could not be read from "
                         f"MongoDB: {type(exc).__name__}") from None


_clients: dict[tuple[int, str], Any] = {}
_lock = threading.Lock()


def _database(url: str, name: str) -> Any:
    """A client per process and URL (pymongo clients must not cross a fork)."""
    from pymongo import MongoClient

    key = (os.getpid(), url)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = MongoClient(url, serverSelectionTimeoutMS=10_000)
    return client[name]


class _MaskingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A step's logger that masks a token in what it logs (formatted first, so that
    a token in an argument is masked too)."""

    def __init__(self, logger: Any, token: str):
        super().__init__(logger, {})
        self.token = token

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        text = str(msg) % args if args else str(msg)
        self.logger.log(level, text.replace(self.token, "***"), **kwargs)


def masked(token: str | None, ctx: Any, call: Callable[[Any], T]) -> T:
    """``call(ctx)`` with ``token`` masked in all it leaves: its result, the state of a
    wait, the message of a failure, its log lines. The engine masks only the secrets
    it was configured with; a key's token is not one of them."""
    if not token or len(token) < 3:
        return call(ctx)
    from dataclasses import replace

    secrets = {"token": token}
    try:
        return redact(call(replace(ctx, logger=_MaskingLogger(ctx.logger, token))), secrets)
    except StepWaiting as waiting:
        raise StepWaiting(waiting.after, redact(waiting.state, secrets)) from None
    except StepFailed as exc:
        failure = StepFailed(redact(str(exc), secrets))
        failure.final = exc.final
        raise failure from None
    except Exception as exc:  # a client's own failure: recorded as the engine would
        raise StepFailed(redact(f"{type(exc).__name__}: {exc}", secrets)) from None
