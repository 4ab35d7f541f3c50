"""``chordflow workflows``: stored workflows on the API (create, update, show, list,
versions, diff, rename, enable/disable, delete, run)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Annotated, Any

import typer
import yaml
from chordflow.cli.connect import connect
from chordflow.cli.follow import report_started
from chordflow.cli.output import (
    CONTEXT,
    FileArg,
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
from chordflow.cli.runs_cmd import IdempotencyOpt, WaitOpt, read_document

workflows_app = typer.Typer(
    help="Stored workflows on the API: create, update (new versions), run, rename, "
         "enable/disable, delete, versions and diffs.",
    no_args_is_help=True, context_settings=CONTEXT,
)

NameArg = Annotated[str, typer.Argument(help="The stored workflow's name.")]


def _entries(body: Any, key: str) -> list[Any]:
    """The list in ``body`` (``{key: [...]}`` or a bare list)."""
    if isinstance(body, Mapping):
        body = body.get(key)
    return list(body) if isinstance(body, list) else []


def _show_entry(verb: str, body: Any) -> None:
    if isinstance(body, Mapping):
        version = f" (version {body['version']})" if body.get("version") is not None else ""
        say(f"{verb} workflow {body.get('name')}{version}")
    else:
        fields(body)


@workflows_app.command("list")
def workflows_list(
    show_all: Annotated[bool, typer.Option("--all", help="Include deleted ones.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List stored workflows with their latest version.

    Example: chordflow workflows list --all
    """
    with connect() as api:
        body = api.list_workflows(include_deleted=show_all)
    if as_json:
        print_json(body)
        return
    entries = _entries(body, "workflows")
    if not entries:
        note("no stored workflows")
        return
    keys = ["name", "version", "enabled", "updated_at", "created_by"]
    if show_all:
        keys.insert(3, "deleted")
    print_table([k.replace("_at", "").replace("_", " ") for k in keys],
                [[when(e.get(k)) if k.endswith("_at") else cell(e.get(k)) for k in keys]
                 for e in entries if isinstance(e, Mapping)])


