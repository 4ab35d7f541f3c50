"""Named connections: definitions (models), where they come from (catalog), per-process
pools with failover (pool) and what step modules call (use). See docs/connections.md."""

from chordflow.connections.catalog import (
    Catalog,
    ConnectionConflict,
    ConnectionInvalid,
    ConnectionMissing,
    Resolved,
)
from chordflow.connections.models import CONNECTION_TYPES, Connection, Host, parse_connections

__all__ = [
    "CONNECTION_TYPES",
    "Catalog",
    "Connection",
    "ConnectionConflict",
    "ConnectionInvalid",
    "ConnectionMissing",
    "Host",
    "Resolved",
    "parse_connections",
]
