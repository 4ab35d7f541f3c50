"""This process's tiers and tier store, from its settings: what the ``jit`` module and
reads through a tier (staging) use on a worker. One MongoDB client per process (made
after a fork: pymongo clients must not cross one)."""

from __future__ import annotations

import os
import threading
from typing import Any

from chordflow.config import Settings, get_settings
from chordflow.data.jit.store import TierStore
from chordflow.data.jit.tiers import Tier, TierConfigError, get_tier, load_tiers
from chordflow.errors import StepFailed
from pymongo import MongoClient

_lock = threading.Lock()
_clients: dict[tuple[int, str], MongoClient[Any]] = {}


class TierUnavailable(StepFailed):
    """The tier is not configured on this worker: retrying here cannot help."""

    final = True


def tiers(settings: Settings | None = None) -> dict[str, Tier]:
    return load_tiers((settings or get_settings()).jit_tiers)


def tier_named(name: str, settings: Settings | None = None) -> Tier:
    """The tier called ``name`` here; TierUnavailable (naming the known ones) if none."""
    try:
        return get_tier(tiers(settings), name)
    except TierConfigError as exc:
        raise TierUnavailable(f"{exc} on this worker") from None


def tier_store(settings: Settings | None = None) -> TierStore:
    """The tiers' state in this deployment's MongoDB."""
    settings = settings or get_settings()
    key = (os.getpid(), settings.mongo_url)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = MongoClient(settings.mongo_url,
                                                 serverSelectionTimeoutMS=10_000)
    return TierStore(client[settings.mongo_db])
