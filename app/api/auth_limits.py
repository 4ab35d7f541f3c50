"""Failed authentications, limited per client address and per key id.

Why: a key that is not in the valid-key cache is checked with scrypt, ~50 ms of CPU on
purpose (a stolen hash is slow to crack). Without a limit, anyone who reaches the API
could spend its CPU by sending wrong keys, and try secrets as fast as it hashes. So each
client address and each key id has a budget of failures (``auth_failures_per_minute``,
a token bucket that refills continuously); past it, a request is refused with 429 and
``Retry-After`` before its key is looked up or hashed.

What is never limited, so that valid requests are not slowed: a token in the valid-key
cache (``chordflow.api.keys``), and a token that authenticated on this process within
``PROVEN_SECONDS`` (remembered by its SHA-256 only). The second is what keeps a key's
owner working while its id is attacked: the attacker, not knowing the token, cannot
present a proven one. A key not used on this process for longer (or a process that has
just started, or another uvicorn worker) is refused with 429 while its id is over budget,
like the attacker: without the scrypt the API cannot tell them apart. It works again
once the attack stops (a minute at most), or from another process.

Each failure is reserved before the key is checked and given back if the key turns out
valid, so that concurrent guesses cannot overshoot the budget. An unknown key id spends
the address's budget only: keeping buckets for ids that do not exist would let random
ids fill memory. The state is per API process (in memory): with N uvicorn workers a
client gets N budgets, still a few dozen scrypts a minute.

The address is the client's as uvicorn sees it. ``chordflow api`` trusts
``X-Forwarded-For`` from the proxies in ``FORWARDED_ALLOW_IPS`` (uvicorn's setting, the
loopback addresses by default): behind another proxy, list it there, or every client is
the proxy and they all share one budget.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]

#: Seconds a token that authenticated stays exempt from the limits on this process.
PROVEN_SECONDS = 3600.0
#: Bounds on what the limiter keeps (entries beyond are dropped, oldest first).
MAX_SUBJECTS = 100_000
MAX_PROVEN = 10_000


class FailureBudget:
    """Token buckets of failures by subject: ``per_minute`` at once, refilling at
    ``per_minute`` a minute. An absent subject has a full bucket."""

    def __init__(self, per_minute: int, clock: Clock = time.monotonic,
                 max_subjects: int = MAX_SUBJECTS):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.max_subjects = max_subjects
        #: subject -> (tokens left, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, subject: str, at: float) -> float:
        tokens, stamp = self._buckets.get(subject, (self.capacity, at))
        return min(self.capacity, tokens + (at - stamp) * self.rate)

    def wait(self, subject: str) -> float:
        """Seconds until ``subject`` may fail once more; 0 when it may now."""
        tokens = self._tokens(subject, self.clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def spend(self, subject: str) -> None:
        """Count one failure of ``subject``."""
        at = self.clock()
        self._buckets[subject] = (self._tokens(subject, at) - 1.0, at)
        if len(self._buckets) > self.max_subjects:
            self._prune(at)

    def refund(self, subject: str) -> None:
        """Give back one failure reserved for ``subject`` (it was not one)."""
        at = self.clock()
        tokens = self._tokens(subject, at) + 1.0
        if tokens >= self.capacity:
            self._buckets.pop(subject, None)  # a full bucket is an absent one
        else:
            self._buckets[subject] = (tokens, at)

    def _prune(self, at: float) -> None:
        """Forget full buckets; if that is not enough, the oldest ones."""
        self._buckets = {s: b for s, b in self._buckets.items()
                         if self._tokens(s, at) < self.capacity}
        excess = len(self._buckets) - self.max_subjects
        if excess > 0:
            oldest = sorted(self._buckets, key=lambda s: self._buckets[s][1])[:excess]
            for subject in oldest:
                del self._buckets[subject]


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused (what is over budget) and for how long."""

    what: str
    retry_after: float

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))

    @property
    def detail(self) -> str:
        return (f"too many failed authentications {self.what}; try again in "
                f"{self.retry_after_header} s")


@dataclass(frozen=True)
class Ticket:
    """A request admitted to a key check: what to settle afterwards. ``reserved`` is
    False for a proven token, which spent nothing (and so gives nothing back)."""

    address: str
    key_id: str
    digest: bytes
    reserved: bool


class AuthLimits:
    """The two budgets (addresses, key ids) and the tokens proven valid."""

    def __init__(self, per_minute: int, clock: Clock = time.monotonic):
        self.clock = clock
        self.addresses = FailureBudget(per_minute, clock)
        self.key_ids = FailureBudget(per_minute, clock)
        self._proven: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def admit(self, address: str, key_id: str, digest: bytes) -> Ticket | Refusal:
        """Before a key is looked up: a Refusal if the address or the key id is over
        budget; else a Ticket, with one failure of each reserved (``settle`` says what
        it was). A proven token is admitted without reserving anything."""
        with self._lock:
            if self._proven.get(digest, -math.inf) > self.clock():
                return Ticket(address, key_id, digest, reserved=False)
            waits = [(f"from address {address}", self.addresses.wait(address)),
                     (f"for key id '{key_id}'", self.key_ids.wait(key_id))]
            over = [(what, wait) for what, wait in waits if wait > 0]
            if over:
                what, wait = max(over, key=lambda pair: pair[1])
                return Refusal(what, wait)
            self.addresses.spend(address)
            self.key_ids.spend(key_id)
            return Ticket(address, key_id, digest, reserved=True)

    def settle(self, ticket: Ticket, *, valid: bool, known_id: bool) -> None:
        """After the key check: a valid key gives both reserved failures back (and is
        proven from now on); an unknown key id gives the key id's back."""
        with self._lock:
            if valid:
                if len(self._proven) >= MAX_PROVEN:
                    self._proven.clear()
                self._proven[ticket.digest] = self.clock() + PROVEN_SECONDS
            if not ticket.reserved:
                return
            if valid:
                self.addresses.refund(ticket.address)
            if valid or not known_id:
                self.key_ids.refund(ticket.key_id)

    def release(self, ticket: Ticket) -> None:
        """The check did not finish (the store is down: the client gets 503): what it
        reserved was no failure, so it is all given back."""
        if not ticket.reserved:
            return
        with self._lock:
            self.addresses.refund(ticket.address)
            self.key_ids.refund(ticket.key_id)
