"""An HTTP client per host of an HTTP-speaking connection (http, elasticsearch,
pushgateway), shared by the modules that talk to one.

Opening probes the host (a TCP connect within ``timeout``), so that a host that is
down is skipped in favour of the next one, as for the database connections. The
credentials become headers: ``token`` a bearer token, ``api_key`` Elasticsearch's
``ApiKey`` scheme, ``login`` with ``password`` basic auth. Options: ``headers`` (sent
with every request), ``verify`` (false: do not check the server's certificate),
``tls_ca_*`` (a CA: file, URL or base64) and ``tls_cert_*`` with ``tls_key_*`` (a
client certificate).
"""

from __future__ import annotations

import socket
from typing import Any

import httpx
from chordflow.connections.catalog import Resolved
from chordflow.connections.models import Host
from chordflow.connections.tls import cert_file


def auth_headers(resolved: Resolved) -> dict[str, str]:
    """The headers the credentials make (never logged; masked in errors)."""
    if resolved.credential("api_key"):
        return {"Authorization": f"ApiKey {resolved.credential('api_key')}"}
    if resolved.credential("token"):
        return {"Authorization": f"Bearer {resolved.credential('token')}"}
    return {}


class HttpDriver:
    """httpx clients with the host's URL as their base (chordflow.connections.pool.Driver)."""

    def __init__(self, types: tuple[str, ...]):
        self.types = types

    def open(self, resolved: Resolved, host: Host, timeout: float) -> httpx.Client:
        with socket.create_connection((host.host, host.port), timeout=timeout):
            pass  # it answers: this is the host the step uses
        options = resolved.connection.options
        verify: Any = cert_file(options, "tls_ca") or bool(options.get("verify", True))
        cert = cert_file(options, "tls_cert")
        login = resolved.connection.login
        password = resolved.credential("password")
        return httpx.Client(
            base_url=host.url, timeout=timeout, verify=verify,
            cert=(cert, cert_file(options, "tls_key")) if cert else None,  # type: ignore[arg-type]
            headers={**{str(k): str(v) for k, v in (options.get("headers") or {}).items()},
                     **auth_headers(resolved)},
            auth=(login, password or "") if login and password is not None else None,
        )

    def close(self, client: httpx.Client) -> None:
        client.close()

    def broken(self, exc: BaseException) -> bool:
        return isinstance(exc, httpx.TransportError)

    def alive(self, client: httpx.Client) -> bool:
        return not client.is_closed
