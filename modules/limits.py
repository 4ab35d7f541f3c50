"""What a step may leave behind: bounded outputs and bounded captured output.

A step's outputs are stored in its step record, one MongoDB document of at most
16 MB, and read again by every step that refers to them; what an attempt prints and
logs is stored for ``chordflow logs``. Neither may grow with what the step does:

- outputs above ``Limits.outputs`` bytes (``CHORDFLOW_MAX_OUTPUT_BYTES``, their
  JSON encoding) fail the step for good, naming its size and the limit
  (``oversized_outputs``): retrying would return the same, and an oversized record would
  otherwise fail in the store, as "internal error: DocumentTooLarge";
- an attempt keeps ``Limits.logs`` bytes (``CHORDFLOW_MAX_LOG_BYTES``) of what it
  printed and logged: the first half and the last half, with a line in between saying
  how much was cut (``Captured``). A process's streams are read into a ``HeadTail`` as
  they come, so a step printing 100 MB costs its worker no more memory than the limit.

Sizes are bytes of UTF-8 text, which is what BSON stores.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from chordflow.workflow.limits import DEFAULT_LOG_BYTES

T = TypeVar("T")

#: Characters of one stored line of output at most (4 MiB of UTF-8 at worst: a
#: document far below MongoDB's 16 MB), and of the lines one write stores.
LOG_PIECE_CHARS = 1024 * 1024
LOG_BATCH_CHARS = 8 * 1024 * 1024
LOG_BATCH_LINES = 1000
OUTPUT_SETTING = "CHORDFLOW_MAX_OUTPUT_BYTES"
LOG_SETTING = "CHORDFLOW_MAX_LOG_BYTES"


def utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8, without a copy when it is ASCII (the common case)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def json_size(value: Any) -> int:
    """Bytes of ``value`` encoded as JSON (close to its BSON size; never less for text).

    One ``json.dumps``: microseconds for the usual small outputs, a fraction of a second
    for 50 MB. A value JSON cannot encode at all (a cycle) counts as 0: the store is
    left to refuse it.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return 0
    return utf8_size(text)


