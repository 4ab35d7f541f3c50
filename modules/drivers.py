"""Which driver connects to each connection type: what ``chordflow connections check``
and ``POST /api/v1/connections/{name}/check`` use to try a connection.

Imported on demand: a driver's library (PyMySQL, paramiko, kafka-python) is loaded only
when a connection of its type is checked.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import replace
from typing import Any

from chordflow.connections.catalog import Resolved
from chordflow.connections.pool import discard, open_first

#: connection type -> (module of chordflow.modules, the driver's name there)
DRIVERS: dict[str, tuple[str, str]] = {
    "mysql": ("mysql", "DRIVER"), "mongodb": ("mongodb", "DRIVER"), "ssh": ("ssh", "DRIVER"),
    "smtp": ("notify", "SMTP"), "http": ("notify", "HTTP"), "kafka": ("kafka", "PRODUCER"),
    "elasticsearch": ("elasticsearch", "DRIVER"), "pushgateway": ("prometheus", "PROBE"),
}


def driver_for(kind: str) -> Any:
    module, name = DRIVERS[kind]
    return getattr(importlib.import_module(f"chordflow.modules.{module}"), name)


#: A check tries each host once, for at most this many seconds each and in all: someone
#: is waiting for its answer (a connection's own retries are for steps).
CHECK_SECONDS = 10.0


def check(resolved: Resolved) -> dict[str, Any]:
    """Connect as a step would (hosts in order) and close again; ``{"ok": true,
    "connected_node"}`` or ``{"ok": false, "error"}``."""
    conn = resolved.connection
    once = replace(resolved, connection=conn.model_copy(update={
        "retry_count": 1, "timeout": min(conn.timeout, CHECK_SECONDS)}))
    driver = driver_for(conn.type)
    deadline = time.monotonic() + CHECK_SECONDS
    try:
        session = open_first(once, driver, lambda: deadline - time.monotonic())
    except Exception as exc:  # the answer is the report, whatever went wrong
        return {"ok": False, "error": str(exc)}
    discard(driver, session.client)
    return {"ok": True, "connected_node": session.node}
