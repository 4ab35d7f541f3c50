"""``chordflow schedules``: scheduled runs of stored workflows on the API (cron or every
N seconds), fired by ``chordflow worker --beat``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from chordflow.cli.connect import connect
from chordflow.cli.follow import report_started
from chordflow.cli.output import (
    CONTEXT,
    JsonOpt,
    VarOpt,
    cell,
    fail,
    fields,
    note,
    parse_vars,
    print_json,
    print_table,
    say,
    when,
)
from chordflow.cli.runs_cmd import WaitOpt

schedules_app = typer.Typer(
    help="Scheduled runs of stored workflows (cron or every N seconds): list, create, "
         "show, pause, resume, delete, trigger now. Fired by 'chordflow worker --beat'.",
    no_args_is_help=True, context_settings=CONTEXT,
)

ScheduleIdArg = Annotated[str, typer.Argument(help="The schedule's id.")]


def _entries(body: Any) -> list[Mapping[str, Any]]:
    if isinstance(body, Mapping):
        body = body.get("schedules")
    return [e for e in body if isinstance(e, Mapping)] if isinstance(body, list) else []


def _trigger(body: Mapping[str, Any]) -> str:
    if body.get("cron"):
        zone = body.get("timezone") or "UTC"
        return f"cron {body['cron']}" + ("" if zone == "UTC" else f" ({zone})")
    seconds = body.get("interval_seconds")
    return f"every {seconds:g}s" if isinstance(seconds, int | float) else ""


def _show(verb: str, body: Any) -> None:
    if not isinstance(body, Mapping):
        fields(body)
        return
    state = "" if body.get("enabled", True) else ", paused"
    say(f"{verb} schedule {body.get('id')}: {body.get('workflow')} {_trigger(body)}{state}")


@schedules_app.command("list")
def schedules_list(
    workflow: Annotated[str | None, typer.Option(
        help="Only the schedules of this stored workflow.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List schedules with their trigger, state and next run.

    Example: chordflow schedules list --workflow etl
    """
    with connect() as api:
        body = api.list_schedules(workflow)
    if as_json:
        print_json(body)
        return
    entries = _entries(body)
    if not entries:
        note("no schedules")
        return
    print_table(["id", "workflow", "trigger", "enabled", "next run", "last run", "last run id"],
                [[cell(e.get("id")), cell(e.get("workflow")), _trigger(e),
                  cell(e.get("enabled")), when(e.get("next_run_at")),
                  when(e.get("last_run_at")), cell(e.get("last_run_id"))] for e in entries])


@schedules_app.command("create")
def schedules_create(
    name: Annotated[str, typer.Argument(help="The stored workflow's name.")],
    cron: Annotated[str | None, typer.Option(
        "--cron", help="A cron expression, e.g. '*/15 * * * *', or '@hourly'.")] = None,
    every: Annotated[float | None, typer.Option(
        "--every", help="Run every this many seconds.")] = None,
    var: VarOpt = None,
    version: Annotated[int | None, typer.Option(
        min=1, help="Run this version (default: the latest at each run).")] = None,
    timezone: Annotated[str, typer.Option(
        help="IANA time zone of the cron expression.")] = "UTC",
    paused: Annotated[bool, typer.Option(
        "--paused", help="Create it paused (resume it to start).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Schedule runs of a stored workflow: --cron EXPR or --every SECONDS.

    Example: chordflow schedules create etl --cron '0 6 * * *' --timezone Europe/Paris
    """
    if (cron is None) == (every is None):
        fail("give exactly one of --cron and --every")
    variables = parse_vars(var)
    with connect() as api:
        created = api.create_schedule(name, cron=cron, every=every, variables=variables,
                                      version=version, timezone=timezone,
                                      enabled=not paused)
    if as_json:
        print_json(created)
    else:
        _show("created", created)


@schedules_app.command("show")
def schedules_show(schedule_id: ScheduleIdArg, as_json: JsonOpt = False) -> None:
    """Show a schedule: trigger, variables, next and last runs.

    Example: chordflow schedules show 6650f1...
    """
    with connect() as api:
        body = api.get_schedule(schedule_id)
    if as_json:
        print_json(body)
        return
    fields(body)
    if isinstance(body, Mapping) and body.get("variables"):
        say(f"variables: {json.dumps(body['variables'])}")


def _set_enabled(schedule_id: str, enabled: bool, as_json: bool) -> None:
    with connect() as api:
        body = api.update_schedule(schedule_id, enabled=enabled)
    if as_json:
        print_json(body)
    else:
        _show("resumed" if enabled else "paused", body)


@schedules_app.command("pause")
def schedules_pause(schedule_id: ScheduleIdArg, as_json: JsonOpt = False) -> None:
    """Stop starting runs (runs under way go on) until the schedule is resumed.

    Example: chordflow schedules pause 6650f1...
    """
    _set_enabled(schedule_id, False, as_json)


@schedules_app.command("resume")
def schedules_resume(schedule_id: ScheduleIdArg, as_json: JsonOpt = False) -> None:
    """Start runs again; the next one is computed from now (missed ones are skipped).

    Example: chordflow schedules resume 6650f1...
    """
    _set_enabled(schedule_id, True, as_json)


@schedules_app.command("delete")
def schedules_delete(schedule_id: ScheduleIdArg, as_json: JsonOpt = False) -> None:
    """Delete a schedule (the runs it started are kept).

    Example: chordflow schedules delete 6650f1...
    """
    with connect() as api:
        body = api.delete_schedule(schedule_id)
    if as_json:
        print_json(body)
    else:
        say(f"deleted schedule {schedule_id}")


@schedules_app.command("trigger")
def schedules_trigger(
    schedule_id: ScheduleIdArg,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a schedule's workflow now; print the run id, or with --wait follow it.

    Example: chordflow schedules trigger 6650f1... --wait
    """
    with connect() as api:
        report_started(api, api.trigger_schedule(schedule_id), wait, as_json)
