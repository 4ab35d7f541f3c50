"""The data plane from the shell: ``remotes list|check NAME`` and ``transfer SRC DEST``.

Both go through the API when ``CHORDFLOW_API_URL`` is set (the deployment's remotes, as
the workers see them), else work on this machine with its own settings (its
``CHORDFLOW_REMOTES`` and ``CHORDFLOW_RCLONE_CONFIG``): ``transfer`` then runs embedded,
in this process, as ``chordflow run`` does. ``--local`` forces this machine.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
import yaml
from chordflow.cli.output import (
    CONTEXT,
    EXIT_FAILED,
    EXIT_OK,
    JsonOpt,
    exit_code,
    fail,
    print_json,
    print_summary,
    print_table,
    say,
)

remotes_app = typer.Typer(help="The deployment's rclone remotes (never their credentials).",
                          no_args_is_help=True, context_settings=CONTEXT)

LocalOpt = Annotated[bool, typer.Option(
    "--local", help="This machine's settings, even with CHORDFLOW_API_URL set.")]


def _through_api(local: bool) -> bool:
    from chordflow.config import get_settings

    return not local and bool(get_settings().api_url)


def _local_remotes() -> Any:
    from chordflow.data.remotes import RemoteConfigError, Remotes

    try:
        return Remotes.from_settings()
    except RemoteConfigError as exc:
        fail(str(exc))


@remotes_app.command("list")
def list_remotes(as_json: JsonOpt = False, local: LocalOpt = False) -> None:
    """List the remotes: name, type, provider, and where each is defined.

    Example: chordflow remotes list --json
    """
    if _through_api(local):
        from chordflow.cli.connect import connect

        with connect() as api:
            found = api.list_remotes()
    else:
        from chordflow.data.binary import RcloneError

        try:
            found = [r.public() for r in _local_remotes().listing()]
        except RcloneError as exc:
            fail(str(exc))
    if as_json:
        print_json({"remotes": found})
        return
    if not found:
        say("no remotes (set CHORDFLOW_REMOTES or CHORDFLOW_RCLONE_CONFIG)")
        return
    print_table(["name", "type", "provider", "source"],
                [[str(r.get("name")), str(r.get("type")), str(r.get("provider") or ""),
                  str(r.get("source"))] for r in found])


@remotes_app.command("check")
def check_remote(
    name: Annotated[str, typer.Argument(help="The remote's name.")],
    path: Annotated[str, typer.Option(help="A path in it to list (a bucket).")] = "",
    as_json: JsonOpt = False, local: LocalOpt = False,
) -> None:
    """Say whether a remote answers (exit 0) or not (exit 1, with rclone's error).

    Example: chordflow remotes check archive --path bucket
    """
    if _through_api(local):
        from chordflow.cli.connect import connect

        with connect() as api:
            answer = api.check_remote(name, path)
    else:
        from chordflow.data.binary import RcloneError
        from chordflow.data.probe import probe
        from chordflow.data.remotes import RemoteConfigError

        try:
            answer = probe(_local_remotes(), name, path)
        except (RemoteConfigError, RcloneError) as exc:
            fail(str(exc))
    if as_json:
        print_json(answer)
    elif answer.get("reachable"):
        say(f"{name} ({answer.get('type')}): reachable ({answer.get('elapsed')}s)")
    else:
        say(f"{name} ({answer.get('type')}): unreachable: {answer.get('error')}")
    raise typer.Exit(EXIT_OK if answer.get("reachable") else EXIT_FAILED)


#: The methods that take one location (``path``) rather than ``source`` and ``dest``.
ONE_PATH = ("delete", "purge", "mkdir", "lsjson", "size", "hashsum")


def transfer(
    source: Annotated[str, typer.Argument(help="'REMOTE:path' or a local path (for "
                                               "delete, purge, mkdir, lsjson, size, "
                                               "hashsum: the path).")],
    dest: Annotated[str | None, typer.Argument(help="'REMOTE:path' or a local path.")] = None,
    method: Annotated[str, typer.Option(
        "--method", "-m", help="copy, copyto, sync, move, check, delete, purge, mkdir, "
                               "lsjson, size or hashsum.")] = "copy",
    include: Annotated[list[str] | None, typer.Option(
        help="An rclone filter pattern of files to take (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        help="An rclone filter pattern of files to leave out (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would "
                                                            "change.")] = False,
    checksum: Annotated[bool, typer.Option(help="Compare by hash, not time.")] = False,
    flag: Annotated[list[str] | None, typer.Option(
        "--flag", metavar="NAME=VALUE",
        help="An rclone flag of the module's fixed set (transfers=8, bwlimit=10M); "
             "repeatable.")] = None,
    retries: Annotated[int, typer.Option(min=0, max=100, help="Retries of the run's "
                                                              "step.")] = 2,
    timeout: Annotated[float | None, typer.Option(min=0.001, help="Seconds.")] = None,
    queue: Annotated[str | None, typer.Option(help="The workers' queue.")] = None,
    wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="Follow the run to its end (the default).")] = True,
    as_json: JsonOpt = False, local: LocalOpt = False,
) -> None:
    """Run one rclone operation as a one-step run (the workflow 'transfer').

    Through the API when CHORDFLOW_API_URL is set, else here, embedded. Exit 0 if it
    succeeded, 1 if it failed, 2 if it was refused.

    Example: chordflow transfer archive:bucket/in /data/in --include '*.csv' --flag transfers=8
    """
    from chordflow.data.transfers import METHODS, transfer_document

    if method not in METHODS:
        fail(f"--method {method!r}: one of {', '.join(METHODS)}")
    if method in ONE_PATH:
        if dest is not None:
            fail(f"{method} takes one location, got two ({source!r}, {dest!r})")
        params: dict[str, Any] = {"path": source}
    else:
        if dest is None:
            fail(f"{method} needs a source and a dest")
        params = {"source": source, "dest": dest, "checksum": checksum or None}
    params.update({"include": include or None, "exclude": exclude or None,
                   "dry_run": dry_run or None, "flags": _flags(flag) or None})
    # A param the method does not take is refused by validation, naming it.
    if _through_api(local):
        _transfer_api(method, params, retries, timeout, queue, wait, as_json)
        return
    document = transfer_document(method, params, retries=retries, timeout=timeout,
                                 queue=queue)
    _transfer_here(document, as_json)


def _flags(pairs: list[str] | None) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            fail(f"--flag expects NAME=VALUE, got {pair!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        flags[key.replace("-", "_")] = value if isinstance(value, bool | int | float) \
            else raw
    return flags


def _transfer_api(method: str, params: dict[str, Any], retries: int,
                  timeout: float | None, queue: str | None, wait: bool,
                  as_json: bool) -> None:
    from chordflow.cli.connect import connect
    from chordflow.cli.follow import report_started

    body = {"method": method, "retries": retries, "timeout": timeout, "queue": queue,
            **{k: v for k, v in params.items() if v is not None}}
    with connect() as api:
        report_started(api, api.transfer({k: v for k, v in body.items() if v is not None}),
                       wait, as_json)


def _transfer_here(document: dict[str, Any], as_json: bool) -> None:
    from chordflow.cli.local_cmd import _run_embedded
    from chordflow.engine.plan import compile_plan
    from chordflow.errors import ValidationFailed
    from chordflow.modules.registry import default_registry
    from chordflow.workflow.loader import load_data

    try:
        plan = compile_plan(load_data(document), default_registry())
    except ValidationFailed as exc:
        fail(str(exc))
    report, _, interrupted = _run_embedded(plan, {}, as_json, None)
    if as_json:
        sys.stdout.write(json.dumps(report, default=str) + "\n")
    else:
        print_summary(report)
    raise typer.Exit(130 if interrupted else exit_code(report["status"]))
