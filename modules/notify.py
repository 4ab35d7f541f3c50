"""``notify``: e-mail over SMTP and webhooks over HTTP.

``email`` sends through the step's ``connection`` (type ``smtp``: ``hosts`` tried in
order, ``login`` with the ``password`` credential, ``options.security`` one of
``starttls``, ``tls`` (implicit TLS, port 465) or ``none``, ``options.from_addr``, a CA
as ``options.tls_ca_file`` / ``_url`` / ``_base64``), or, without one, through
``smtp_host`` and ``smtp_port`` given in its params (no login: a relay), the
replaced platform's way. Certificates are always checked (``options.verify: false``
turns it off for a connection, the admin's decision).

``webhook`` sends a JSON (or text) body to ``url``; with a connection (type ``http``),
``url`` is a path under the connection's host that answers first, with its headers
and credentials (``token``: a bearer token; ``login`` and ``password``: basic auth).
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Literal

import httpx
from chordflow.connections.catalog import Resolved
from chordflow.connections.http import HttpDriver
from chordflow.connections.models import Host
from chordflow.connections.pool import Session
from chordflow.connections.tls import cert_file
from chordflow.connections.use import operation_timeout, run_on
from chordflow.errors import StepFailed, StepTimeout
from chordflow.modules.context import StepContext
from chordflow.modules.registry import StepModule

#: runs_code=False: it sends messages the caller describes.
module = StepModule("notify", "E-mail over SMTP (STARTTLS/TLS) and webhooks.",
                    default_method="email", runs_code=False, connection_types=("smtp", "http"))

DEFAULT_TIMEOUT = 30.0


def tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cert_file(options, "tls_ca"))
    if options.get("verify") is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _security(resolved: Resolved, port: int) -> str:
    chosen = resolved.connection.options.get("security")
    if chosen is None:
        return "tls" if port == 465 else ("starttls" if port == 587 else "none")
    if chosen not in ("starttls", "tls", "none"):
        raise StepFailed(f"connection '{resolved.name}': options.security must be "
                         f"starttls, tls or none, not {chosen!r}")
    return str(chosen)


class SMTPDriver:
    """smtplib clients (chordflow.connections.pool.Driver)."""

    types: tuple[str, ...] = ("smtp",)

    def open(self, resolved: Resolved, host: Host, timeout: float) -> smtplib.SMTP:
        options = resolved.connection.options
        security = _security(resolved, host.port)
        client: smtplib.SMTP
        if security == "tls":
            client = smtplib.SMTP_SSL(host.host, host.port, timeout=timeout,
                                      context=tls_context(options))
        else:
            client = smtplib.SMTP(host.host, host.port, timeout=timeout)
        try:
            client.ehlo()
            if security == "starttls":
                client.starttls(context=tls_context(options))
                client.ehlo()
            if resolved.connection.login:
                client.login(resolved.connection.login, resolved.credential("password") or "")
        except Exception:
            self.close(client)
            raise
        return client

    def close(self, client: smtplib.SMTP) -> None:
        try:
            client.quit()
        except Exception:  # a server that already went away
            client.close()

    def broken(self, exc: BaseException) -> bool:
        return isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionError | TimeoutError)

    def alive(self, client: smtplib.SMTP) -> bool:
        try:
            return client.noop()[0] == 250
        except Exception:
            return False


SMTP = SMTPDriver()
HTTP = HttpDriver(("http",))


@module.method
def email(
    ctx: StepContext,
    to_addrs: str | list[str],
    subject: str,
    body: str = "",
    from_addr: str | None = None,
    body_type: Literal["plain", "html"] = "plain",
    cc: str | list[str] | None = None,
    bcc: str | list[str] | None = None,
    smtp_host: str | None = None,
    smtp_port: int | None = None,
    use_tls: bool | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Send an e-mail; outputs message_id, recipients and connected_node.

    to_addrs: a recipient or a list (a text with commas is split).
    subject: the subject.
    body: the text (or HTML with body_type html).
    from_addr: the sender (default: the connection's options.from_addr).
    body_type: plain or html.
    cc: copies, shown to every recipient.
    bcc: hidden copies.
    smtp_host: the server, where the step names no connection.
    smtp_port: its port (default 25; 465 means implicit TLS, 587 STARTTLS).
    use_tls: where the step names no connection: true for STARTTLS (implicit TLS on
        port 465), false for none.
    timeout: seconds the exchange may take (default 30).
    """
    fallback = None
    if ctx.connection is None:
        if not smtp_host:
            raise StepFailed("params.smtp_host: name the SMTP server, or give the step "
                             "a connection of type smtp")
        port = smtp_port or 25
        security = "none" if use_tls is False else (
            "tls" if port == 465 else ("starttls" if use_tls else None))
        fallback = {"type": "smtp", "hosts": [f"{smtp_host}:{port}"], "retry_count": 1,
                    "options": {"security": security} if security else {}}
    groups = {name: _addresses(value) for name, value in
              (("to_addrs", to_addrs), ("cc", cc), ("bcc", bcc))}
    if not groups["to_addrs"]:
        raise StepFailed("params.to_addrs: no recipient")
    limit = operation_timeout(ctx, timeout, DEFAULT_TIMEOUT)

    def send(session: Session[smtplib.SMTP]) -> dict[str, Any]:
        sender = from_addr or ctx_options(ctx, fallback).get("from_addr")
        if not sender:
            raise StepFailed("params.from_addr: name the sender (or set the connection's "
                             "options.from_addr)")
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(groups["to_addrs"])
        if groups["cc"]:
            message["Cc"] = ", ".join(groups["cc"])
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid()
        message.set_content(body, subtype=body_type)
        recipients = groups["to_addrs"] + groups["cc"] + groups["bcc"]
        if session.client.sock is not None:
            session.client.sock.settimeout(limit)
        refused = session.client.send_message(message, sender, recipients)
        if refused:
            raise StepFailed(f"the server refused {', '.join(sorted(refused))}")
        return {"message_id": message["Message-ID"], "recipients": recipients,
                "connected_node": session.node}

    try:
        return run_on(ctx, SMTP, send, fallback)
    except smtplib.SMTPException as exc:
        raise StepFailed(f"SMTP: {type(exc).__name__}: {exc}") from None


