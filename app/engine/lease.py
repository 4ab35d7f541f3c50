"""Leases: at most one live attempt per step, whatever happens to the worker running it.

A claim writes, with the attempt, a lease into the step's record: ``holder`` (this
process: host, PID namespace and pid) and ``lease_until`` (a UNIX time
``CHORDFLOW_LEASE_SECONDS`` ahead). While the attempt runs, the process's
:class:`LeaseKeeper` renews it every third of that time, by a compare-and-set on the
attempt number and the holder. Three rules follow:

- Nobody takes a step over while its lease is live. Another delivery of its message
  (a redelivery, a resend) comes back after the lease would have run out and looks
  again. Being unreachable (an ``inspect`` timing out, a paused process) is not death.
- A lease that ran out is taken over only once it has stayed unchanged for
  ``TAKEOVER_GRACE`` seconds more: the message that found it expired comes back after
  that long carrying the value it saw (``suspect``), and takes the step over only if
  it is still the same. A holder whose module finished while the store was down
  records its result within a second of the store's return (app/engine/patience.py),
  well inside that grace, so the result is kept rather than the step run again.
  A lease given up (``lease_until`` 0: its holder stopped the attempt, or is a process
  of this very machine that no longer exists) is taken over at once.
- A holder that cannot renew for most of the lease (the store unreachable, the
  process paused, a network partition) or whose renewal is refused (taken over,
  cancelled) stops the attempt itself before anyone else could take it over: the
  step's processes are killed, and the attempt records nothing (its writes compare the
  attempt number, which a takeover increments).

Clocks: a lease is written with the holder's clock and read with the taker's, so the
hosts' clocks must agree to well within the lease (NTP does); the grace absorbs the
rest.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache

from chordflow.engine.store import Store
from chordflow.errors import StoreUnavailable
from chordflow.modules.reaper import reaper

log = logging.getLogger("chordflow.lease")

#: Seconds an expired lease must stay unchanged before its step is taken over.
TAKEOVER_GRACE = 5.0
#: A holder stops its attempt when this fraction of the lease passed without renewal,
STOP_AT = 0.75
#: and the reaper kills its processes at this fraction if the holder could not.
REAPER_AT = 0.85
#: The longest one renewal may take, as a fraction of the lease.
RENEW_BUDGET = 0.1


class LeaseState(StrEnum):
    LIVE = "live"  # its holder has it: leave it alone
    EXPIRED = "expired"  # not renewed in time: take it over after the grace
    RELEASED = "released"  # given up, or its holder is gone for sure: take it over now


@cache
def process_identity() -> str:
    """This process as a lease holder: ``host/namespace/pid``.

    The namespace (boot id and PID namespace, where the system tells them) is what lets
    another process decide for sure that a holder is gone: only a process of the same
    boot and PID namespace can look up a pid and trust the answer.
    """
    return f"{socket.gethostname()}/{_namespace()}/{os.getpid()}"


# A forked child (a prefork pool process) is another holder: forget the parent's.
os.register_at_fork(after_in_child=process_identity.cache_clear)


def _namespace() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()[:8]
        return f"{boot}.{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return "-"  # no way to tell: holders are never judged gone, only expired


def holder_gone(holder: str | None) -> bool:
    """True only if ``holder`` was a process of this machine's PID namespace that no
    longer exists. False when in doubt (another machine, no namespace, a live pid)."""
    if not holder:
        return False
    _, _, rest = holder.partition("/")
    namespace, _, pid = rest.rpartition("/")
    own = _namespace()
    if own == "-" or namespace != own or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(int(pid))


def _is_zombie(pid: int) -> bool:
    """A killed process whose parent has not reaped it yet is as gone as can be."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def lease_state(lease_until: float | None, holder: str | None,
                now: float | None = None) -> LeaseState:
    """What a running attempt's lease means to someone who would take it over."""
    if lease_until == 0 or holder_gone(holder):
        return LeaseState.RELEASED
    if lease_until is None or lease_until <= (time.time() if now is None else now):
        return LeaseState.EXPIRED
    return LeaseState.LIVE


@dataclass(eq=False)
class Lease:
    """One running attempt's lease, as its holder keeps it (the AttemptLease a step's
    module sees, modules/context.py)."""

    run_id: str
    step: str
    index: int | None
    attempt: int
    holder: str
    #: The lease's length (the keeper's ``seconds``).
    seconds: float
    #: When (``time.monotonic()``) the expiry last written to the store was computed:
    #: the lease runs out ``seconds`` after it, whenever the write itself landed.
    renewed: float
    #: Set (with the step's cancel event) when the attempt must stop: its lease was
    #: refused or could not be renewed in time. The attempt then records nothing.
    lost: threading.Event = field(default_factory=threading.Event)
    #: The step's cancel event: what makes its module stop its work.
    stop: threading.Event = field(default_factory=threading.Event)
    #: Why it was lost, once it was.
    reason: str = ""
    #: Whether the store refused the lease (taken over): then nobody needs this
    #: attempt's message any more. Otherwise (unreachable) someone must take over.
    refused: bool = False
    #: The module has returned: nothing runs any more, the attempt only waits to record
    #: its outcome, so it is never stopped for want of the store (a refusal still
    #: counts), and its lease is renewed as soon as the store answers again.
    settled: bool = False
    #: The process groups of the step's subprocesses (modules/process.py), which the
    #: reaper kills if this process cannot renew in time (paused, say).
    groups: set[int] = field(default_factory=set)

    @property
    def token(self) -> str:
        return self.step if self.index is None else f"{self.step}[{self.index}]"

    def stop_deadline(self) -> float:
        """When (``time.monotonic()``) the step's processes must be stopped unless the
        lease is renewed first: well before it runs out in the store."""
        return self.renewed + self.seconds * REAPER_AT

    def adopt(self, pgid: int) -> None:
        self.groups.add(pgid)

    def release(self, pgid: int) -> None:
        self.groups.discard(pgid)

    def lose(self, reason: str, *, refused: bool) -> None:
        if self.lost.is_set():
            return
        self.reason, self.refused = reason, refused
        self.lost.set()
        self.stop.set()
        log.warning("run %s step %s attempt %d stops: %s", self.run_id, self.token,
                    self.attempt, reason, extra={"run_id": self.run_id, "step": self.token})