@workflows_app.command("show")
def workflows_show(
    name: NameArg,
    version: Annotated[int | None, typer.Option(
        help="This version (default: the latest).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a stored workflow and its document (as YAML).

    Example: chordflow workflows show etl --version 2
    """
    with connect() as api:
        body = api.get_workflow(name, version)
    if as_json:
        print_json(body)
        return
    fields(body)
    document = body.get("document") if isinstance(body, Mapping) else None
    if document is not None:
        say("document:")
        sys.stdout.flush()
        sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


@workflows_app.command("create")
def workflows_create(file: FileArg, as_json: JsonOpt = False) -> None:
    """Store a new workflow (named by its document) as version 1.

    Example: chordflow workflows create etl.yaml
    """
    document = read_document(file)
    with connect() as api:
        body = api.create_workflow(document)
    if as_json:
        print_json(body)
    else:
        _show_entry("created", body)


@workflows_app.command("update")
def workflows_update(name: NameArg, file: FileArg, as_json: JsonOpt = False) -> None:
    """Store a file as the next version of a workflow (every version is kept).

    Example: chordflow workflows update etl etl.yaml
    """
    document = read_document(file)
    with connect() as api:
        body = api.update_workflow(name, document)
    if as_json:
        print_json(body)
    else:
        _show_entry("updated", body)


@workflows_app.command("delete")
def workflows_delete(name: NameArg, as_json: JsonOpt = False) -> None:
    """Delete a workflow: no longer listed or runnable, its versions kept.

    Example: chordflow workflows delete etl
    """
    with connect() as api:
        body = api.delete_workflow(name)
    if as_json:
        print_json(body)
    else:
        say(f"deleted workflow {name}")


@workflows_app.command("rename")
def workflows_rename(
    name: NameArg,
    new_name: Annotated[str, typer.Argument(help="The new name.")],
    as_json: JsonOpt = False,
) -> None:
    """Rename a workflow; its versions and history follow it.

    Example: chordflow workflows rename etl etl-daily
    """
    with connect() as api:
        body = api.rename_workflow(name, new_name)
    if as_json:
        print_json(body)
    else:
        say(f"renamed workflow {name} to {new_name}")


def _set_enabled(name: str, enabled: bool, as_json: bool) -> None:
    with connect() as api:
        body = api.enable_workflow(name) if enabled else api.disable_workflow(name)
    if as_json:
        print_json(body)
    else:
        say(f"workflow {name}: {'enabled' if enabled else 'disabled'}")


@workflows_app.command("enable")
def workflows_enable(name: NameArg, as_json: JsonOpt = False) -> None:
    """Allow runs of a workflow again.

    Example: chordflow workflows enable etl
    """
    _set_enabled(name, True, as_json)


@workflows_app.command("disable")
def workflows_disable(name: NameArg, as_json: JsonOpt = False) -> None:
    """Refuse new runs of a workflow until it is enabled (runs under way go on).

    Example: chordflow workflows disable etl
    """
    _set_enabled(name, False, as_json)


@workflows_app.command("versions")
def workflows_versions(name: NameArg, as_json: JsonOpt = False) -> None:
    """List a workflow's versions, oldest first.

    Example: chordflow workflows versions etl
    """
    with connect() as api:
        body = api.versions(name)
    if as_json:
        print_json(body)
        return
    print_table(["version", "digest", "created", "created by"],
                [[cell(e.get("version")), str(e.get("digest") or "").split(":")[-1][:12],
                  when(e.get("created_at")), cell(e.get("created_by"))]
                 for e in _entries(body, "versions") if isinstance(e, Mapping)])


VersionOpt = Annotated[int | None, typer.Option(min=1, show_default=False)]


@workflows_app.command("diff")
def workflows_diff(
    name: NameArg,
    older: Annotated[int | None, typer.Argument(
        help="Same as --from (kept for scripts).", show_default=False)] = None,
    newer: Annotated[int | None, typer.Argument(
        help="Same as --to.", show_default=False)] = None,
    from_version: Annotated[int | None, typer.Option(
        "--from", min=1, help="The older version (default: the one before --to).",
        show_default=False)] = None,
    to_version: Annotated[int | None, typer.Option(
        "--to", min=1, help="The newer version (default: the latest).",
        show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed between two versions: a summary by step, then a unified diff.

    Example: chordflow workflows diff etl --from 1 --to 3
    """
    if older is not None and from_version is not None or \
            newer is not None and to_version is not None:
        fail("give each version once: positionally or with --from/--to")
    from_version = from_version if from_version is not None else older
    to_version = to_version if to_version is not None else newer
    with connect() as api:
        body = api.diff(name, from_version, to_version)
    if as_json:
        print_json(body)
        return
    if not isinstance(body, Mapping):
        fields(body)
        return
    versions = f"versions {body.get('from_version')} and {body.get('to_version')}"
    if body.get("identical"):
        say(f"{name}: {versions} are identical")
        return
    say(f"{name}: {versions}")
    summary = body.get("summary")
    if isinstance(summary, Mapping):
        for key in ("added", "removed", "workflow_fields"):
            if summary.get(key):
                say(f"  {key.replace('_', ' ')}: {', '.join(map(str, summary[key]))}")
        for change in summary.get("changed") or []:
            if isinstance(change, Mapping):
                changed = ", ".join(map(str, change.get("fields") or []))
                say(f"  changed: {change.get('step')} ({changed})")
    if body.get("diff"):
        sys.stdout.flush()
        sys.stdout.write(str(body["diff"]))


@workflows_app.command("run")
def workflows_run(
    name: NameArg,
    var: VarOpt = None,
    version: Annotated[int | None, typer.Option(
        min=1, help="Run this version (default: the latest).")] = None,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
    idempotency_key: IdempotencyOpt = None,
) -> None:
    """Run a stored workflow; print the run id, or with --wait follow it.

    Example: chordflow workflows run etl -e day=2024-05-01 --wait
    """
    variables = parse_vars(var)
    with connect() as api:
        report_started(api, api.run_workflow(name, variables, version, idempotency_key),
                       wait, as_json)