def format_bytes(n: int) -> str:
    """``n`` bytes for a person: "4 MiB", "97.7 KiB", "512 bytes"."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n:,} bytes"


def oversized_outputs(step: str, outputs: Mapping[str, Any], limit: int) -> str | None:
    """The error of a step whose outputs are over ``limit`` bytes; None if they fit."""
    size = json_size(outputs)
    if size <= limit:
        return None
    shown, cap = format_bytes(size), format_bytes(limit)
    if shown == cap:  # just over: the rounded sizes would read the same
        shown, cap = f"{size:,} bytes", f"{limit:,} bytes"
    return (f"step '{step}': its outputs are {shown}, over the limit of {cap} "
            f"({OUTPUT_SETTING}); write large data to a file and output its path")


def cut_notice(size: int, limit: int) -> str:
    """The line that stands for ``size`` bytes of output cut by the log limit."""
    return (f"[... {format_bytes(size)} of output cut: {LOG_SETTING} is "
            f"{format_bytes(limit)}; the head and the tail are kept ...]")


def _split(text: str, n: int) -> tuple[str, str]:
    """``text`` as (its longest prefix of at most ``n`` bytes, the rest): whole
    characters only."""
    if text.isascii():
        return text[:n], text[n:]
    head = text.encode("utf-8", "replace")[:n].decode("utf-8", "ignore")
    return head, text[len(head):]


def _suffix(text: str, n: int) -> str:
    """The longest suffix of ``text`` of at most ``n`` bytes (whole characters)."""
    if n <= 0:
        return ""
    if text.isascii():
        return text[-n:]
    data = text.encode("utf-8", "replace")
    return data[max(0, len(data) - n):].decode("utf-8", "ignore")


class HeadTail:
    """One stream's text, bounded as it is written: its first ``limit // 2`` bytes, its
    last ``limit - limit // 2``, and a count of the bytes between them.

    Written by a process's reader thread while the step's thread may read it (a step
    stopped while a process it left behind still prints), hence the lock.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.total = 0  # bytes written
        self._head: list[str] = []
        self._head_bytes = 0
        self._head_open = True
        self._tail: deque[tuple[str, int]] = deque()
        self._tail_bytes = 0
        self._dropped = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        if not text:
            return
        size = utf8_size(text)
        with self._lock:
            self.total += size
            if self._head_open:
                room = self.limit // 2 - self._head_bytes
                if size <= room:
                    self._head.append(text)
                    self._head_bytes += size
                    return
                first, text = _split(text, room)
                first_size = utf8_size(first)
                self._head.append(first)
                self._head_bytes += first_size
                self._head_open = False  # the head is the start: nothing later joins it
                size -= first_size
            self._tail.append((text, size))
            self._tail_bytes += size
            room = self.limit - self.limit // 2
            while self._tail_bytes > room:
                oldest, oldest_size = self._tail[0]
                excess = self._tail_bytes - room
                if oldest_size <= excess:
                    self._tail.popleft()
                    dropped = oldest_size
                else:
                    rest = _suffix(oldest, oldest_size - excess)
                    rest_size = utf8_size(rest)
                    self._tail[0] = (rest, rest_size)
                    dropped = oldest_size - rest_size
                self._tail_bytes -= dropped
                self._dropped += dropped

    def parts(self, budget: int | None = None) -> tuple[str, int, str]:
        """(head, bytes cut, tail): within ``budget`` bytes if given (half each, or what
        the other half leaves), else all that is kept. Nothing cut: all in ``head``."""
        with self._lock:
            head, tail = "".join(self._head), "".join(t for t, _ in self._tail)
            head_bytes, tail_bytes, dropped = self._head_bytes, self._tail_bytes, self._dropped
        if not dropped and (budget is None or head_bytes + tail_bytes <= budget):
            return head + tail, 0, ""
        if budget is not None and head_bytes + tail_bytes > budget:
            keep_head = min(head_bytes, max(budget // 2, budget - tail_bytes))
            head, _ = _split(head, keep_head)
            tail = _suffix(tail, budget - utf8_size(head))
        return head, self.total - utf8_size(head) - utf8_size(tail), tail

    def text(self, budget: int, marker: Callable[[int], str],
             measure: Callable[[str], int] = utf8_size) -> str:
        """What is kept, within ``budget`` as ``measure`` counts it (JSON bytes, say),
        with ``marker(bytes cut)`` where the text was cut."""
        target = budget
        for _ in range(8):
            head, cut, tail = self.parts(target)
            text = head + marker(cut) + tail if cut else head
            size = measure(text)
            if size <= budget:
                return text
            # Escapes (JSON's \u0000, say) made it larger: aim lower in proportion.
            target = int(target * budget / size * 0.95) - 64
            if target <= 0:
                break
        return marker(self.total)[:budget]


@dataclass
class _Piece:
    ts: float
    stream: str
    text: str | None  # None: a gap, ``size`` bytes cut
    size: int


class Captured:
    """What one attempt printed and logged, as (time, stream, text), bounded as it
    comes: pieces are kept in order until half of ``limit`` bytes is used (the head),
    then only the last half (the tail); what falls between is counted, and ``lines``
    shows it as one line, ``cut_notice``. A piece that straddles is split; a gap (output
    cut before it got here, by a process's ``HeadTail``) ends the head and joins the
    count.

    ``limit`` None keeps everything.
    """

    def __init__(self, limit: int | None = DEFAULT_LOG_BYTES):
        self.limit = limit
        self.total = 0  # bytes added, gaps included
        self.cut = 0  # bytes not kept
        self._head: list[_Piece] = []
        self._head_room = limit // 2 if limit is not None else None
        self._tail: deque[_Piece] = deque()
        self._tail_bytes = 0
        self._tail_room = limit - limit // 2 if limit is not None else 0
        self._dropped: _Piece | None = None  # what left the tail's front
        self._lock = threading.Lock()
        #: Streams read as they come and added only when their process ends (a
        #: ``HeadTail`` each, with when it was followed): shown by ``snapshot``.
        self._followed: dict[int, tuple[str, float, HeadTail]] = {}
        self._changes = 0

    def add(self, stream: str, text: str, ts: float | None = None) -> None:
        """Keep a stream's output ("stdout", "stderr") or a message ("log")."""
        if not text:
            return
        ts = time.time() if ts is None else ts
        size = utf8_size(text)
        with self._lock:
            self._changes += 1
            self.total += size
            if self._head_room is None:
                self._head.append(_Piece(ts, stream, text, size))
                return
            if self._head_room > 0:
                if size <= self._head_room:
                    self._head.append(_Piece(ts, stream, text, size))
                    self._head_room -= size
                    return
                first, text = _split(text, self._head_room)
                first_size = utf8_size(first)
                if first:
                    self._head.append(_Piece(ts, stream, first, first_size))
                self._head_room = 0
                size -= first_size
            self._push(_Piece(ts, stream, text, size))

    def add_gap(self, stream: str, size: int, ts: float | None = None) -> None:
        """Count ``size`` bytes of ``stream`` that were cut before they got here."""
        if size <= 0:
            return
        piece = _Piece(time.time() if ts is None else ts, stream, None, size)
        with self._lock:
            self._changes += 1
            self.total += size
            self.cut += size
            if self._head_room is None:
                self._head.append(piece)
            else:
                # The head is the start of the output: once some was cut, what follows
                # belongs to the tail (one notice, not a notice and a scrap).
                self._head_room = 0
                self._push(piece)

    def _push(self, piece: _Piece) -> None:
        """Into the tail, dropping from its front what no longer fits."""
        self._tail.append(piece)
        if piece.text is not None:
            self._tail_bytes += piece.size
        while self._tail_bytes > self._tail_room:
            front = self._tail[0]
            excess = self._tail_bytes - self._tail_room
            if front.text is None or front.size <= excess:
                self._tail.popleft()
                dropped = front.size
                if front.text is not None:
                    self._tail_bytes -= dropped
                    self.cut += dropped
            else:
                rest = _suffix(front.text, front.size - excess)
                dropped = front.size - utf8_size(rest)
                front.text, front.size = rest, front.size - dropped
                self._tail_bytes -= dropped
                self.cut += dropped
            if self._dropped is None:
                self._dropped = _Piece(front.ts, front.stream, None, 0)
            self._dropped.size += dropped

    def lines(self) -> list[tuple[float, str, str]]:
        """What is kept, in order, each run of gaps as one ``cut_notice`` line."""
        with self._lock:
            pieces = [*self._head, *([self._dropped] if self._dropped else []), *self._tail]
        out: list[tuple[float, str, str]] = []
        gap: _Piece | None = None
        for piece in pieces:
            if piece.text is None:
                if gap is None:
                    gap = _Piece(piece.ts, piece.stream, None, 0)
                gap.size += piece.size
                continue
            if gap is not None:
                out.append((gap.ts, gap.stream, cut_notice(gap.size, self.limit or 0)))
                gap = None
            out.append((piece.ts, piece.stream, piece.text))
        if gap is not None:
            out.append((gap.ts, gap.stream, cut_notice(gap.size, self.limit or 0)))
        return out


    def follow(self, stream: str, source: HeadTail) -> None:
        """Show ``source``, a process's ``stream`` read as it comes, in ``snapshot``
        until ``unfollow`` (when the process ended and its text was added here)."""
        with self._lock:
            self._changes += 1
            self._followed[id(source)] = (stream, time.time(), source)

    def unfollow(self, source: HeadTail) -> None:
        with self._lock:
            self._changes += 1
            self._followed.pop(id(source), None)

    def version(self) -> tuple[int, ...]:
        """Changes whenever ``snapshot`` would: compare it to skip an unchanged one."""
        with self._lock:
            return (self._changes, *(s.total for _, _, s in self._followed.values()))

    def snapshot(self) -> list[tuple[float, str, str]]:
        """What the attempt has printed and logged so far, the streams it follows
        included, within the same limit and in the same shape as ``lines`` (what a
        running attempt shows before its output is recorded)."""
        with self._lock:
            followed = list(self._followed.values())
        lines = self.lines()
        if not followed:
            return lines
        view = Captured(self.limit)
        for ts, stream, text in lines:
            view.add(stream, text, ts)
        for stream, ts, source in followed:
            head, cut, tail = source.parts(self.limit)
            view.add(stream, head, ts)
            view.add_gap(stream, cut, ts)
            view.add(stream, tail, ts)
        return view.lines()


def log_pieces(text: str, size: int = LOG_PIECE_CHARS) -> list[str]:
    """``text`` in pieces of at most ``size`` characters to store, each ending at a line
    end where there is one in reach (a longer line is cut where it must be). The same
    text is cut the same way, so a text that grows keeps its first pieces."""
    if len(text) <= size:
        return [text]
    pieces, start = [], 0
    while len(text) - start > size:
        end = text.rfind("\n", start, start + size) + 1
        if end <= start:
            end = start + size
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


def log_batches(lines: list[T], size: Callable[[T], int]) -> list[list[T]]:
    """Lines in groups of at most LOG_BATCH_CHARS (as ``size`` counts) and
    LOG_BATCH_LINES, so that one insert stays below a server's message size."""
    batches: list[list[T]] = [[]]
    total = 0
    for line in lines:
        n = size(line)
        if batches[-1] and (total + n > LOG_BATCH_CHARS or len(batches[-1]) >= LOG_BATCH_LINES):
            batches.append([])
            total = 0
        batches[-1].append(line)
        total += n
    return batches
