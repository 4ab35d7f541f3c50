"""The ``chordflow`` command: the Typer app, its global options, and where each
command comes from. The commands themselves live one group a module (local_cmd,
runs_cmd, workflows_cmd, schedules_cmd, worker_cmd, server); this module imports them,
they never import it.

Exit codes, the same for every command (chordflow.cli.output): 0 succeeded, 1 a run
failed or was cancelled, 2 refused or invalid (the reason on stderr), 130 interrupted.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from chordflow.cli import local_cmd, runs_cmd
from chordflow.cli.output import CONTEXT, EXIT_INVALID, err
from rich.markup import escape

app = typer.Typer(
    name="chordflow",
    help="Run workflows (DAGs of steps) embedded or on Celery workers.\n\n"
         "Exit codes: 0 succeeded, 1 a run failed or was cancelled, 2 refused or invalid, "
         "130 interrupted (Ctrl-C).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT,
)


def _version(value: bool) -> None:
    if value:
        from chordflow import __version__

        sys.stdout.write(f"chordflow {__version__}\n")
        raise typer.Exit()


@app.callback()
def _global(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print chordflow's version and exit.")] = False,
) -> None:
    """Run workflows (DAGs of steps) embedded or on Celery workers."""


for command in (*local_cmd.COMMANDS, *runs_cmd.COMMANDS):
    app.command()(command)


def _register_server_commands() -> None:
    from chordflow.cli.dev import dev
    from chordflow.cli.server import api, flower, keys_app
    from chordflow.cli.worker_cmd import worker

    app.command()(worker)
    app.command()(api)
    app.command()(__import__("chordflow.cli.schema", fromlist=["schema"]).schema)
    app.command()(dev)
    app.command()(flower)
    app.add_typer(keys_app, name="keys")


_register_server_commands()


def _register_remote_commands() -> None:
    from chordflow.cli.schedules_cmd import schedules_app
    from chordflow.cli.workflows_cmd import workflows_app

    app.add_typer(workflows_app, name="workflows")
    app.add_typer(schedules_app, name="schedules")
    from chordflow.cli.connections_cmd import connections_app

    app.add_typer(connections_app, name="connections")
    from chordflow.cli.data_cmd import remotes_app
    from chordflow.cli.data_cmd import transfer as transfer_command

    app.add_typer(remotes_app, name="remotes")
    app.command("transfer")(transfer_command)

    from chordflow.cli.jit_cmd import jit_app

    app.add_typer(jit_app, name="jit")
    from chordflow.cli.backup_cmd import COMMANDS as backup_commands

    for backup_command in backup_commands:
        app.command()(backup_command)


_register_remote_commands()


def main() -> None:
    from chordflow.config import get_settings
    from chordflow.log_format import configure

    try:
        log_format = get_settings().log_format
    except ValueError:  # a bad CHORDFLOW_* variable: the command itself reports it
        log_format = "text"
    configure(log_format, logging.WARNING)
    # A store that does not answer is reported once, as the command's error line.
    logging.getLogger("chordflow.store").setLevel(logging.ERROR)
    try:
        app()
    except Exception as exc:
        message = refusal(exc)
        if message is None:
            raise
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        sys.exit(EXIT_INVALID)


def refusal(exc: BaseException) -> str | None:
    """The one line to print for an error that is the world's, not a bug: an unknown
    run, an unreachable store or broker. None for anything else (a traceback, then)."""
    from chordflow.errors import DispatchFailed, RunNotFound, StoreUnavailable

    if isinstance(exc, RunNotFound | StoreUnavailable | DispatchFailed):
        return str(exc)
    # The libraries' own "cannot connect" errors, where a command used them directly;
    # looked up only if loaded (an embedded run never imports them).
    for module, names, what in (
        ("pymongo.errors", ("ConnectionFailure",), "MongoDB"),
        ("kombu.exceptions", ("OperationalError",), "the broker"),
        ("redis.exceptions", ("ConnectionError", "TimeoutError"), "Redis"),
    ):
        loaded = sys.modules.get(module)
        kinds = tuple(getattr(loaded, n) for n in names) if loaded else ()
        if kinds and isinstance(exc, kinds):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"{what} is unreachable ({type(exc).__name__}: {first[:300]})"
    return None


if __name__ == "__main__":
    main()
