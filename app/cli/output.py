"""What every command shares: the exit codes, the consoles, the options that mean the
same everywhere (--var, --json), and how results and errors are printed.

Exit codes, the same for every command:

====  =============================================================================
0     done; a run that was run or waited for succeeded
1     a run that was run or waited for failed or was cancelled
2     refused or invalid: a bad option, an invalid workflow, no such run, a missing
      key or role, a conflict, an unreachable API or store (one line on stderr)
130   interrupted (Ctrl-C or SIGTERM); a run this command started is cancelled first
====  =============================================================================

Its own module so that every command group imports it and none imports another (or
``chordflow.cli.main``, which imports them all).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130

#: typer's settings for every command: -h as well as --help.
CONTEXT = {"help_option_names": ["-h", "--help"]}

out = Console()
err = Console(stderr=True, soft_wrap=True)

FileArg = Annotated[Path, typer.Argument(
    help="Workflow file (JSON or YAML, any dialect), or a Python workflow "
         "(chordflow.flow) as package.module:attribute.")]
# -e as in docker, ansible and make's environment: -v means verbose or version elsewhere.
VarOpt = Annotated[list[str] | None, typer.Option(
    "--var", "-e", metavar="KEY=VALUE",
    help="Set a variable (repeatable); VALUE is parsed as JSON if it can be.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
RunIdArg = Annotated[str, typer.Argument(help="A run id.")]


def exit_code(status: object) -> int:
    """A finished run's exit code: 0 if it succeeded, else 1."""
    return EXIT_OK if str(status) == "succeeded" else EXIT_FAILED


def parse_vars(pairs: list[str] | None) -> dict[str, Any]:
    """``--var K=V`` pairs as variables (each V parsed as JSON if it can be)."""
    variables: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            fail(f"--var expects KEY=VALUE, got {pair!r}")
        try:
            variables[key] = json.loads(raw)
        except ValueError:
            variables[key] = raw
    return variables


def fail(message: str) -> NoReturn:
    """Print ``message`` (plain text) as the error and exit 2."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(EXIT_INVALID)


def note(message: str) -> None:
    """A remark on stderr (stdout carries only what a script would read)."""
    err.print(escape(message), highlight=False)


def say(message: str) -> None:
    """A plain line on stdout, never styled or wrapped as rich markup."""
    out.print(escape(message), highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal; elsewhere (a pipe, a file) plain aligned columns,
    never cut to 80 characters, one row a line."""
    if out.is_terminal:
        table = Table(*columns)
        table.columns[0].no_wrap = True
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        out.print(table)
        return
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    for row in [[c.upper() for c in columns], *rows]:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        sys.stdout.write(line.rstrip() + "\n")


def when(value: Any) -> str:
    """An ISO time from the API, to the second: 2024-05-01T12:00:00Z."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if moment.tzinfo else "")


def cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)


def fields(body: Any) -> None:
    """Every scalar field of ``body``, one per line."""
    if not isinstance(body, Mapping):
        say(str(body))
        return
    for key, value in body.items():
        if not isinstance(value, Mapping | list):
            say(f"{key}: {cell(value)}")


def print_summary(report: Mapping[str, Any]) -> None:
    """A run report's first lines: its id and status, its error, its outputs."""
    out.print(f"run {report['run_id']}: [bold]{escape(str(report['status']))}[/]",
              highlight=False)
    if report.get("error"):
        from chordflow.cli.progress import short_error

        error = short_error(str(report["error"]), whole=True)
        out.print(f"[red]{escape(error)}[/]", highlight=False)
    if report.get("outputs"):
        out.print_json(data=report["outputs"], default=str)


def print_report(report: Mapping[str, Any], tolerated: frozenset[str] = frozenset()) -> None:
    """What ``status`` prints: the summary, one line per step with its whole error
    (a tolerated failure, ``continue_on_failure``, said so), and the counts."""
    from chordflow.cli.progress import duration, epoch, short_error

    print_summary(report)
    tally: dict[str, int] = {}
    for name, step in report["steps"].items():
        extra = ", tolerated" if step["status"] == "failed" and name in tolerated else ""
        kind = "tolerated" if extra else str(step["status"])
        tally[kind] = tally.get(kind, 0) + 1
        error = short_error(step["error"], whole=True)
        say(f"  {name}: {step['status']} (attempts {step['attempts']}{extra})"
            + (f" - {error}" if error else ""))
    n = len(report["steps"])
    counts = ", ".join(f"{c} {s.replace('_', ' ')}" for s, c in sorted(tally.items()))
    start, end = epoch(report.get("started_at")), epoch(report.get("finished_at"))
    wall = f"; wall time {duration(end - start)}" if start and end else ""
    say(f"{n} step{'s' if n != 1 else ''}: {counts or 'none'}{wall}")
