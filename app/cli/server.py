"""``chordflow api`` (serve the HTTP API), ``chordflow flower`` (serve Flower) and
``chordflow keys`` (manage API keys).

``keys`` works on MongoDB directly, so the first admin key can be made before any
server runs; admins can also manage keys over HTTP.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from chordflow.cli.output import CONTEXT, JsonOpt
from rich.console import Console
from rich.table import Table

out = Console()
err = Console(stderr=True)

#: Seconds the API's open requests (event streams) get to end after SIGTERM.
SHUTDOWN_GRACE = 2

keys_app = typer.Typer(help="Create, list, change the role of, store a job service "
                            "token with and revoke API keys (directly in MongoDB).",
                       no_args_is_help=True, context_settings=CONTEXT)


class RoleName(StrEnum):
    """The roles of chordflow.api.principal.Role, for the parser (which refuses any
    other) without importing the API."""

    viewer = "viewer"
    operator = "operator"
    author = "author"
    admin = "admin"

#: What --role and ``keys role`` say the roles are for (``chordflow.api.security``).
ROLES_HELP = ("viewer (read), operator (run stored workflows; inline only with "
              "CHORDFLOW_OPERATOR_MODULES), author (write stored workflows; inline with any "
              "module) or admin (keys).")


def api(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind.")] = None,
    workers: Annotated[int | None, typer.Option(help="Uvicorn worker processes.")] = None,
) -> None:
    """Serve the HTTP API (docs at /docs, schema at /openapi.json).

    Example: chordflow api --host 0.0.0.0 --port 8080 --workers 4
    """
    import uvicorn
    from chordflow.config import get_settings

    settings = get_settings()
    log_config: Any = uvicorn.config.LOGGING_CONFIG
    if settings.log_format == "json":
        # Uvicorn's loggers go through the root logger, which writes JSON lines (in
        # each worker process too: uvicorn configures logging again there).
        log_config = {"version": 1, "disable_existing_loggers": False, "handlers": {
            "json": {"class": "logging.StreamHandler", "formatter": "json"}},
            "formatters": {"json": {"()": "chordflow.log_format.JsonFormatter"}},
            "root": {"handlers": ["json"], "level": "INFO"}}
    # On SIGTERM, open event streams get SHUTDOWN_GRACE seconds, then are closed (their
    # clients reconnect with Last-Event-ID): a restart never waits for a stream's hour.
    uvicorn.run("chordflow.api.main:app", host=host or settings.api_host,
                port=port or settings.api_port, workers=workers or settings.api_workers,
                log_level="info", proxy_headers=True, log_config=log_config,
                timeout_graceful_shutdown=SHUTDOWN_GRACE)


def flower(
    port: Annotated[int, typer.Option(help="Port to bind.")] = 5555,
    address: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    no_login: Annotated[bool, typer.Option(
        "--no-login", help="Serve Flower to anyone who can reach it (no login).")] = False,
) -> None:
    """Serve Flower, Celery's monitor, on the workers' broker (its HTTP API at /api).

    Flower shows every task's arguments and can revoke tasks and restart pools, so it
    needs a login: FLOWER_BASIC_AUTH=user:password (or Flower's OAuth settings,
    FLOWER_AUTH and FLOWER_AUTH_PROVIDER). Without one it does not start, unless
    --no-login says so. Flower reads its other options from FLOWER_* variables.

    Example: FLOWER_BASIC_AUTH=admin:secret chordflow flower --port 5555
    """
    if not no_login and not (os.environ.get("FLOWER_BASIC_AUTH")
                             or os.environ.get("FLOWER_AUTH")):
        err.print("[bold red]error:[/] Flower needs a login: set FLOWER_BASIC_AUTH="
                  "user:password (or FLOWER_AUTH with FLOWER_AUTH_PROVIDER for OAuth), or "
                  "pass --no-login to serve it to anyone who can reach it", highlight=False)
        raise typer.Exit(2)
    from chordflow.workers.celery_app import app as celery_app

    celery_app.start(["flower", f"--port={port}", f"--address={address}"])


def _keys():  # type: ignore[no-untyped-def]
    from chordflow.api.keys import ApiKeys
    from chordflow.config import get_settings
    from chordflow.engine.mongo_store import MongoStore

    settings = get_settings()
    return ApiKeys(MongoStore(settings.mongo_url, settings.mongo_db).db)


def _role(value: RoleName) -> Any:
    """The API's Role of a name the parser accepted."""
    from chordflow.api.principal import Role

    return Role(str(value))


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    role: Annotated[RoleName, typer.Option(help=ROLES_HELP)] = RoleName.viewer,
    as_json: JsonOpt = False,
) -> None:
    """Create a key; it is printed once and never stored in clear.

    Example: chordflow keys create --name ci --role operator
    """
    chosen = _role(role)
    role_name = str(chosen)
    key_id, token = _keys().create(name, chosen)
    if as_json:
        sys.stdout.write(json.dumps({"key_id": key_id, "key": token, "role": role_name})
                         + "\n")
    else:
        out.print(f"key {key_id} ({role_name}) for {name}:\n{token}\n"
                  "Store it now: it cannot be shown again.", highlight=False)


