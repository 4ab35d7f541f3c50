"""``chordflow connections``: list, show and check named connections.

With ``CHORDFLOW_API_URL`` set, through the API (an admin key: every connection,
stored and configured, checked from the API's host); without it, the connections of
this host's settings (``CHORDFLOW_CONNECTIONS`` or the config file), checked from here
with this host's secrets, as ``airflow connections test`` does. Definitions are
changed through the API (``PUT /api/v1/connections/NAME``) or the settings; neither
ever holds a credential's value, so what is printed is safe to share.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from chordflow.cli.connect import connect
from chordflow.cli.output import CONTEXT, JsonOpt, cell, fail, note, print_json, print_table, say

connections_app = typer.Typer(
    help="Named connections (MySQL, MongoDB, SSH, SMTP, Kafka, Elasticsearch, Pushgateway, "
         "HTTP): list, show, check. Through the API when CHORDFLOW_API_URL is set, else "
         "this host's CHORDFLOW_CONNECTIONS.",
    no_args_is_help=True, context_settings=CONTEXT,
)

NameArg = Annotated[str, typer.Argument(help="The connection's name.")]


def _remote() -> bool:
    from chordflow.config import get_settings

    return bool(get_settings().api_url)


def _local_catalog() -> Any:
    from chordflow.config import get_settings

    return get_settings().connection_catalog()


@connections_app.command("list")
def connections_list(as_json: JsonOpt = False) -> None:
    """List connections: name, type, hosts, login, where defined.

    Example: chordflow connections list --json
    """
    if _remote():
        with connect() as api:
            entries = api.call("GET", "/connections")["connections"]
    else:
        entries = _local_catalog().entries()
    if as_json:
        print_json({"connections": entries})
        return
    if not entries:
        note("no connections")
        return
    print_table(["name", "type", "hosts", "login", "source"],
                [[cell(e.get("name")), cell(e.get("type")), ", ".join(e.get("hosts") or []),
                  cell(e.get("login")), cell(e.get("source"))] for e in entries])


@connections_app.command("show")
def connections_show(name: NameArg, as_json: JsonOpt = False) -> None:
    """Show one connection's definition (credentials are names of secrets).

    Example: chordflow connections show warehouse
    """
    from chordflow.connections.catalog import ConnectionMissing

    if _remote():
        from chordflow.client import _path

        with connect() as api:
            body = api.call("GET", _path("connections", name))
    else:
        try:
            body = _local_catalog().entry(name)
        except ConnectionMissing as exc:
            fail(str(exc))
    if as_json:
        print_json(body)
        return
    for key, value in body.items():
        if isinstance(value, Mapping):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        say(f"{key}: {cell(value)}")


@connections_app.command("check")
def connections_check(name: NameArg, as_json: JsonOpt = False) -> None:
    """Connect as a step would (hosts in order, retries) and say which host answered;
    exit 1 if none did.

    Example: chordflow connections check warehouse
    """
    if _remote():
        from chordflow.client import _path

        with connect() as api:
            result = api.call("POST", _path("connections", name, "check"))
    else:
        result = _check_here(name)
    if as_json:
        print_json(result)
    elif result.get("ok"):
        say(f"connection {name}: ok, connected to {result.get('connected_node')}")
    else:
        say(f"connection {name}: failed: {result.get('error')}")
    if not result.get("ok"):
        raise typer.Exit(1)


def _check_here(name: str) -> dict[str, Any]:
    from chordflow.config import get_settings
    from chordflow.connections.catalog import ConnectionMissing
    from chordflow.engine.redaction import redact
    from chordflow.errors import StepFailed
    from chordflow.modules.drivers import check

    secrets = get_settings().load_secrets()
    try:
        resolved = _local_catalog().resolve(name, secrets)
    except ConnectionMissing as exc:
        fail(str(exc))
    except StepFailed as exc:
        return {"ok": False, "error": redact(str(exc), secrets)}
    return redact(check(resolved), secrets)
