"""``chordflow jit``: just-in-time tiers on the API: list them, show one's files in
least recently used order, change a capacity, post an event (an Argo workflow event
file as the replaced data-staging service received it, or plain JSON)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from chordflow.cli.connect import connect
from chordflow.cli.follow import report_started
from chordflow.cli.output import (
    CONTEXT,
    JsonOpt,
    cell,
    fail,
    note,
    print_json,
    print_table,
    say,
    when,
)
from chordflow.cli.runs_cmd import WaitOpt
from chordflow.client import ApiError, Client, Started
from pydantic import ByteSize, TypeAdapter, ValidationError

jit_app = typer.Typer(
    help="Just-in-time tiers (CHORDFLOW_JIT_TIERS): list, show a tier's files in LRU "
         "order, change its capacity, post an event that makes files present.",
    no_args_is_help=True, context_settings=CONTEXT,
)

TierArg = Annotated[str, typer.Argument(help="The tier's name.")]


def _bytes(value: Any) -> str:
    return ByteSize(int(value)).human_readable() if isinstance(value, int) else cell(value)


@jit_app.command("tiers")
def jit_tiers(as_json: JsonOpt = False) -> None:
    """List the tiers: primary, secondary, capacity, bytes used, files.

    Example: chordflow jit tiers
    """
    with connect() as api:
        body = api.call("GET", "/jit/tiers")
    if as_json:
        print_json(body)
        return
    if not body:
        note("no tiers (CHORDFLOW_JIT_TIERS is empty)")
        return
    print_table(["tier", "primary", "secondary", "capacity", "used", "files"],
                [[cell(t.get("name")), cell(t.get("primary")), cell(t.get("secondary")),
                  _bytes(t.get("capacity")), _bytes(t.get("used")), cell(t.get("files"))]
                 for t in body])


def _show_tier(body: dict[str, Any]) -> None:
    say(f"tier {body.get('name')}: {_bytes(body.get('used'))} used of "
        f"{_bytes(body.get('capacity'))} ({body.get('primary')} <- {body.get('secondary')})")
    files = body.get("files") or []
    if not files:
        note("no files")
        return
    print_table(["path", "size", "state", "last access", "held by"],
                [[cell(f.get("path")), _bytes(f.get("size")), cell(f.get("state")),
                  when(f.get("last_access")), ", ".join(f.get("holders") or []) or "-"]
                 for f in files])


@jit_app.command("show")
def jit_show(tier: TierArg, as_json: JsonOpt = False) -> None:
    """Show a tier: capacity, bytes used, its files least recently used first.

    Example: chordflow jit show fast
    """
    with connect() as api:
        body = api.call("GET", f"/jit/tiers/{tier}")
    if as_json:
        print_json(body)
    else:
        _show_tier(body)


@jit_app.command("capacity")
def jit_capacity(
    tier: TierArg,
    capacity: Annotated[str, typer.Argument(help="Bytes, or with a unit: 50GiB, 500MB.")],
    as_json: JsonOpt = False,
) -> None:
    """Change a tier's capacity now (an admin key); lowered below what it holds, a run
    evicts least recently used unheld files down to it.

    Example: chordflow jit capacity fast 200GiB
    """
    try:
        size = int(TypeAdapter(ByteSize).validate_python(capacity))
    except ValidationError:
        fail(f"capacity {capacity!r} is not a size (bytes, or 50GiB, 500MB, ...)")
    with connect() as api:
        body = api.call("PATCH", f"/jit/tiers/{tier}", body={"capacity": size})
    if as_json:
        print_json(body)
        return
    _show_tier(body)
    if body.get("trim_run_id"):
        note(f"run {body['trim_run_id']} evicts down to the new capacity")


def _post_event(api: Client, text: str, tier: str | None) -> dict[str, Any]:
    try:
        response = api.http.post("/jit/events", content=text.encode("utf-8"),
                                 params={"tier": tier} if tier else None,
                                 headers={"Content-Type": "text/plain; charset=utf-8"})
    except Exception as exc:  # noqa: BLE001 - httpx's transport errors, reported once
        import httpx

        if isinstance(exc, httpx.TransportError):
            raise ApiError.unreachable(api.url, exc) from None
        raise
    if response.is_error:
        raise ApiError.of(response)
    return dict(response.json())


@jit_app.command("event")
def jit_event(
    file: Annotated[str, typer.Argument(help="The event: a file (JSON or YAML, an Argo "
                                             "workflow event as it was logged), or - "
                                             "for standard input.")],
    tier: Annotated[str | None, typer.Option(
        help="The tier (else found from the event's endpoints and folders).")] = None,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Post an event: its files are made present on the tier's primary by a run of its
    own (a finished workflow's event releases its files). Prints the run id.

    Example: chordflow jit event ADD_workflow.json --wait
    """
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}")
    with connect() as api:
        accepted = _post_event(api, text, tier)
        if not as_json:
            note(f"tier {accepted.get('tier')}: {accepted.get('action')} of "
                 f"{accepted.get('files')} files ({accepted.get('event_type')} event)")
        report_started(api, Started({**accepted, "workflow": f"jit-{accepted.get('tier')}",
                                     "status": "running"}), wait, as_json)
