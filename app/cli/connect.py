"""The API client as the CLI uses it: its errors end the command with exit 2 and one
line (no traceback), and an API that cannot be reached at the default address says
which variables point the CLI at the right one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from chordflow.cli.output import EXIT_INTERRUPTED, fail
from chordflow.client import ApiError, Client


def hint(exc: ApiError) -> str:
    """The error's message; when no API answered and CHORDFLOW_API_URL is unset (so the
    default address was tried), what to set instead."""
    from chordflow.config import get_settings

    settings = get_settings()
    if exc.status is None and exc.code == "unreachable" and not settings.api_url:
        return (f"cannot reach {settings.api_base_url}: set CHORDFLOW_API_URL to the "
                "API's address (and CHORDFLOW_API_KEY)")
    return exc.message


@contextmanager
def connect() -> Iterator[Client]:
    """A client of the configured API (CHORDFLOW_API_URL, CHORDFLOW_API_KEY)."""
    try:
        with Client.from_settings(user_agent="chordflow-cli") as api:
            yield api
    except ApiError as exc:
        fail(hint(exc))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
