"""``chordflow backup`` and ``chordflow restore``: the deployment's catalog as a ZIP.

Through the API (``CHORDFLOW_API_URL``, an admin's ``CHORDFLOW_API_KEY``): ``GET
/api/v1/backup`` and ``POST /api/v1/restore`` (chordflow.api.backup says what a backup
holds and what a restore does: it never deletes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from chordflow.cli.connect import connect
from chordflow.cli.output import EXIT_FAILED, JsonOpt, fail, print_json, say
from chordflow.client import ApiError

SectionsOpt = Annotated[str | None, typer.Option(
    "--sections", "-s", help="Comma-separated: workflows, schedules, connections, "
                             "modules (default: all).")]


def _send(api: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        response: httpx.Response = api.http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise ApiError.unreachable(api.url, exc) from None
    if response.is_error:
        raise ApiError.of(response)
    return response


def backup(
    output: Annotated[Path, typer.Argument(help="Where to write the ZIP file.")],
    sections: SectionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download a backup: stored workflows (every version), schedules, connections (no
    credential) and module files, as one ZIP. Needs an admin key.

    Example: chordflow backup catalog.zip --sections workflows,schedules
    """
    with connect() as api:
        params = {"sections": sections} if sections else None
        data = _send(api, "GET", "/backup", params=params, timeout=300).content
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = output.with_name(f".{output.name}.part")
    temp.write_bytes(data)
    temp.replace(output)
    if as_json:
        print_json({"path": str(output), "bytes": len(data)})
    else:
        say(f"wrote {output} ({len(data):,} bytes)")


def restore(
    archive: Annotated[Path, typer.Argument(help="A backup ZIP (chordflow backup), or "
                                                 "the replaced platform's.")],
    sections: SectionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore a backup: creates what is missing, adds a version where a workflow
    differs, never deletes. Needs an admin key. Exit 1 if some part failed.

    Example: chordflow restore catalog.zip --sections workflows
    """
    if not archive.is_file():
        fail(f"{archive}: no such file")
    with connect() as api:
        params = {"sections": sections} if sections else None
        report = _send(api, "POST", "/restore", content=archive.read_bytes(), params=params,
                       headers={"Content-Type": "application/zip"}, timeout=300).json()
    if as_json:
        print_json(report)
    else:
        for section, outcomes in report.get("restored", {}).items():
            counts = ", ".join(f"{len(names)} {outcome}" for outcome, names in outcomes.items())
            say(f"{section}: {counts}")
        for error in report.get("errors", []):
            say(f"error: {error}")
    if report.get("errors"):
        raise typer.Exit(EXIT_FAILED)


COMMANDS = (backup, restore)
