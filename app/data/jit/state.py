"""A tier's cache state and every change to it, as pure functions (no I/O).

The state of one tier is one MongoDB document (app/data/jit/store.py writes it only by
compare-and-set on its ``version``), so each function here is one atomic step: it
reads a state, changes it, and the store writes the result only if nobody else wrote
in between (else it reads again and calls the function again). The accounting is
therefore exact by construction: ``used`` is the sum of the entries' sizes, in the same
write that adds or removes an entry.

An entry is a file the tier knows on its primary:

- ``copying``: its bytes are reserved and a run (``owner``) is copying it. Not present:
  nothing reads it. A copy killed half-way stays ``copying`` until its owner's lease
  (``owner_until``) runs out, then the next event that needs it copies it again.
- ``present``: whole on the primary, since ``last_access`` (LRU order).
- ``evicting``: a run is deleting it; its bytes count until the delete is done.

A *hold* keeps a present file from eviction: the workflow of an event until its
finished event (or the hold's ``until``), a run reading through the tier, and the
event's own run while it runs. Only present, unheld files outside the event's own list
are evicted, least recently used first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EntryState = Literal["copying", "present", "evicting"]


@dataclass
class Hold:
    holder: str
    until: float


@dataclass
class Entry:
    path: str
    size: int
    state: EntryState
    last_access: float
    owner: str | None = None
    owner_until: float | None = None
    holds: list[Hold] = field(default_factory=list)

    def held(self, now: float) -> bool:
        return any(h.until > now for h in self.holds)

    def owned_by_other(self, owner: str, now: float) -> bool:
        """Is another live run copying or evicting it (its lease not run out)?"""
        return (self.owner is not None and self.owner != owner
                and (self.owner_until or 0.0) > now)

    def hold(self, holder: str, until: float) -> None:
        for h in self.holds:
            if h.holder == holder:
                h.until = max(h.until, until)
                return
        self.holds.append(Hold(holder, until))

    def to_doc(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "state": self.state,
                "last_access": self.last_access, "owner": self.owner,
                "owner_until": self.owner_until,
                "holds": [{"holder": h.holder, "until": h.until} for h in self.holds]}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Entry:
        return cls(path=doc["path"], size=int(doc["size"]), state=doc["state"],
                   last_access=float(doc["last_access"]), owner=doc.get("owner"),
                   owner_until=doc.get("owner_until"),
                   holds=[Hold(h["holder"], float(h["until"])) for h in doc.get("holds") or ()])


@dataclass
class TierState:
    name: str
    capacity: int
    version: int = 0
    files: dict[str, Entry] = field(default_factory=dict)

    @property
    def used(self) -> int:
        """Bytes on the primary or reserved for a copy under way."""
        return sum(e.size for e in self.files.values())

    @property
    def free(self) -> int:
        return self.capacity - self.used

    def lru(self) -> list[Entry]:
        """Entries, least recently used first."""
        return sorted(self.files.values(), key=lambda e: (e.last_access, e.path))

    def to_doc(self) -> dict[str, Any]:
        return {"_id": self.name, "version": self.version, "capacity": self.capacity,
                "used": self.used, "files": [e.to_doc() for e in self.lru()]}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> TierState:
        files = [Entry.from_doc(f) for f in doc.get("files") or ()]
        return cls(name=doc["_id"], capacity=int(doc["capacity"]),
                   version=int(doc.get("version", 0)), files={e.path: e for e in files})


@dataclass
class Claim:
    """What one ``claim`` decided: what this run copies now, evicts first, waits for
    (another run's copy or eviction), and what it could not place."""

    copy: list[str] = field(default_factory=list)
    evict: list[str] = field(default_factory=list)
    wait: list[str] = field(default_factory=list)
    #: Listed files whose size is not known yet (they vanished from the primary since
    #: the sizes were read): look them up and claim again.
    unsized: list[str] = field(default_factory=list)
    #: Bytes that no eviction can free now (held or in-flight files fill the tier).
    short: int = 0
    missing: list[str] = field(default_factory=list)
    held_bytes: int = 0

    @property
    def done(self) -> bool:
        return not (self.copy or self.evict or self.wait or self.unsized or self.missing)


def claim(state: TierState, files: Iterable[str], sizes: Mapping[str, int], *,
          holds: Iterable[tuple[str, float]], owner: str, owner_until: float,
          now: float) -> Claim:
    """One step towards ``files`` being present: hold and touch those that are, reserve
    (all or nothing) the bytes of those that are not, or, when they do not fit, mark the
    least recently used evictable files for eviction by ``owner``."""
    listed = list(files)
    listed_set = set(listed)
    holds = list(holds)
    result = Claim()
    for entry in state.files.values():
        # What a run that is gone left half done (its lease ran out), or this run's own
        # earlier attempt: an eviction to finish, a copy of a file nobody listed now to
        # undo (it may be partly on the primary).
        if (entry.path not in listed_set and entry.state != "present"
                and entry.owner is not None and not entry.owned_by_other(owner, now)):
            entry.state, entry.owner, entry.owner_until = "evicting", owner, owner_until
            result.evict.append(entry.path)
    for path in listed:
        found = state.files.get(path)
        if found is None:
            if path in sizes:
                result.missing.append(path)
            else:
                result.unsized.append(path)
            continue
        entry = found
        for holder, until in holds:
            entry.hold(holder, until)
        if entry.state == "present":
            entry.last_access = now
        elif entry.owned_by_other(owner, now):
            result.wait.append(path)
        elif entry.state == "copying":  # ours (a retried attempt) or its owner is gone
            entry.owner, entry.owner_until = owner, owner_until
            result.copy.append(path)
        else:  # an eviction whose run is gone: finish it, then copy the file again
            entry.owner, entry.owner_until = owner, owner_until
            result.evict.append(path)
    needed = sum(sizes[p] for p in result.missing)
    if result.missing and needed <= state.free:
        for path in result.missing:
            entry = Entry(path, sizes[path], "copying", now, owner, owner_until)
            for holder, until in holds:
                entry.hold(holder, until)
            state.files[path] = entry
        result.copy += result.missing
        result.missing = []
        return result
    if not result.missing:
        return result
    freed = 0
    victims: list[Entry] = []
    for entry in state.lru():
        if state.free + freed >= needed:
            break
        if (entry.state == "present" and entry.path not in listed_set
                and not entry.held(now)):
            victims.append(entry)
            freed += entry.size
    if state.free + freed < needed:
        result.short = needed - state.free - freed
        result.held_bytes = sum(e.size for e in state.files.values()
                                if e.held(now) or e.owned_by_other(owner, now))
        return result
    for entry in victims:
        entry.state, entry.owner, entry.owner_until = "evicting", owner, owner_until
        result.evict.append(entry.path)
    return result


def evicted(state: TierState, paths: Iterable[str], owner: str) -> list[str]:
    """Forget the entries ``owner`` evicted (their bytes are free again)."""
    gone = []
    for path in paths:
        entry = state.files.get(path)
        if entry is not None and entry.state == "evicting" and entry.owner == owner:
            del state.files[path]
            gone.append(path)
    return gone


def copied(state: TierState, paths: Iterable[str], owner: str, now: float) -> list[str]:
    """Mark ``owner``'s finished copies present (used now)."""
    done = []
    for path in paths:
        entry = state.files.get(path)
        if entry is not None and entry.state == "copying" and entry.owner == owner:
            entry.state, entry.owner, entry.owner_until = "present", None, None
            entry.last_access = now
            done.append(path)
    return done


def abort(state: TierState, paths: Iterable[str], owner: str) -> None:
    """Give up ``owner``'s copies and evictions that did not finish: a copy's
    reservation is dropped (the file is not present); an eviction is kept as it is
    (the file may be half deleted) for the next event to finish."""
    for path in paths:
        entry = state.files.get(path)
        if entry is not None and entry.owner == owner and entry.state == "copying":
            del state.files[path]


def release(state: TierState, holder: str, now: float) -> int:
    """Drop ``holder``'s holds (and every hold that has run out); how many it had."""
    count = 0
    for entry in state.files.values():
        count += sum(1 for h in entry.holds if h.holder == holder)
        entry.holds = [h for h in entry.holds if h.holder != holder and h.until > now]
    return count


def trim(state: TierState, *, owner: str, owner_until: float, now: float) -> list[str]:
    """Mark least recently used, unheld present files for eviction until the tier fits
    its capacity (after the capacity was lowered); what to delete."""
    over = state.used - state.capacity
    chosen: list[str] = []
    for entry in state.lru():
        if over <= 0:
            break
        if entry.state == "present" and not entry.held(now):
            entry.state, entry.owner, entry.owner_until = "evicting", owner, owner_until
            over -= entry.size
            chosen.append(entry.path)
    return chosen
