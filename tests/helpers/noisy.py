"""Functions the ``python`` module calls in the output-limit tests (tests.helpers.noisy)."""

from __future__ import annotations

from typing import Any


def log_many(count: int, ctx: Any) -> int:
    """Log ``count`` numbered messages: more than an attempt keeps."""
    for i in range(count):
        ctx.logger.info("message %d of %d", i, count)
    return count


def log_surrogate(ctx: Any) -> str:
    """Log text that has no UTF-8 encoding (half a surrogate pair): BSON refuses it."""
    ctx.logger.info("half a pair: \ud800")
    return "ok"
