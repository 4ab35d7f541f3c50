"""Drawing a plan: Mermaid flowchart text, optionally coloured by step status."""

from __future__ import annotations

from collections.abc import Mapping

from chordflow.engine.plan import Plan

_STATUS_STYLE = {
    "succeeded": "fill:#d4edda,stroke:#28a745",
    "failed": "fill:#f8d7da,stroke:#dc3545",
    "upstream_failed": "fill:#fde2c8,stroke:#fd7e14",
    "running": "fill:#cce5ff,stroke:#007bff",
    "queued": "fill:#e2e3ff,stroke:#6f42c1",
    "skipped": "fill:#eeeeee,stroke:#999999",
    "cancelled": "fill:#eeeeee,stroke:#343a40",
}


def mermaid(plan: Plan, statuses: Mapping[str, str] | None = None) -> str:
    """``flowchart TD`` text; node ids are positional so any step name is safe."""
    ids = {name: f"s{i}" for i, name in enumerate(plan.order)}
    lines = ["flowchart TD"]
    for name in plan.order:
        sp = plan.steps[name]
        label = f"{name}<br/><small>{sp.module}.{sp.method_name}</small>"
        if sp.step.foreach is not None:
            label += "<br/><small>foreach</small>"
        if sp.when is not None:
            label += "<br/><small>when</small>"
        shape = ("{{", "}}") if sp.when is not None else ("[", "]")
        lines.append(f'    {ids[name]}{shape[0]}"{_escape(label)}"{shape[1]}')
    for name in plan.order:
        for child in plan.steps[name].children:
            lines.append(f"    {ids[name]} --> {ids[child]}")
    if statuses:
        for name, status in statuses.items():
            if name in ids and status in _STATUS_STYLE:
                lines.append(f"    style {ids[name]} {_STATUS_STYLE[status]}")
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace('"', "#quot;")
