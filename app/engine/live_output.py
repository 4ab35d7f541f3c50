"""What a running attempt has printed so far, in the store about once a second.

An attempt's captured output (``Captured``, modules/limits.py: its head and its tail,
with a count of what was cut between them) is recorded when the attempt ends. So that
it can be read while the attempt runs (the dashboard's step drawer, ``GET
/runs/<id>/logs``, ``chordflow logs``), one thread per engine takes a snapshot of each
running attempt's output every ``interval`` seconds and, when it changed, stores it as
that attempt's *live* output, in pages: only the pages that changed are written (the
head only grows, so its pages are written once) and pages past the end are dropped. A
snapshot is bounded as the recorded output is, so what is stored is too.

Once the attempt's output is recorded (``Engine._keep_output``), its live pages are
dropped. Readers (``Store.logs``, through ``with_live``) prefer an attempt's recorded
output to its live pages, so nothing is shown twice even if a drop fails; a worker lost
mid-attempt leaves its live pages as what is known of that attempt's output.

An attempt shorter than ``interval`` is never written: it costs a dict entry.
Writes are best effort (one try; the next snapshot tries again): output is worth less
than the step's result, and a store outage must not hold up anything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chordflow.engine.recent import Recent
from chordflow.engine.records import LogLine
from chordflow.modules.limits import Captured, log_pieces

if TYPE_CHECKING:
    from chordflow.engine.store import Store

log = logging.getLogger("chordflow.engine.live_output")

#: Seconds between two snapshots of a running attempt's output.
LIVE_SECONDS = 1.0
#: Characters of one stored piece and of one page of live output at most: small
#: enough that a growing tail rewrites little, large enough for few documents.
PIECE_CHARS = 16 * 1024
PAGE_CHARS = 64 * 1024
#: Seconds ``forget`` waits for a write of that attempt under way.
FORGET_SECONDS = 5.0

Page = list[LogLine]


@dataclass(eq=False)
class Watched:
    """One running attempt whose output is followed."""

    run_id: str
    step: str  # the task token: "fetch" or "each[3]"
    attempt: int
    captured: Captured
    seen: tuple[int, ...] | None = None  # ``Captured.version`` at the last write
    pages: list[list[tuple[str, str]]] = field(default_factory=list)  # what was written
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def paginate(lines: Iterable[tuple[float, str, str]], make: Callable[[float, str, str], LogLine],
             redact: Callable[[str], str]) -> list[Page]:
    """A snapshot as pages of at most PAGE_CHARS characters (a piece larger than that
    alone), times made strictly increasing in the snapshot's order."""
    pages: list[Page] = [[]]
    size, last = 0, 0.0
    for ts, stream, text in lines:
        # (A text that grows keeps its first pieces: their pages are not written again.)
        for piece in log_pieces(redact(text), PIECE_CHARS):
            last = max(ts, last + 1e-6)
            if pages[-1] and size + len(piece) > PAGE_CHARS:
                pages.append([])
                size = 0
            pages[-1].append(make(last, stream, piece))
            size += len(piece)
    return pages if pages[-1] else pages[:-1]


def with_live(recorded: list[LogLine], live: Iterable[LogLine]) -> list[LogLine]:
    """A run's recorded output and its running attempts' live output, in time order:
    an attempt's live lines only where it has no recorded line."""
    done = {(line.step, line.attempt) for line in recorded}
    extra = [line for line in live if (line.step, line.attempt) not in done]
    if not extra:
        return recorded
    return sorted([*recorded, *extra], key=lambda line: line.ts)


class LiveOutput:
    """Follows the output of the attempts an engine runs, into the store."""

    def __init__(self, store: Store, worker: str | Callable[[], str],
                 redact: Callable[[str], str], interval: float = LIVE_SECONDS):
        self.store = store
        #: Who runs the attempts: a name, or what gives it (a Celery worker names its
        #: engine after it was made, as its tasks start).
        self.worker = worker
        self.redact = redact
        self.interval = interval
        self._watched: dict[int, Watched] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: Attempts with live pages in the store, until their output is recorded.
        self._written: Recent[tuple[str, str, int], bool] = Recent(10_000)

    def _worker_name(self) -> str:
        return self.worker() if callable(self.worker) else self.worker

    def watch(self, run_id: str, step: str, attempt: int, captured: Captured) -> Watched:
        """Follow an attempt from now on; ``forget`` it when it ends."""
        watched = Watched(run_id, step, attempt, captured)
        with self._lock:
            self._watched[id(watched)] = watched
            if self._thread is None and self.interval > 0:  # 0: ``flush`` by hand
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="chordflow-live-output")
                self._thread.start()
        return watched

    def forget(self, watched: Watched) -> None:
        """The attempt ended: no more writes for it (one under way is waited for, so
        that none lands after its output is recorded)."""
        with self._lock:
            self._watched.pop(id(watched), None)
        if watched.lock.acquire(timeout=FORGET_SECONDS):
            watched.done = True
            watched.lock.release()
        else:
            watched.done = True

    def recorded(self, run_id: str, step: str, attempt: int) -> None:
        """The attempt's output is recorded: drop its live pages, if it has any."""
        key = (run_id, step, attempt)
        if self._written.get(key) is None:
            return
        self._written.put(key, False)
        try:
            self.store.drop_live_logs(run_id, step, attempt)
        except Exception:  # readers prefer the recorded output anyway
            log.warning("could not drop the live output of %s", step, exc_info=True)

    def flush(self) -> None:
        """Write every followed attempt's output that changed (one pass)."""
        with self._lock:
            watched = list(self._watched.values())
        for one in watched:
            with one.lock:
                if one.done:
                    continue
                try:
                    self._write(one)
                except Exception:  # best effort: tried again at the next pass
                    log.debug("could not store the live output of %s", one.step,
                              exc_info=True)

    def _write(self, one: Watched) -> None:
        version = one.captured.version()
        if version == one.seen:
            return
        lines = one.captured.snapshot()
        pages = paginate(lines, lambda ts, stream, text: LogLine(
            one.run_id, one.step, one.attempt, stream, text, self._worker_name(), ts),
            self.redact)
        shapes = [[(line.stream, line.text) for line in page] for page in pages]
        changed = {i: page for i, page in enumerate(pages)
                   if i >= len(one.pages) or one.pages[i] != shapes[i]}
        if changed or len(pages) != len(one.pages):
            self.store.put_live_logs(one.run_id, one.step, one.attempt, changed, len(pages))
            self._written.put((one.run_id, one.step, one.attempt), True)
        one.pages, one.seen = shapes, version

    def _loop(self) -> None:
        """Every ``interval``, a pass; ends when nothing is followed (``watch`` starts
        it again), so an engine that is done leaves no thread behind."""
        while True:
            self._wake.wait(self.interval)
            with self._lock:
                if not self._watched:
                    self._thread = None
                    return
            self.flush()


def page_doc(run_id: str, step: str, attempt: int, page: int, lines: Page) -> dict[str, Any]:
    """One page of live output as a document (MongoDB's store)."""
    return {"_id": f"{run_id}/{step}/{attempt}/{page}", "run_id": run_id, "step": step,
            "attempt": attempt, "page": page,
            "lines": [{"stream": ln.stream, "text": ln.text, "worker": ln.worker,
                       "ts": ln.ts} for ln in lines]}


def page_lines(doc: dict[str, Any]) -> Page:
    return [LogLine(doc["run_id"], doc["step"], doc["attempt"], ln["stream"], ln["text"],
                    ln.get("worker"), ln["ts"]) for ln in doc.get("lines") or ()]
