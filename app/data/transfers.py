"""Ad hoc transfers: one rclone operation as a run of its own.

``POST /api/v1/transfers`` and ``chordflow transfer SRC DEST`` build the same one-step
workflow, ``transfer``, whose only step (also ``transfer``) is the ``rclone`` module's
method with the given params: recorded, visible in ``chordflow runs``, retried,
cancellable and followed like any run, for those who only ever moved data with the
replaced data-staging service. The params are checked as any step's are, so a bad one
is refused before anything runs, naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The rclone module's methods a transfer may run.
METHODS = ("copy", "copyto", "sync", "move", "delete", "purge", "mkdir", "lsjson", "size",
           "check", "hashsum")
#: The name of the workflow (and of its step) a transfer runs as.
NAME = "transfer"
#: Retries of a transfer unless told: rclone continues where a failed attempt stopped.
DEFAULT_RETRIES = 2


def transfer_document(method: str, params: Mapping[str, Any], *,
                      retries: int = DEFAULT_RETRIES, retry_delay: float | None = None,
                      timeout: float | None = None, queue: str | None = None) -> dict[str, Any]:
    """The workflow document of one transfer (params without None values)."""
    step: dict[str, Any] = {"name": NAME, "module": "rclone", "method": method,
                            "params": {k: v for k, v in params.items() if v is not None},
                            "retries": retries}
    if retry_delay is not None:
        step["retry_delay"] = retry_delay
    if timeout is not None:
        step["timeout"] = timeout
    if queue is not None:
        step["queue"] = queue
    return {"name": NAME, "version": "1", "steps": [step],
            "outputs": {"result": f"${{steps.{NAME}.outputs}}"}}