def ctx_options(ctx: StepContext, fallback: dict[str, Any] | None) -> dict[str, Any]:
    """The options of the step's SMTP connection (its resolved definition)."""
    from chordflow.connections.use import resolved_connection

    return dict(resolved_connection(ctx, SMTP.types, fallback).connection.options)


def _addresses(value: str | list[str] | None) -> list[str]:
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else value
    return [a.strip() for a in items if a and a.strip()]


@module.method
def webhook(
    ctx: StepContext,
    url: str,
    body: Any = None,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Call a webhook; outputs status_code, text, json and connected_node (where a
    connection was used).

    url: the address; with a connection of type http, a path under its host.
    body: sent as JSON (a text is sent as it is).
    method: POST, PUT, PATCH, GET or DELETE.
    headers: extra request headers.
    timeout: seconds the exchange may take (default 30; the step's timeout also applies).
    """
    limit = operation_timeout(ctx, timeout, DEFAULT_TIMEOUT)
    verb = method.upper()
    content = body if isinstance(body, str | bytes) else None
    json_body = None if content is not None or body is None else body

    def call(client: httpx.Client | None) -> httpx.Response:
        kwargs: dict[str, Any] = {"headers": headers, "json": json_body, "content": content,
                                  "timeout": limit}
        if client is None:
            return httpx.request(verb, url, **kwargs)
        return client.request(verb, url, **kwargs)

    try:
        if ctx.connection is None:
            response, node = call(None), None
        else:
            response, node = run_on(ctx, HTTP, lambda s: (call(s.client), s.node))
    except httpx.TimeoutException:
        raise StepTimeout(f"{verb} {url}: no answer within {limit:g}s") from None
    except httpx.HTTPError as exc:
        raise StepFailed(f"{verb} {url}: {type(exc).__name__}: {exc}") from None
    if response.is_error:
        raise StepFailed(f"{verb} {url} answered {response.status_code}: "
                         f"{response.text[:300]}")
    try:
        parsed: Any = response.json()
    except ValueError:
        parsed = None
    out = {"status_code": response.status_code, "text": response.text, "json": parsed}
    return {**out, "connected_node": node} if node else out
