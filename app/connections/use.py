"""What a step module calls to talk to its step's connection.

``run_on(ctx, driver, fn)`` resolves the step's ``connection:`` (a name, or an inline
definition) with the worker's catalog and secrets, borrows a client of that
connection's pool on this process and runs ``fn`` with it, failing over and
reconnecting as ``chordflow.connections.pool`` describes. Errors name the step's
``connection`` field; the credentials' values are masked in them by the engine, like
every secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from chordflow.connections.catalog import ConnectionInvalid, ConnectionMissing, Resolved
from chordflow.connections.pool import Driver, Pool, Session, pool_for
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext

C = TypeVar("C")
T = TypeVar("T")


def resolved_connection(ctx: StepContext, types: tuple[str, ...],
                        fallback: Mapping[str, Any] | None = None) -> Resolved:
    """The step's connection with its credentials, of one of ``types``.

    ``fallback``: an inline definition built from the method's own params (notify's
    ``smtp_host``), used when the step names no connection.
    """
    ref = ctx.connection if ctx.connection is not None else fallback
    if ref is None:
        raise ConnectionMissing(
            f"step '{ctx.step}': this method needs a connection; name one in the step's "
            f"'connection' field (a connection of type {' or '.join(types)})")
    if ctx.connections is None:
        if isinstance(ref, str):
            raise ConnectionMissing(f"step '{ctx.step}', field 'connection': connection "
                                    f"'{ref}' is not defined (no connections here)")
        from chordflow.connections.catalog import Catalog

        resolver: Callable[[str | Mapping[str, Any]], Resolved] = \
            lambda r: Catalog().resolve(r, ctx.secrets)  # noqa: E731
    else:
        resolver = ctx.connections
    try:
        resolved = resolver(ref)
    except StepFailed as exc:
        raise type(exc)(f"step '{ctx.step}', field 'connection': {exc}") from None
    if resolved.connection.type not in types:
        raise ConnectionInvalid(
            f"step '{ctx.step}', field 'connection': connection '{resolved.name}' is of "
            f"type {resolved.connection.type}; this method needs {' or '.join(types)}")
    return resolved


def step_pool(ctx: StepContext, driver: Driver[C],
              fallback: Mapping[str, Any] | None = None) -> Pool[C]:
    """This process's pool for the step's connection."""
    return pool_for(resolved_connection(ctx, driver.types, fallback), driver)


def run_on(ctx: StepContext, driver: Driver[C], fn: Callable[[Session[C]], T],
           fallback: Mapping[str, Any] | None = None) -> T:
    """``fn`` with a client of the step's connection (see the module's docstring)."""
    ctx.check()
    return step_pool(ctx, driver, fallback).run(fn, ctx.remaining)


def operation_timeout(ctx: StepContext, given: float | None, default: float) -> float:
    """Seconds one network operation may take: the method's ``timeout`` (else
    ``default``), never past the step's own deadline."""
    limit = given if given is not None else default
    left = ctx.remaining()
    return limit if left is None else max(0.1, min(limit, left))
