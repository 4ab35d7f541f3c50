"""The workflow formats of the systems chordflow replaces, converted on load.

Each dialect module turns a parsed document into the canonical form (a plain dict that
``Workflow`` validates). Detection looks at the top-level keys only:

- ``procedures`` (or the older ``tasks``): the JSON-procedure automation platform;
  see :mod:`chordflow.workflow.dialects.procedures`.
- ``workflow_name`` or steps with ``step_name``: the bioinformatics DAG engine; see
  :mod:`chordflow.workflow.dialects.dag_engine`.
- anything else: canonical.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chordflow.workflow.dialects import dag_engine, procedures

CANONICAL = "canonical"


def detect(data: Mapping[str, Any]) -> str:
    if "procedures" in data or ("tasks" in data and "steps" not in data):
        return procedures.NAME
    if "workflow_json" in data or "workflow_name" in data:
        return dag_engine.NAME
    steps = data.get("steps")
    if isinstance(steps, list) and any(isinstance(s, Mapping) and "step_name" in s
                                       for s in steps):
        return dag_engine.NAME
    return CANONICAL


def to_canonical(data: Mapping[str, Any], name_hint: str | None = None,
                 environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Convert any supported dialect to the canonical form (canonical passes through).

    ``environ``: the environment variables a document's ``${NAME}`` may read (the DAG
    engine's dialect); none by default.
    """
    dialect = detect(data)
    if dialect == procedures.NAME:
        return procedures.convert(data, name_hint)
    if dialect == dag_engine.NAME:
        return dag_engine.convert(data, environ)
    return dict(data)
