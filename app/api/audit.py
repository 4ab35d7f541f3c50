"""The audit log: who changed what, when, and from where.

Every endpoint that changes something records one entry after the change succeeded
(a refused request changed nothing). Admins read it at ``GET /api/v1/audit``.
"""

from __future__ import annotations

from typing import Any

from chordflow.api.security import Principal
from chordflow.engine.records import now
from fastapi import Request
from pymongo.database import Database


class AuditLog:
    def __init__(self, db: Database[Any]):
        self.collection = db["audit"]

    def record(self, request: Request, principal: Principal, action: str,
               target: str | None = None, **details: Any) -> None:
        self.collection.insert_one({
            "ts": now(), "key_id": principal.key_id, "who": principal.name,
            "role": str(principal.role), "action": action, "target": target,
            "method": request.method, "path": request.url.path,
            "client": request.client.host if request.client else None,
            "details": details or None,
        })

    def entries(self, limit: int = 100, before: float | None = None) -> list[dict[str, Any]]:
        query = {} if before is None else {"ts": {"$lt": before}}
        docs = self.collection.find(query).sort("ts", -1).limit(limit)
        return [{k: v for k, v in doc.items() if k != "_id"} for doc in docs]


def audit(request: Request, principal: Principal, action: str, target: str | None = None,
          **details: Any) -> None:
    """Record a change made through ``request`` (see AuditLog.record)."""
    request.app.state.audit.record(request, principal, action, target, **details)
