"""What a named connection is: a type, hosts tried in order, options and credentials.

Airflow's idea, as its users know it: an admin defines a connection once
(``CHORDFLOW_CONNECTIONS``, the config file's ``connections``, or ``/api/v1/connections``)
and steps name it (``connection: warehouse``). Decisions where Airflow differs:

- ``hosts`` is a list, tried in order (the replaced platform's ``cluster_connect``):
  each connect attempt goes through every host, ``retry_count`` attempts in all,
  ``retry_delay`` seconds apart, each host given ``timeout`` seconds. The host that
  answered is the step's ``connected_node`` output.
- Credentials are never part of the definition. ``credentials`` maps a credential's
  field (``password``, ``private_key``, ``api_key``, ...) to the *name* of a secret
  (``CHORDFLOW_SECRETS`` / ``CHORDFLOW_SECRETS_DIR``), resolved on the worker that
  uses the connection, so a definition can be shown, stored and backed up as it is,
  and every record and error masks the values (app/engine/redaction.py). A password
  written into a host (``user:pw@host``) is refused for the same reason.
- Times are seconds, as everywhere in chordflow (the platform's ``timeout`` was
  milliseconds; its dialect converts).

This module is plain data (pydantic) with no I/O, so the settings, the workflow models
and the API can all validate a definition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

ConnectionType = Literal["mysql", "mongodb", "ssh", "smtp", "kafka", "elasticsearch",
                         "pushgateway", "http"]
CONNECTION_TYPES: tuple[str, ...] = ("mysql", "mongodb", "ssh", "smtp", "kafka",
                                     "elasticsearch", "pushgateway", "http")

#: The port of a host written without one.
DEFAULT_PORTS: dict[str, int] = {
    "mysql": 3306, "mongodb": 27017, "ssh": 22, "smtp": 25, "kafka": 9092,
    "elasticsearch": 9200, "pushgateway": 9091, "http": 80,
}

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]*$"
#: A secret's name, as ``${secrets.NAME}`` accepts it.
_SECRET_NAME = re.compile(r"^[A-Za-z_][\w.\-]*$")


@dataclass(frozen=True, slots=True)
class Host:
    """One entry of ``hosts``: ``host:port``, ``host`` or a URL (``https://es:9200``)."""

    host: str
    port: int
    #: The URL's scheme (http, https) where the entry was a URL, else "".
    scheme: str = ""
    #: A URL's path (a Pushgateway or API behind a prefix), else "".
    path: str = ""

    @property
    def node(self) -> str:
        """``host:port``: what ``connected_node`` reports."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The entry as a URL (http unless it said https)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme or 'http'}://{host}:{self.port}{self.path}"


def parse_host(text: str, default_port: int) -> Host:
    """``text`` as a Host; ValueError saying what is wrong."""
    text = text.strip()
    if not text:
        raise ValueError("a host must not be empty")
    if "://" in text:
        parts = urlsplit(text)
        if parts.username or parts.password:
            raise ValueError(f"'{parts.hostname}': put the user in 'login' and the password "
                             "in 'credentials' (a secret's name), not in the host")
        if not parts.hostname:
            raise ValueError(f"'{text}' names no host")
        port = parts.port or (443 if parts.scheme == "https" else default_port)
        return Host(parts.hostname, port, parts.scheme, parts.path.rstrip("/"))
    if "@" in text:
        raise ValueError(f"'{text.split('@')[-1]}': put the user in 'login' and the password "
                         "in 'credentials' (a secret's name), not in the host")
    if text.startswith("["):  # [::1]:3306
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ValueError(f"'{text}': the port must be a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"'{text}': the port must be between 1 and 65535")
    return Host(host, port)


class Connection(BaseModel):
    """A connection definition, as an admin writes it (credentials by secret name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="", max_length=200, description="How steps name it "
                      "(empty for a step's inline definition).")
    type: ConnectionType = Field(description="mysql, mongodb, ssh, smtp, kafka, "
                                 "elasticsearch, pushgateway or http.")
    hosts: list[str] = Field(min_length=1, max_length=64, description="host:port, host "
                             "or URL entries, tried in order (failover).")
    login: str | None = Field(default=None, max_length=500,
                              description="The user name (not a secret).")
    credentials: dict[str, str] = Field(
        default_factory=dict,
        description="Credential field -> the name of a secret holding it, e.g. "
                    '{"password": "mysql_pw"}; never the value itself.')
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Type-specific options (database, auth_source, tls, security, ...).")
    description: str = Field(default="", max_length=2000)
    timeout: float = Field(default=5.0, gt=0, le=3600,
                           description="Seconds each host gets to answer a connect, and "
                                       "each network call at most, unless a step says less.")
    retry_count: int = Field(default=3, ge=1, le=100,
                             description="Passes over the hosts before connecting fails.")
    retry_delay: float = Field(default=1.0, ge=0, le=600,
                               description="Seconds between two passes over the hosts.")
    retry_on_error: bool = Field(
        default=True,
        description="Run an operation once more on a fresh connection (the next host "
                    "that answers) when its connection broke under it.")
    pool_size: int = Field(default=4, ge=1, le=64,
                           description="Idle clients kept per worker process.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not re.match(NAME_PATTERN, value):
            raise ValueError("letters, digits, '_', '.', '-', starting with a letter or '_'")
        return value

    @field_validator("credentials")
    @classmethod
    def _secret_names(cls, value: dict[str, str]) -> dict[str, str]:
        for fld, secret in value.items():
            if not isinstance(secret, str) or not _SECRET_NAME.match(secret):
                raise ValueError(f"'{fld}' must name a secret (letters, digits, '_', '.', "
                                 "'-'), never hold the credential itself")
        return value

    @field_validator("options")
    @classmethod
    def _no_secret_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key.lower() in SECRET_FIELDS:
                raise ValueError(f"'{key}' is a credential: put the name of the secret "
                                 f"holding it in credentials.{key.lower()}")
        return value

    def parsed_hosts(self) -> list[Host]:
        """``hosts`` as Host entries (already checked by validation)."""
        return [parse_host(h, DEFAULT_PORTS[self.type]) for h in self.hosts]

    def public(self) -> dict[str, Any]:
        """What the API and the CLI show: the whole definition, which holds no
        credential (only the names of the secrets that do)."""
        return self.model_dump(mode="json")


#: Option names that are credentials: refused in ``options``.
SECRET_FIELDS = frozenset({"password", "passwd", "private_key", "api_key", "token",
                           "sasl_plain_password", "passphrase", "secret"})


def _check_hosts(connection: Connection) -> Connection:
    for i, text in enumerate(connection.hosts):
        try:
            parse_host(text, DEFAULT_PORTS[connection.type])
        except ValueError as exc:
            raise ValueError(f"hosts[{i}]: {exc}") from None
    return connection


def parse_connection(data: Any, name: str = "") -> Connection:
    """Validate one definition; ValueError (pydantic's, or naming ``hosts[i]``)."""
    if isinstance(data, Connection):
        return data
    if not isinstance(data, dict):
        raise ValueError("a connection must be an object with type and hosts")
    body = dict(data)
    if name:
        body["name"] = name
    if isinstance(body.get("hosts"), str):
        body["hosts"] = [h for h in body["hosts"].split(",") if h.strip()]
    return _check_hosts(Connection.model_validate(body))


def parse_connections(data: Any) -> dict[str, Connection]:
    """``CHORDFLOW_CONNECTIONS``: an object of definitions by name, or a list of
    definitions with a ``name`` each. ValueError naming the bad entry."""
    if data is None or data == "":
        return {}
    entries: list[tuple[str, Any]]
    if isinstance(data, dict):
        entries = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, list):
        entries = [(str(e.get("name", "")) if isinstance(e, dict) else "", e) for e in data]
    else:
        raise ValueError("connections must be an object (name -> definition) or a list")
    out: dict[str, Connection] = {}
    for name, body in entries:
        if not name:
            raise ValueError("every connection needs a name")
        if name in out:
            raise ValueError(f"two connections are named '{name}'")
        try:
            out[name] = parse_connection(body, name)
        except ValueError as exc:
            raise ValueError(f"connection '{name}': {exc}") from None
    return out
