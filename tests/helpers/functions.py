"""Functions the ``python`` module calls in tests (importable as tests.helpers...)."""

from __future__ import annotations

import asyncio
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