class LeaseKeeper:
    """Renews the leases of the attempts this process runs (threads started on first
    use), and stops an attempt whose lease it can no longer be sure of.

    One thread renews the leases that are due, each renewal bounded by
    ``RENEW_BUDGET`` of the lease; another, which never touches the store (so a
    renewal that hangs cannot delay it), stops every running attempt whose lease went
    unrenewed for ``STOP_AT`` of its length. A renewal tells
    the reaper (modules/reaper.py) how long the attempt's processes may go on: if this
    process is paused and cannot renew, the reaper, which is not, kills them in time.
    """

    def __init__(self, store: Store, seconds: float, *,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.seconds = seconds
        self.clock = clock
        self._held: set[Lease] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] | None = None

    def until(self) -> float:
        """A new lease's expiry, from now."""
        return self.clock() + self.seconds

    def new(self, run_id: str, step: str, index: int | None, attempt: int,
            renewed: float, stop: threading.Event) -> Lease:
        """The lease of an attempt just claimed; ``renewed`` is when (monotonic) the
        claim's expiry was computed, before its write."""
        return Lease(run_id, step, index, attempt, process_identity(), self.seconds,
                     renewed, stop=stop)

    def hold(self, lease: Lease) -> Lease:
        with self._lock:
            self._held.add(lease)
            if self._threads is None or not all(t.is_alive() for t in self._threads):
                self._threads = [
                    threading.Thread(target=self._every_tick, args=(self._renew_due,),
                                     daemon=True, name="chordflow-leases"),
                    threading.Thread(target=self._every_tick, args=(self.check,),
                                     daemon=True, name="chordflow-lease-watch"),
                ]
                for thread in self._threads:
                    thread.start()
        return lease

    def drop(self, lease: Lease) -> None:
        with self._lock:
            self._held.discard(lease)

    def give_up(self, lease: Lease) -> None:
        """Release the lease (``lease_until`` 0) so that the step is taken over at once:
        the attempt stopped without an outcome. Best effort: an unreachable store leaves
        the lease to expire."""
        self.drop(lease)
        try:
            self.store.set_lease(lease.run_id, lease.step, lease.index, lease.attempt,
                                 lease.holder, 0.0)
        except StoreUnavailable:
            pass

    def fresh(self, lease: Lease) -> None:
        """Renew now if the lease is no longer fresh (its claim waited for the store),
        before the step's work starts on it; the lease is lost if that fails."""
        if time.monotonic() - lease.renewed >= self.seconds / 3:
            self._renew(lease)
            self.check(lease)

    def _every_tick(self, tend: Callable[[Lease], None]) -> None:
        # Far finer than the gap between STOP_AT and REAPER_AT, so the holder always
        # stops an attempt before the reaper has to.
        tick = max(0.02, min(0.5, self.seconds / 40))
        while True:
            time.sleep(tick)
            with self._lock:
                held = list(self._held)
            for lease in held:
                tend(lease)

    def _renew_due(self, lease: Lease) -> None:
        if not lease.lost.is_set() and time.monotonic() - lease.renewed >= self.seconds / 3:
            self._renew(lease)

    def check(self, lease: Lease) -> None:
        """Stop the attempt if its lease went unrenewed for too long (never blocks)."""
        if lease.settled or lease.lost.is_set():
            return
        if time.monotonic() - lease.renewed > self.seconds * STOP_AT:
            lease.lose(f"could not renew its lease for {self.seconds * STOP_AT:.0f}s "
                       "(the store unreachable, or this process paused)", refused=False)

    def _renew(self, lease: Lease) -> None:
        started = time.monotonic()
        try:
            kept = self.store.set_lease(lease.run_id, lease.step, lease.index,
                                        lease.attempt, lease.holder, self.until(),
                                        timeout=self.seconds * RENEW_BUDGET)
        except StoreUnavailable:
            self.check(lease)
            return
        except Exception:  # never let the thread die: the next tick tries again
            log.warning("renewing the lease of %s failed", lease.token, exc_info=True)
            return
        if kept:
            lease.renewed = started
            for pgid in list(lease.groups):
                reaper.extend(pgid, lease.stop_deadline())
        else:
            lease.lose("its lease was taken over, or the step ended meanwhile", refused=True)
