"""What one attempt of a step came to, before it is recorded.

Kept as a value apart from recording it, because recording can have to wait for the
store: past the store's patience, an executor sends the outcome back through the
broker (``TaskMessage.outcome``) to be recorded later, rather than run the step again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["succeeded", "failed", "cancelled", "crashed", "waiting"]


@dataclass
class Outcome:
    #: ``crashed``: the module raised something other than StepFailed (a bug, say).
    status: Status
    outputs: dict[str, Any] | None = None
    error: str | None = None
    #: A failure that retrying cannot mend (the module is not installed here).
    final: bool = False
    #: What the attempt printed and logged, not yet stored: (time, stream, text).
    captured: list[tuple[float, str, str]] = field(default_factory=list)
    #: ``waiting`` (the module raised StepWaiting): seconds until the method runs again,
    #: and the state it gets back then (app/engine/waiting.py).
    wait: float = 0.0
    state: dict[str, Any] | None = None

    def to_message(self) -> dict[str, Any]:
        """As JSON, for a task message."""
        return {"status": self.status, "outputs": self.outputs, "error": self.error,
                "final": self.final, "captured": [list(c) for c in self.captured],
                "wait": self.wait, "state": self.state}

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> Outcome:
        return cls(status=data["status"], outputs=data.get("outputs"),
                   error=data.get("error"), final=bool(data.get("final")),
                   captured=[(float(ts), str(stream), str(text))
                             for ts, stream, text in data.get("captured") or ()],
                   wait=float(data.get("wait") or 0.0), state=data.get("state"))
