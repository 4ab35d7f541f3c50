"""Functions the ``python`` module calls in tests (importable as tests.helpers...)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any


def add(a: int, b: int = 0) -> int:
    return a + b


def describe(ctx: Any, label: str) -> dict[str, Any]:
    return {"label": label, "step": ctx.step, "attempt": ctx.attempt}


async def async_double(x: int) -> int:
    await asyncio.sleep(0.01)
    return 2 * x


async def async_sleep_then_touch(seconds: float, path: str) -> str:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        Path(path).write_text("cancelled")
        raise
    return "slept"


def boom() -> None:
    raise ValueError("no good")


def chatter(label: str, times: int = 20) -> str:
    """Print and write to both streams, pausing between lines so that steps running at
    the same time interleave (what a process-wide redirect would mix up)."""
    import sys
    import time

    for i in range(times):
        print(label, "line", i)
        sys.stderr.write(f"{label} err {i}\n")
        time.sleep(0.005)
    sys.stdout.write(f"{label} done")  # no newline: kept all the same
    return label


def mark_then_sleep(path: str, seconds: float) -> None:
    """Say that the step started (a file a test waits for), then ignore any cancel."""
    Path(path).write_text("started")
    time.sleep(seconds)
