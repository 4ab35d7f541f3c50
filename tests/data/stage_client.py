"""A process that uses a stage cache, for the tests that need several of them at once.

``python -m tests.data.stage_client ROOT BOUND SOURCE [--hold] [--slow SECONDS]``
acquires the local file SOURCE through the stage cache at ROOT (bound BOUND bytes),
downloading it (if it must) by copying it in 64 KiB pieces, ``--slow`` seconds apart;
each download appends a line to ROOT/../downloads.log. It prints ``hit PATH`` or
``miss PATH`` once it holds the object, then, with ``--hold``, keeps its lease until
its standard input closes (or it is killed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from chordflow.data.stage_cache import RemoteObject, StageCache

PIECE = 64 * 1024


def local_object(source: Path) -> RemoteObject:
    """What a remote would say of the file: its path, size and time."""
    stat = source.stat()
    return RemoteObject(str(source), stat.st_size, str(stat.st_mtime_ns))


def copy_slowly(source: Path, dest: Path, pause: float, log: Path) -> None:
    with log.open("a") as out:
        out.write(f"{os.getpid()} {source}\n")
    with source.open("rb") as src, dest.open("wb") as dst:
        while piece := src.read(PIECE):
            dst.write(piece)
            dst.flush()
            if pause:
                time.sleep(pause)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("bound", type=int)
    parser.add_argument("source", type=Path)
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--slow", type=float, default=0.0)
    args = parser.parse_args()
    cache = StageCache(args.root, args.bound)
    log = args.root.parent / "downloads.log"
    lease = cache.acquire(local_object(args.source),
                          lambda dest: copy_slowly(args.source, dest, args.slow, log))
    print("hit" if lease.hit else "miss", lease.path, flush=True)
    if args.hold:
        sys.stdin.read()
    lease.release()


if __name__ == "__main__":
    main()
