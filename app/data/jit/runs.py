"""An event as a chordflow run of its own: the one-step workflow that does what the
event asks, on the tier's queue, with the tier's retries and timeout.

The run is recorded, listed and followed like any other (``chordflow runs``, the API's
``/runs``; its workflow is ``jit-<tier>``), retried by the step's ``retries``, and
cancelled by ``chordflow cancel`` (rclone is killed, the reservations given back).
"""

from __future__ import annotations

from typing import Any

from chordflow.data.jit.events import EventInvalid, JitEvent
from chordflow.data.jit.tiers import Tier

#: The trigger recorded on event runs (``chordflow runs`` shows it).
TRIGGER = "jit-event"


def _literal(text: str) -> str:
    """``text`` as a literal param value: a path holding ``${`` is not a reference."""
    return text.replace("${", "$${")


def event_workflow(tier: Tier, event: JitEvent) -> dict[str, Any]:
    """The workflow document of ``event``'s run on ``tier``."""
    source = (f"Argo {event.type} event of workflow {event.workflow}"
              if event.type != "JSON" else "an event")
    if event.finished:
        if not event.holder:
            raise EventInvalid("a finished workflow's event releases that workflow's "
                               "files, and this one names no workflow (metadata.uid or "
                               "metadata.name; a plain event's 'workflow')",
                               "metadata.uid" if event.type != "JSON" else "workflow")
        step: dict[str, Any] = {
            "name": "release", "module": "jit", "method": "release",
            "params": {"tier": tier.name, "holder": _literal(event.holder)},
            "retries": tier.retries, "retry_delay": tier.retry_delay}
        what = f"release the files of {event.holder} on tier {tier.name}"
    else:
        if not event.files:
            raise EventInvalid("the event lists no files", "files")
        params: dict[str, Any] = {"tier": tier.name,
                                  "files": [_literal(f) for f in event.files]}
        if event.holder:
            params["holder"] = _literal(event.holder)
        step = {"name": "replicate", "module": "jit", "method": "replicate",
                "params": params, "retries": tier.retries, "retry_delay": tier.retry_delay,
                "timeout": tier.copy_timeout}
        what = f"make {len(event.files)} files present on tier {tier.name}"
    if tier.queue:
        step["queue"] = tier.queue
    return {"name": f"jit-{tier.name}", "description": f"{what} ({source})"[:500],
            "steps": [step]}


def trim_workflow(tier: Tier) -> dict[str, Any]:
    """The run that evicts until ``tier`` fits its (lowered) capacity."""
    step: dict[str, Any] = {"name": "trim", "module": "jit", "method": "trim",
                            "params": {"tier": tier.name}, "retries": tier.retries,
                            "retry_delay": tier.retry_delay, "timeout": tier.copy_timeout}
    if tier.queue:
        step["queue"] = tier.queue
    return {"name": f"jit-{tier.name}",
            "description": f"evict until tier {tier.name} fits its capacity",
            "steps": [step]}
