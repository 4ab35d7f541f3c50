"""The tiers' state in MongoDB: one document per tier, written by compare-and-set.

Every change is read, a pure function of app/data/jit/state.py, then one
``replace_one({_id, version: v}, ...)`` that only lands if the document is still at
version ``v``; if another writer got there first, the change is made again on what it
wrote. That is one atomic single-document update per change, so two events at once
never lose each other's update and ``used`` always equals the sum of the entries.

The replaced service read-modified-wrote its one document with no such check.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from chordflow.data.jit.state import TierState
from chordflow.data.jit.tiers import Tier
from chordflow.errors import ChordflowError
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

T = TypeVar("T")

COLLECTION = "jit_tiers"
#: Writers that keep finding the document changed give up after this many tries (each
#: lost race means another writer made progress, so this is only reached under a storm).
MAX_TRIES = 200


class TierBusy(ChordflowError):
    """A change could not land: the tier's document kept changing under it."""


class TierStore:
    """Read and change tiers' states."""

    def __init__(self, db: Database[Any]):
        self.collection = db[COLLECTION]

    def load(self, tier: Tier) -> TierState:
        """The tier's state (a new, empty one if it was never used)."""
        return self._state(tier, self.collection.find_one({"_id": tier.name}))

    def change(self, tier: Tier, fn: Callable[[TierState], T]) -> tuple[T, TierState]:
        """Apply ``fn`` (which changes the state it is given and returns anything) as
        one atomic update; (its result, the state written)."""
        for attempt in range(MAX_TRIES):
            doc = self.collection.find_one({"_id": tier.name})
            state = self._state(tier, doc)
            result = fn(state)
            new = state.to_doc()
            new["configured"] = int(tier.capacity)
            new["version"] = state.version + 1
            if doc is None:
                try:
                    self.collection.insert_one(new)
                except DuplicateKeyError:
                    continue  # another writer made it first: change what it made
            elif not self.collection.replace_one(
                    {"_id": tier.name, "version": state.version}, new).matched_count:
                time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 25)))
                continue
            state.version += 1
            return result, state
        raise TierBusy(f"tier '{tier.name}': its state kept changing under "
                       f"{MAX_TRIES} tries; try again")

    @staticmethod
    def _state(tier: Tier, doc: dict[str, Any] | None) -> TierState:
        if doc is None:
            return TierState(tier.name, int(tier.capacity))
        state = TierState.from_doc(doc)
        if doc.get("configured") != int(tier.capacity):
            # CHORDFLOW_JIT_TIERS changed since: the latest change of the two wins.
            state.capacity = int(tier.capacity)
        return state
