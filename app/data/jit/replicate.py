"""Making an event's files present on a tier's primary: the loop of claims, evictions
and copies, each change of the state one atomic update (app/data/jit/store.py), each
move one rclone command (app/data/jit/transfers.py).

It is what the ``jit`` step module runs, so it runs as a chordflow run of its own: a
retried attempt continues what the last one left (its reservations are its run's), a
cancel kills rclone and gives the unfinished reservations back, and a worker killed
mid-copy leaves a ``copying`` entry that is never served and is taken over once its
lease runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from chordflow.data.jit import state as ops
from chordflow.data.jit.store import TierStore
from chordflow.data.jit.tiers import Tier
from chordflow.errors import StepFailed

#: Seconds between two looks at files another run is copying or evicting.
WAIT_SECONDS = 0.5


class Mover(Protocol):
    def sizes(self, files: Sequence[str]) -> dict[str, int]: ...
    def copy(self, files: Sequence[str]) -> int: ...
    def delete(self, files: Sequence[str]) -> None: ...


class TierFull(StepFailed):
    """The files do not fit, even after evicting everything that may be evicted."""


class NotOnSecondary(StepFailed):
    """Listed files the secondary does not have: retrying cannot help."""

    final = True


@dataclass
class Outcome:
    """What one event's run did, for its step's outputs."""

    tier: str
    files: int
    copied: list[str] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    bytes_evicted: int = 0
    capacity: int = 0
    used: int = 0

    def outputs(self) -> dict[str, Any]:
        return {"tier": self.tier, "files": self.files, "copied": self.copied,
                "evicted": self.evicted, "bytes_copied": self.bytes_copied,
                "bytes_evicted": self.bytes_evicted, "capacity": self.capacity,
                "used": self.used}


def make_present(tier: Tier, files: Sequence[str], *, store: TierStore, mover: Mover,
                 owner: str, holder: str | None = None,
                 check: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """Make ``files`` present on ``tier``'s primary, held by ``owner`` (the run, until
    :func:`release`) and ``holder`` (the event's workflow, for ``hold_seconds``)."""
    outcome = Outcome(tier.name, len(files))
    known = store.load(tier)
    sizes = _sizes(tier, mover, [f for f in files if f not in known.files])
    while True:
        check()
        now = clock()
        holds = [(owner, now + tier.copy_timeout)]
        if holder:
            holds.append((holder, now + tier.hold_seconds))
        claim, state = store.change(tier, partial(
            ops.claim, files=files, sizes=sizes, holds=holds, owner=owner,
            owner_until=now + tier.copy_timeout, now=now))
        if claim.unsized:
            sizes.update(_sizes(tier, mover, claim.unsized))
            continue
        if claim.evict:
            sizes_before = {p: state.files[p].size for p in claim.evict}
            mover.delete(claim.evict)
            gone, state = store.change(tier, partial(ops.evicted, paths=claim.evict,
                                                     owner=owner))
            outcome.evicted += gone
            outcome.bytes_evicted += sum(sizes_before[p] for p in gone)
        if claim.copy:
            try:
                mover.copy(claim.copy)
            except BaseException:
                store.change(tier, partial(ops.abort, paths=claim.copy, owner=owner))
                raise
            done, state = store.change(tier, partial(ops.copied, paths=claim.copy,
                                                     owner=owner, now=clock()))
            outcome.copied += done
            outcome.bytes_copied += sum(sizes[p] for p in done if p in sizes)
        if claim.done:
            outcome.capacity, outcome.used = state.capacity, state.used
            return outcome
        if claim.short and not (claim.evict or claim.copy or claim.wait):
            raise TierFull(
                f"tier '{tier.name}' cannot hold the files of this event: "
                f"{sum(sizes[p] for p in claim.missing)} bytes to copy, {state.free} "
                f"free of {state.capacity}, and {claim.held_bytes} bytes are held by "
                "workflows, runs reading them or copies under way (retried; raise the "
                "capacity with 'chordflow jit capacity' if it persists)")
        if claim.wait and not (claim.evict or claim.copy):
            sleep(WAIT_SECONDS)


def _sizes(tier: Tier, mover: Mover, files: Sequence[str]) -> dict[str, int]:
    if not files:
        return {}
    found = mover.sizes(files)
    absent = [f for f in files if f not in found]
    if absent:
        shown = ", ".join(absent[:10]) + (f" and {len(absent) - 10} more"
                                           if len(absent) > 10 else "")
        raise NotOnSecondary(f"tier '{tier.name}': not on the secondary "
                             f"{tier.secondary_path()}: {shown}")
    too_big = [f for f, size in found.items() if size > int(tier.capacity)]
    if too_big:
        raise NotOnSecondary(f"tier '{tier.name}': larger than the whole capacity "
                             f"({int(tier.capacity)} bytes): {', '.join(too_big[:10])}")
    return found


def release(tier: Tier, holder: str, *, store: TierStore,
            clock: Callable[[], float] = time.time) -> int:
    """Drop ``holder``'s holds on the tier's files; how many there were."""
    count, _ = store.change(tier, lambda s: ops.release(s, holder, clock()))
    return count


def trim(tier: Tier, *, store: TierStore, mover: Mover, owner: str,
         clock: Callable[[], float] = time.time) -> Outcome:
    """Evict least recently used unheld files until the tier fits its capacity (after
    the capacity was lowered); held files stay, so it may remain over."""
    outcome = Outcome(tier.name, 0)
    now = clock()
    chosen, state = store.change(tier, lambda s: ops.trim(
        s, owner=owner, owner_until=now + tier.copy_timeout, now=now))
    if chosen:
        sizes = {p: state.files[p].size for p in chosen}
        mover.delete(chosen)
        gone, state = store.change(tier, lambda s: ops.evicted(s, chosen, owner))
        outcome.evicted, outcome.bytes_evicted = gone, sum(sizes[p] for p in gone)
    outcome.capacity, outcome.used = state.capacity, state.used
    return outcome