@keys_app.command("role")
def set_key_role(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    role: Annotated[RoleName, typer.Argument(help=ROLES_HELP)],
    as_json: JsonOpt = False,
) -> None:
    """Give a key another role; the key itself is unchanged.

    E.g. author to an operator key that submits inline bash or python steps. Servers
    apply it within seconds (they remember a checked key for ten).

    Example: chordflow keys role 1a2b3c author
    """
    chosen = _role(role)
    if not _keys().set_role(key_id, chosen):
        err.print(f"[bold red]error:[/] no active key {key_id}", highlight=False)
        raise typer.Exit(2)
    if as_json:
        sys.stdout.write(json.dumps({"key_id": key_id, "role": str(chosen)}) + "\n")
    else:
        out.print(f"key {key_id} is now {chosen}", highlight=False)


@keys_app.command("list")
def list_keys(as_json: JsonOpt = False) -> None:
    """List keys (never their secrets).

    Example: chordflow keys list --json
    """
    keys = _keys().list()
    if as_json:
        sys.stdout.write(json.dumps(keys, default=str) + "\n")
        return
    table = Table("id", "name", "role", "token", "revoked")
    for key in keys:
        table.add_row(key["key_id"], key["name"], key["role"], key.get("token") or "",
                      "yes" if key["revoked_at"] else "")
    out.print(table)


@keys_app.command("set-token")
def set_key_token(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    as_json: JsonOpt = False,
) -> None:
    """Store a job service token with a key (its user's BV-BRC token, say), read from
    standard input (never an argument: shells and ps would show it).

    Runs the key submits use it on job services with token_from: key. It is stored
    encrypted with the secret TOKEN_ENCRYPTION_KEY (this process, the API and the
    workers need the same one) and never shown again.

    Example: chordflow keys set-token 1a2b3c < ~/.patric_token
    """
    from chordflow.config import get_settings
    from chordflow.jobs.key_tokens import KeyTokenError

    if sys.stdin.isatty():
        import getpass

        token = getpass.getpass("token: ")
    else:
        token = sys.stdin.read().strip()
    if len(token) < 3:
        err.print("[bold red]error:[/] no token on standard input", highlight=False)
        raise typer.Exit(2)
    try:
        stored = _keys().set_token(key_id, token, get_settings().load_secrets())
    except KeyTokenError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    if not stored:
        err.print(f"[bold red]error:[/] no active key {key_id}", highlight=False)
        raise typer.Exit(2)
    if as_json:
        sys.stdout.write(json.dumps({"key_id": key_id, "token": "***"}) + "\n")
    else:
        out.print(f"key {key_id} now carries a token (stored encrypted)", highlight=False)


@keys_app.command("clear-token")
def clear_key_token(key_id: Annotated[str, typer.Argument(help="The key's id.")],
                    as_json: JsonOpt = False) -> None:
    """Forget the token stored with a key.

    Example: chordflow keys clear-token 1a2b3c
    """
    if not _keys().clear_token(key_id):
        err.print(f"[bold red]error:[/] no key {key_id}", highlight=False)
        raise typer.Exit(2)
    if as_json:
        sys.stdout.write(json.dumps({"key_id": key_id, "token": None}) + "\n")
    else:
        out.print(f"key {key_id} carries no token", highlight=False)


@keys_app.command("revoke")
def revoke_key(key_id: Annotated[str, typer.Argument(help="The key's id.")],
               as_json: JsonOpt = False) -> None:
    """Revoke a key (servers stop accepting it within seconds).

    Example: chordflow keys revoke 1a2b3c
    """
    if not _keys().revoke(key_id):
        err.print(f"[bold red]error:[/] no active key {key_id}", highlight=False)
        raise typer.Exit(2)
    if as_json:
        sys.stdout.write(json.dumps({"key_id": key_id, "revoked": True}) + "\n")
    else:
        out.print(f"key {key_id} revoked")
