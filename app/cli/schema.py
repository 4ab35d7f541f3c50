"""``chordflow schema``: the canonical workflow format as JSON Schema.

For editors (YAML and JSON language servers complete and check a workflow file
against it) and for generating clients; the API's ``/openapi.json`` holds the same
schema as its ``Workflow`` component.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def schema(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the schema to this file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of the canonical workflow format (shape and option values;
    modules, params and references are checked by ``chordflow validate``)."""
    from chordflow.workflow.models import workflow_json_schema

    text = json.dumps(workflow_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
