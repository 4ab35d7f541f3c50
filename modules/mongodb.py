"""``mongodb``: MongoDB through a named connection (pymongo).

Every method runs on the step's ``connection`` (type ``mongodb``): ``login``, the
``password`` credential, and the options ``database`` (the default of ``database``),
``auth_source`` (default: ``admin``), ``replica_set`` (then ``hosts`` are one replica
set's seed list, and pymongo picks the primary), ``tls`` and a CA as ``tls_ca_file``,
``tls_ca_url`` or ``tls_ca_base64`` (app/connections/tls.py), a client certificate as
``tls_certificate_key_file`` / ``_url`` / ``_base64``, ``tls_allow_invalid_certificates``.
Without ``replica_set`` the hosts are tried in order, each as a single server: the
first that answers is the outputs' ``connected_node``.

Queries, updates and documents are data. A parameter that is exactly one reference
keeps the referenced value's type, so a variable holding ``{"$gt": ""}`` is a filter,
as the author of ``{"name": "${variables.name}"}`` may not expect: match a value that
comes from outside exactly with ``{"name": {"$eq": "${variables.name}"}}``, under which
an object is compared as a value, never read as operators. Documents
come back JSON-safe: ObjectId as its hex text, dates as ISO 8601 (modules/jsonsafe.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from chordflow.connections.catalog import Resolved
from chordflow.connections.models import Host
from chordflow.connections.pool import Session
from chordflow.connections.tls import cert_file
from chordflow.connections.use import operation_timeout, resolved_connection, run_on
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.jsonsafe import plain
from chordflow.modules.registry import StepModule

#: runs_code=False: queries and documents are data (a server-side ``$where`` is the
#: database's to allow or not).
module = StepModule("mongodb", "MongoDB: find, insert, update, delete, count, aggregate.",
                    default_method="find", runs_code=False, connection_types=("mongodb",))

DEFAULT_TIMEOUT = 60.0
DEFAULT_LIMIT = 10_000

Sort = list[list[Any]] | dict[str, int] | None


class MongoDriver:
    """pymongo clients, one per host (chordflow.connections.pool.Driver)."""

    types: tuple[str, ...] = ("mongodb",)

    def open(self, resolved: Resolved, host: Host, timeout: float) -> Any:
        import pymongo

        conn, options = resolved.connection, resolved.connection.options
        kwargs: dict[str, Any] = {
            "serverSelectionTimeoutMS": int(timeout * 1000),
            "connectTimeoutMS": int(timeout * 1000),
            "socketTimeoutMS": int(DEFAULT_TIMEOUT * 1000),
        }
        if conn.login:
            kwargs.update(username=conn.login, password=resolved.credential("password") or "",
                          authSource=options.get("auth_source", "admin"))
        if options.get("replica_set"):
            hosts: Any = [h.node for h in conn.parsed_hosts()]
            kwargs["replicaSet"] = options["replica_set"]
        else:
            hosts, kwargs["directConnection"] = host.node, True
        ca = cert_file(options, "tls_ca")
        key = cert_file(options, "tls_certificate_key")
        if options.get("tls") or ca or key:
            kwargs["tls"] = True
            if ca:
                kwargs["tlsCAFile"] = ca
            if key:
                kwargs["tlsCertificateKeyFile"] = key
            if options.get("tls_allow_invalid_certificates"):
                kwargs["tlsAllowInvalidCertificates"] = True
        client: Any = pymongo.MongoClient(hosts, **kwargs)
        try:
            client.admin.command("ping")
        except Exception:
            client.close()
            raise
        return client

    def close(self, client: Any) -> None:
        client.close()

    def broken(self, exc: BaseException) -> bool:
        from pymongo.errors import ConnectionFailure

        return isinstance(exc, ConnectionFailure)

    def alive(self, client: Any) -> bool:
        return True  # pymongo reconnects its own sockets; a failure surfaces as broken


DRIVER = MongoDriver()


def _call(ctx: StepContext, database: str | None, collection: str, timeout: float | None,
          work: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    from pymongo.errors import PyMongoError

    if not collection:
        raise StepFailed("params.collection: must name a collection")
    limit = operation_timeout(ctx, timeout, DEFAULT_TIMEOUT)
    default_db = resolved_connection(ctx, DRIVER.types).connection.options.get("database")
    name = database or default_db
    if not name:
        raise StepFailed("params.database: name a database (or set the connection's "
                         "options.database)")

    def on(session: Session[Any]) -> dict[str, Any]:
        import pymongo

        with pymongo.timeout(limit):
            out = work(session.client[name][collection])
        return {**out, "connected_node": session.node}

    try:
        return run_on(ctx, DRIVER, on)
    except PyMongoError as exc:
        raise StepFailed(f"MongoDB: {type(exc).__name__}: {exc}") from None


def _sort(sort: Sort) -> list[tuple[str, int]] | None:
    if not sort:
        return None
    pairs = list(sort.items()) if isinstance(sort, Mapping) else [tuple(p) for p in sort]
    out = []
    for pair in pairs:
        if len(pair) != 2 or pair[1] not in (1, -1):
            raise StepFailed("params.sort: [field, 1 or -1] pairs, or {field: 1 or -1}")
        out.append((str(pair[0]), int(pair[1])))
    return out


@module.method
def find(ctx: StepContext, collection: str, query: dict[str, Any] | None = None,
         projection: dict[str, Any] | list[str] | None = None, sort: Sort = None,
         limit: int = DEFAULT_LIMIT, skip: int = 0, database: str | None = None,
         timeout: float | None = None) -> dict[str, Any]:
    """Find documents; outputs documents, count and connected_node.

    collection: the collection.
    query: the filter (default: every document).
    projection: the fields to return (an object, or a list of names).
    sort: [[field, 1 or -1], ...] or {field: 1 or -1}.
    limit: at most this many documents (default 10,000: outputs are bounded).
    skip: skip this many first.
    database: the database (default: the connection's options.database).
    timeout: seconds the operation may take (default 60).
    """
    def work(coll: Any) -> dict[str, Any]:
        cursor = coll.find(query or {}, projection, skip=skip, limit=limit,
                           sort=_sort(sort))
        docs = plain(list(cursor))
        return {"documents": docs, "count": len(docs)}

    return _call(ctx, database, collection, timeout, work)


@module.method
def find_one(ctx: StepContext, collection: str, query: dict[str, Any] | None = None,
             projection: dict[str, Any] | list[str] | None = None, sort: Sort = None,
             database: str | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Find one document; outputs document (null when none matches), found and
    connected_node.

    collection: the collection.
    query: the filter.
    projection: the fields to return.
    sort: which document comes first when several match.
    """
    def work(coll: Any) -> dict[str, Any]:
        doc = coll.find_one(query or {}, projection, sort=_sort(sort))
        return {"document": plain(doc), "found": doc is not None}

    return _call(ctx, database, collection, timeout, work)


@module.method
def insert(ctx: StepContext, collection: str, data: dict[str, Any] | list[dict[str, Any]],
           database: str | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Insert a document (an object) or many (a list); outputs inserted_ids, count and
    connected_node.

    collection: the collection.
    data: the document or documents.
    """
    docs = [dict(data)] if isinstance(data, Mapping) else [dict(d) for d in data]
    if not docs:
        raise StepFailed("params.data: no document to insert")

    def work(coll: Any) -> dict[str, Any]:
        ids = coll.insert_many(docs).inserted_ids
        return {"inserted_ids": plain(ids), "count": len(ids)}

    return _call(ctx, database, collection, timeout, work)


@module.method
def update(ctx: StepContext, collection: str, query: dict[str, Any], data: dict[str, Any],
           upsert: bool = False, many: bool = True, database: str | None = None,
           timeout: float | None = None) -> dict[str, Any]:
    """Update the documents matching ``query``; outputs matched, modified, upserted_id
    and connected_node.

    collection: the collection.
    query: the filter.
    data: the update: update operators ({"$set": ...}), or fields to set.
    upsert: insert a document when none matches.
    many: update every match (false: the first only).
    """
    change = data if data and all(str(k).startswith("$") for k in data) else {"$set": data}

    def work(coll: Any) -> dict[str, Any]:
        fn = coll.update_many if many else coll.update_one
        result = fn(query, change, upsert=upsert)
        return {"matched": result.matched_count, "modified": result.modified_count,
                "upserted_id": plain(result.upserted_id)}

    return _call(ctx, database, collection, timeout, work)


@module.method
def delete(ctx: StepContext, collection: str, query: dict[str, Any], many: bool = True,
           database: str | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Delete the documents matching ``query``; outputs deleted and connected_node.

    collection: the collection.
    query: the filter; {} deletes every document, on purpose only.
    many: delete every match (false: the first only).
    """
    def work(coll: Any) -> dict[str, Any]:
        fn = coll.delete_many if many else coll.delete_one
        return {"deleted": fn(query).deleted_count}

    return _call(ctx, database, collection, timeout, work)


@module.method
def count(ctx: StepContext, collection: str, query: dict[str, Any] | None = None,
          database: str | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Count the documents matching ``query``; outputs count and connected_node."""
    return _call(ctx, database, collection, timeout,
                 lambda coll: {"count": coll.count_documents(query or {})})


@module.method
def aggregate(ctx: StepContext, collection: str, pipeline: list[dict[str, Any]],
              limit: int = DEFAULT_LIMIT, database: str | None = None,
              timeout: float | None = None) -> dict[str, Any]:
    """Run an aggregation pipeline; outputs documents, count and connected_node.

    pipeline: the stages.
    limit: fail rather than return more documents than this.
    """
    def work(coll: Any) -> dict[str, Any]:
        docs: list[Any] = []
        for doc in coll.aggregate(pipeline):
            if len(docs) == limit:
                raise StepFailed(f"the pipeline returned more than {limit:,} documents "
                                 "(limit); add a $limit stage, or raise limit")
            docs.append(doc)
        return {"documents": plain(docs), "count": len(docs)}

    return _call(ctx, database, collection, timeout, work)


@module.method
def check(ctx: StepContext, timeout: float | None = None) -> dict[str, Any]:
    """Connect (failing over as the connection says) and ping; outputs connected_node
    and version."""
    limit = operation_timeout(ctx, timeout, DEFAULT_TIMEOUT)

    def on(session: Session[Any]) -> dict[str, Any]:
        import pymongo

        with pymongo.timeout(limit):
            info = session.client.server_info()
        return {"version": info.get("version"), "connected_node": session.node}

    return run_on(ctx, DRIVER, on)
