"""``http``: HTTP requests with httpx.

Outputs ``status_code``, ``headers``, ``json`` (the parsed body, or null when it is not
JSON), ``text`` and ``data`` (``json`` when the body is JSON, else ``text``: the shape
the procedures system's ``@fetch.data`` expects). A 4xx or 5xx response fails the step
unless ``raise_for_status`` is false, because a workflow that carries on with an error
page as its data fails later and further from the cause.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from chordflow.errors import StepFailed, StepTimeout
from chordflow.modules.context import StepContext, run_coroutine
from chordflow.modules.registry import StepModule

#: runs_code=False: it sends requests the caller describes; nothing the caller wrote
#: runs on the worker.
module = StepModule("http", "HTTP requests (httpx).", default_method="get", runs_code=False)

DEFAULT_TIMEOUT = 30.0


def _request(
    ctx: StepContext,
    method: str,
    url: str,
    headers: dict[str, str] | None,
    params: dict[str, Any] | None,
    json: Any,
    data: Any,
    timeout: float | None,
    verify: bool,
    raise_for_status: bool,
    auth: dict[str, str] | None,
) -> dict[str, Any]:
    limit = timeout if timeout is not None else DEFAULT_TIMEOUT
    verb = method.upper()

    async def exchange() -> httpx.Response:
        async with httpx.AsyncClient(verify=verify, follow_redirects=True,
                                     timeout=limit) as client:
            return await client.request(
                verb, url, headers=headers, params=params, json=json,
                data=data if not isinstance(data, str | bytes) else None,
                content=data if isinstance(data, str | bytes) else None,
                auth=(auth["username"], auth["password"]) if auth else None,
            )

    async def bounded() -> httpx.Response:
        # httpx's timeout limits each read; this limits the whole exchange.
        return await asyncio.wait_for(exchange(), limit)

    try:
        # In an event loop the step's deadline and a cancelled run stop the request.
        response = run_coroutine(bounded(), ctx)
    except TimeoutError:
        raise StepTimeout(f"{verb} {url}: no complete answer within {limit:g}s") from None
    except httpx.HTTPError as exc:
        raise StepFailed(f"{verb} {url}: {type(exc).__name__}: {exc}") from None
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if raise_for_status and response.is_error:
        raise StepFailed(
            f"{verb} {url} answered {response.status_code} "
            f"{response.reason_phrase}: {response.text[:300]}"
        )
    return {
        "status_code": response.status_code,
        "headers": dict(response.headers),
        "json": body,
        "text": response.text,
        "data": body if body is not None else response.text,
        "url": str(response.url),
    }


def _method(name: str) -> None:
    def fn(
        ctx: StepContext,
        url: str,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        timeout: float | None = None,
        verify: bool = True,
        raise_for_status: bool = True,
        auth: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        return _request(ctx, name, url, headers, params, json, data, timeout, verify,
                        raise_for_status, auth)

    fn.__doc__ = f"""Send an HTTP {name.upper()} request.

    url: the address.
    headers: request headers.
    params: query-string parameters.
    json: a body sent as JSON.
    data: a form body (an object) or raw body (a string).
    timeout: seconds for the whole exchange (default 30; the step's timeout also applies).
    verify: check TLS certificates.
    raise_for_status: fail the step on a 4xx or 5xx answer.
    auth: basic auth as {{"username": ..., "password": ...}}.
    """
    module.method(fn, name=name)


for _name in ("get", "post", "put", "patch", "delete", "head"):
    _method(_name)


@module.method
def request(
    ctx: StepContext,
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    json: Any = None,
    data: Any = None,
    timeout: float | None = None,
    verify: bool = True,
    raise_for_status: bool = True,
    auth: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Send an HTTP request with any method.

    method: GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS.
    """
    return _request(ctx, method, url, headers, params, json, data, timeout, verify,
                    raise_for_status, auth)
