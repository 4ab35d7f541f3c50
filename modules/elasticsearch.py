"""``elasticsearch``: Elasticsearch (and OpenSearch) over its REST API (httpx).

Every method runs on the step's ``connection`` (type ``elasticsearch``: ``hosts`` are
URLs or ``host:port``, tried in order; basic auth with ``login`` and the ``password``
credential, or an API key as the ``api_key`` credential; a CA as
``options.tls_ca_file`` / ``_url`` / ``_base64``, a client certificate as
``options.tls_cert_*`` with ``tls_key_*``; see app/connections/http.py).

Each method is one REST request, built by ``request_for`` (a pure function: the
unit tests check it without a server); index names and ids are escaped into the path,
documents and queries sent as JSON bodies, so a value never changes which endpoint is
called. An error answer (4xx/5xx) fails the step with Elasticsearch's own reason,
except ``get`` of a missing document (``found: false``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
from chordflow.connections.http import HttpDriver
from chordflow.connections.pool import Session
from chordflow.connections.use import operation_timeout, run_on
from chordflow.errors import StepFailed, StepTimeout
from chordflow.modules.context import StepContext
from chordflow.modules.registry import StepModule

#: runs_code=False: documents and queries are data (stored scripts are not offered).
module = StepModule("elasticsearch", "Elasticsearch: search, index, bulk, indices, health.",
                    default_method="search", runs_code=False,
                    connection_types=("elasticsearch",))

DEFAULT_TIMEOUT = 30.0
DRIVER = HttpDriver(("elasticsearch",))

Request = tuple[str, str, dict[str, Any], Any]


def _seg(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or value in (".", ".."):
        raise StepFailed(f"params.{what}: must be a non-empty name")
    return quote(value, safe="")


def _refresh(refresh: bool | str | None) -> dict[str, Any]:
    if refresh is None or refresh is False:
        return {}
    return {"refresh": "true" if refresh is True else str(refresh)}


def request_for(method: str, p: dict[str, Any]) -> Request:
    """(HTTP method, path, query parameters, JSON body or NDJSON text) of one method."""
    if method == "search":
        body: dict[str, Any] = {"query": p.get("query") or {"match_all": {}}}
        for key in ("size", "from", "sort", "aggs", "_source"):
            if p.get(key) is not None:
                body[key] = p[key]
        return "POST", f"/{_seg(p['index'], 'index')}/_search", {}, body
    if method == "get":
        return "GET", f"/{_seg(p['index'], 'index')}/_doc/{_seg(p['id'], 'id')}", {}, None
    if method == "index":
        path = f"/{_seg(p['index'], 'index')}/_doc"
        if p.get("id") is not None:
            return "PUT", f"{path}/{_seg(str(p['id']), 'id')}", _refresh(p.get("refresh")), \
                p["document"]
        return "POST", path, _refresh(p.get("refresh")), p["document"]
    if method == "create":
        return ("PUT", f"/{_seg(p['index'], 'index')}/_create/{_seg(str(p['id']), 'id')}",
                _refresh(p.get("refresh")), p["document"])
    if method == "update":
        body = {"doc": p["doc"]}
        if p.get("upsert"):
            body["doc_as_upsert"] = True
        return ("POST", f"/{_seg(p['index'], 'index')}/_update/{_seg(str(p['id']), 'id')}",
                _refresh(p.get("refresh")), body)
    if method == "delete":
        return ("DELETE", f"/{_seg(p['index'], 'index')}/_doc/{_seg(str(p['id']), 'id')}",
                _refresh(p.get("refresh")), None)
    if method == "bulk":
        return "POST", "/_bulk", _refresh(p.get("refresh")), bulk_body(p["operations"],
                                                                       p.get("index"))
    if method == "create_index":
        body = {k: p[k] for k in ("settings", "mappings", "aliases") if p.get(k)}
        return "PUT", f"/{_seg(p['index'], 'index')}", {}, body or None
    if method == "delete_index":
        return "DELETE", f"/{_seg(p['index'], 'index')}", {}, None
    if method == "health":
        path = "/_cluster/health" + (f"/{_seg(p['index'], 'index')}" if p.get("index") else "")
        return "GET", path, {}, None
    raise StepFailed(f"no request for method '{method}'")


_ACTIONS = ("index", "create", "update", "delete")


def bulk_body(operations: list[dict[str, Any]], index: str | None) -> str:
    """The NDJSON of ``_bulk``: each operation ``{action, index, id, document}``."""
    if not operations:
        raise StepFailed("params.operations: no operation")
    lines = []
    for i, op in enumerate(operations):
        action = op.get("action", "index")
        if action not in _ACTIONS:
            raise StepFailed(f"params.operations[{i}].action: one of {', '.join(_ACTIONS)}")
        meta: dict[str, Any] = {}
        target = op.get("index", index)
        if target:
            meta["_index"] = target
        if op.get("id") is not None:
            meta["_id"] = str(op["id"])
        elif action != "index":
            raise StepFailed(f"params.operations[{i}].id: {action} needs an id")
        lines.append(json.dumps({action: meta}))
        if action == "update":
            lines.append(json.dumps({"doc": op.get("document", {})}))
        elif action != "delete":
            lines.append(json.dumps(op.get("document", {})))
    return "\n".join(lines) + "\n"


def _call(ctx: StepContext, method: str, params: dict[str, Any],
          timeout: float | None, missing_ok: bool = False) -> dict[str, Any]:
    verb, path, query, body = request_for(method, params)
    limit = operation_timeout(ctx, timeout, DEFAULT_TIMEOUT)

    def on(session: Session[httpx.Client]) -> tuple[httpx.Response, str]:
        if isinstance(body, str):
            response = session.client.request(verb, path, params=query, content=body,
                                              headers={"Content-Type": "application/x-ndjson"},
                                              timeout=limit)
        else:
            response = session.client.request(verb, path, params=query, json=body,
                                              timeout=limit)
        return response, session.node

    try:
        response, node = run_on(ctx, DRIVER, on)
    except httpx.TimeoutException:
        raise StepTimeout(f"Elasticsearch {verb} {path}: no answer within {limit:g}s") from None
    except httpx.HTTPError as exc:
        raise StepFailed(f"Elasticsearch {verb} {path}: {type(exc).__name__}: {exc}") from None
    try:
        answer: Any = response.json()
    except ValueError:
        answer = {"text": response.text}
    if response.is_error and not (missing_ok and response.status_code == 404):
        reason = answer.get("error") if isinstance(answer, dict) else answer
        if isinstance(reason, dict):
            reason = reason.get("reason") or reason.get("type") or reason
        raise StepFailed(f"Elasticsearch {verb} {path} answered {response.status_code}: "
                         f"{str(reason)[:500]}")
    return {"response": answer, "status_code": response.status_code, "connected_node": node}


Refresh = bool | str | None


@module.method
def search(ctx: StepContext, index: str, query: dict[str, Any] | None = None,
           size: int | None = None, from_: int | None = None,
           sort: list[Any] | None = None, aggs: dict[str, Any] | None = None,
           source: list[str] | bool | None = None,
           timeout: float | None = None) -> dict[str, Any]:
    """Search an index; outputs hits (the documents' _source with _id), total, response
    and connected_node.

    index: the index (or a pattern, or several separated by commas).
    query: the query DSL (default: match_all).
    size: hits to return.
    from_: the first hit's offset (written from in the platform).
    sort: the sort clauses.
    aggs: aggregations.
    source: the _source fields to return (false: none).
    """
    out = _call(ctx, "search", {"index": index, "query": query, "size": size,
                                "from": from_, "sort": sort, "aggs": aggs,
                                "_source": source}, timeout)
    hits = out["response"].get("hits", {})
    total = hits.get("total")
    return {**out, "hits": [{"_id": h.get("_id"), **(h.get("_source") or {})}
                            for h in hits.get("hits", [])],
            "total": total.get("value") if isinstance(total, dict) else total}


@module.method
def get(ctx: StepContext, index: str, id: str, timeout: float | None = None) -> dict[str, Any]:
    """Get a document by id; outputs document (null if missing), found, response and
    connected_node."""
    out = _call(ctx, "get", {"index": index, "id": str(id)}, timeout, missing_ok=True)
    found = bool(out["response"].get("found"))
    return {**out, "found": found, "document": out["response"].get("_source") if found else None}


@module.method(name="index")
def index_(ctx: StepContext, index: str, document: dict[str, Any], id: str | None = None,
           refresh: Refresh = None, timeout: float | None = None) -> dict[str, Any]:
    """Index (create or replace) a document; outputs id, result, response and
    connected_node.

    document: the document.
    id: its id (default: one Elasticsearch chooses).
    refresh: true, false or wait_for: make it searchable before answering.
    """
    out = _call(ctx, "index", {"index": index, "document": document, "id": id,
                               "refresh": refresh}, timeout)
    return {**out, "id": out["response"].get("_id"), "result": out["response"].get("result")}


@module.method
def create(ctx: StepContext, index: str, id: str, document: dict[str, Any],
           refresh: Refresh = None, timeout: float | None = None) -> dict[str, Any]:
    """Create a document, failing if its id exists; outputs id, result, response and
    connected_node."""
    out = _call(ctx, "create", {"index": index, "id": id, "document": document,
                                "refresh": refresh}, timeout)
    return {**out, "id": out["response"].get("_id"), "result": out["response"].get("result")}


@module.method
def update(ctx: StepContext, index: str, id: str, doc: dict[str, Any], upsert: bool = False,
           refresh: Refresh = None, timeout: float | None = None) -> dict[str, Any]:
    """Update fields of a document; outputs result, response and connected_node.

    doc: the fields to change.
    upsert: create the document from doc when it does not exist.
    """
    out = _call(ctx, "update", {"index": index, "id": id, "doc": doc, "upsert": upsert,
                                "refresh": refresh}, timeout)
    return {**out, "result": out["response"].get("result")}


@module.method
def delete(ctx: StepContext, index: str, id: str, refresh: Refresh = None,
           timeout: float | None = None) -> dict[str, Any]:
    """Delete a document; outputs result, response and connected_node."""
    out = _call(ctx, "delete", {"index": index, "id": id, "refresh": refresh}, timeout)
    return {**out, "result": out["response"].get("result")}


@module.method
def bulk(ctx: StepContext, operations: list[dict[str, Any]], index: str | None = None,
         refresh: Refresh = None, timeout: float | None = None) -> dict[str, Any]:
    """Run many operations in one request; outputs errors (true if any failed), items,
    response and connected_node. Fails the step if any operation failed.

    operations: each {action: index|create|update|delete, index, id, document}.
    index: the index of the operations that name none.
    """
    out = _call(ctx, "bulk", {"operations": operations, "index": index,
                              "refresh": refresh}, timeout)
    items = out["response"].get("items", [])
    if out["response"].get("errors"):
        failed = [next(iter(i.values())) for i in items
                  if next(iter(i.values())).get("error")]
        raise StepFailed(f"{len(failed)} of {len(items)} bulk operations failed: "
                         f"{str(failed[0].get('error'))[:300]}")
    return {**out, "errors": False, "items": len(items)}


@module.method
def create_index(ctx: StepContext, index: str, settings: dict[str, Any] | None = None,
                 mappings: dict[str, Any] | None = None,
                 aliases: dict[str, Any] | None = None,
                 timeout: float | None = None) -> dict[str, Any]:
    """Create an index; outputs acknowledged, response and connected_node."""
    out = _call(ctx, "create_index", {"index": index, "settings": settings,
                                      "mappings": mappings, "aliases": aliases}, timeout)
    return {**out, "acknowledged": bool(out["response"].get("acknowledged"))}


@module.method
def delete_index(ctx: StepContext, index: str, timeout: float | None = None) -> dict[str, Any]:
    """Delete an index; outputs acknowledged, response and connected_node."""
    out = _call(ctx, "delete_index", {"index": index}, timeout)
    return {**out, "acknowledged": bool(out["response"].get("acknowledged"))}


@module.method
def health(ctx: StepContext, index: str | None = None,
           timeout: float | None = None) -> dict[str, Any]:
    """The cluster's (or an index's) health; outputs status (green, yellow, red),
    response and connected_node."""
    out = _call(ctx, "health", {"index": index}, timeout)
    return {**out, "status": out["response"].get("status")}
