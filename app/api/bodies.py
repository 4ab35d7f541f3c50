"""YAML request bodies: wherever the API takes JSON it takes ``application/yaml`` (and
``text/yaml``, ``application/x-yaml``) too, the form workflows are written in.

A middleware turns a YAML body into the JSON the endpoints read (so that every
endpoint, its validation and its OpenAPI document stay one), and keeps the text as
written in the request's scope: the workflow library stores it, so that a diff of
two versions shows the author's own lines. A body that does not parse is refused
with the loader's words (line, column, how to quote a ``${...}``).
"""

from __future__ import annotations

import json
from typing import Any

from chordflow.errors import ValidationFailed
from chordflow.workflow.loader import parse_text
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml",
                        "text/x-yaml"})
#: Where the text of a YAML body (or of a JSON one, as sent) is left for the endpoint.
SOURCE_KEY = "chordflow.source"

#: For the OpenAPI document: the YAML media types an endpoint also takes (schemathesis
#: and Swagger UI know ``application/yaml``; the others are aliases).
def yaml_request_body(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` declaring that an endpoint takes ``schema`` as YAML too."""
    return {"requestBody": {"content": {"application/yaml": {"schema": schema}}}}


def source_of(scope: Scope) -> tuple[str, str] | None:
    """(format, text) of the request body as the client wrote it: ("yaml", ...) for a
    YAML body, ("json", ...) for a JSON one; None for no body."""
    found = scope.get(SOURCE_KEY)
    return found if isinstance(found, tuple) else None


class YamlBodies:
    """Read YAML bodies as JSON, and note every body's text (``source_of``). Inside
    ``BodyLimit``: the body is bounded before it is read here."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        media = headers.get(b"content-type", b"").decode("latin-1").split(";")[0]
        media = media.strip().lower()
        is_yaml = media in YAML_TYPES
        if not is_yaml and media != "application/json":
            await self.app(scope, receive, send)
            return
        try:
            body = await _read(receive)
        except HTTPException as exc:  # BodyLimit's 413, raised while reading
            response = JSONResponse(status_code=exc.status_code, content={
                "detail": exc.detail, "code": "payload_too_large"})
            await response({"type": "http"}, receive, send)
            return
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if not is_yaml:
            if text is not None:
                scope[SOURCE_KEY] = ("json", text)
            await self.app(scope, _replay(body, receive), send)
            return
        if text is None:
            await _refuse(receive, send, "the YAML body is not UTF-8")
            return
        try:
            data = parse_text(text, fmt="yaml") if text.strip() else None
        except ValidationFailed as exc:
            await _refuse(receive, send, exc.errors[0].message, exc)
            return
        scope[SOURCE_KEY] = ("yaml", text)
        converted = json.dumps(data, default=str).encode() if data is not None else b""
        scope["headers"] = [
            *((k, v) for k, v in scope.get("headers") or ()
              if k not in (b"content-type", b"content-length")),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(converted)).encode()),
        ]
        await self.app(scope, _replay(converted, receive), send)


async def _read(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, then: Receive) -> Receive:
    """A receive giving ``body`` once, then the client's own messages (a disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()

    return receive


async def _refuse(receive: Receive, send: Send, detail: str,
                  exc: ValidationFailed | None = None) -> None:
    errors = [e.to_dict() for e in exc.errors] if exc else [
        {"step": None, "field": None, "message": detail}]
    response = JSONResponse(status_code=422, content={
        "detail": detail, "code": "validation_failed", "errors": errors})
    await response({"type": "http"}, receive, send)
