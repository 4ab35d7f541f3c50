"""What one process remembers of recent runs, bounded: the least recently used goes.

A worker keeps a few things per run or step that save store round trips (the run's
immutable record, that a ``foreach`` step was marked running, how far its attempts were
raised, that a definition is stored). Each is only an optimisation: forgetting an entry
costs one round trip, never correctness, so a small bound is always safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    """A thread-safe mapping of at most ``size`` entries, least recently used dropped."""

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._put(key, value)

    def first_time(self, key: K, value: V) -> bool:
        """Remember ``key``; True unless it was remembered already (then unchanged)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return False
            self._put(key, value)
            return True

    def raise_to(self, key: K, value: V) -> bool:
        """Remember ``value`` for ``key`` if it is above what is remembered; True if so
        (``value`` must be comparable with what is stored)."""
        with self._lock:
            known = self._entries.get(key)
            if known is not None and not known < value:  # type: ignore[operator]
                return False
            self._put(key, value)
            return True

    def _put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
