"""``mysql``: MySQL and MariaDB through a named connection (PyMySQL).

Every method runs on the step's ``connection`` (type ``mysql``; ``login``, the
``password`` credential, and the options ``database``, ``charset``, ``ssl_ca``,
``ssl_verify``), through this worker process's pool: the first host that answers,
in order, is the outputs' ``connected_node`` (docs/connections.md).

**SQL is never built from values.** ``sql`` (and a text ``where``) is SQL the author
wrote: the plan refuses a reference inside it (``sql_params``), and values go in
``params`` as bound parameters (``%s`` placeholders with a list, ``%(name)s`` with an
object), which the driver escapes. Table and column names in ``insert``, ``update``
and ``upsert`` must be plain identifiers (``name`` or ``schema.name``) and are quoted
with backquotes. One statement per call (multi-statements are off).

Rows come back as objects keyed by column name, JSON-safe (modules/jsonsafe.py).
Each call commits on its own (autocommit): a step is one unit of work; several
statements that must commit together belong in one ``execute`` of a stored procedure
or in one step's SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from chordflow.connections.catalog import Resolved
from chordflow.connections.models import Host
from chordflow.connections.pool import Session
from chordflow.connections.use import operation_timeout, run_on
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.jsonsafe import plain
from chordflow.modules.registry import StepModule

#: runs_code=True: its SQL is the caller's code, run with the connection's rights.
module = StepModule("mysql", "MySQL/MariaDB queries with bound parameters.",
                    default_method="query", runs_code=True, connection_types=("mysql",))

#: Seconds one statement may take unless the method's ``timeout`` says otherwise.
DEFAULT_TIMEOUT = 60.0
#: Rows a query returns at most unless ``max_rows`` says otherwise (outputs are bounded).
DEFAULT_MAX_ROWS = 10_000
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}(\.[A-Za-z_][A-Za-z0-9_$]{0,63})?$")
#: MySQL client errors that mean the connection itself is gone.
_LOST = {2003, 2006, 2013, 2014, 2045, 2055}

Params = list[Any] | dict[str, Any] | None


class MySQLDriver:
    """PyMySQL clients (chordflow.connections.pool.Driver)."""

    types: tuple[str, ...] = ("mysql",)

    def open(self, resolved: Resolved, host: Host, timeout: float) -> Any:
        import pymysql
        import pymysql.cursors

        conn, options = resolved.connection, resolved.connection.options
        ssl: dict[str, Any] | None = None
        if options.get("ssl_ca") or options.get("ssl"):
            ssl = {"ca": options["ssl_ca"]} if options.get("ssl_ca") else {}
            ssl["check_hostname"] = bool(options.get("ssl_verify", True))
        return pymysql.connect(
            host=host.host, port=host.port, user=conn.login or "root",
            password=resolved.credential("password") or "",
            database=options.get("database"), charset=options.get("charset", "utf8mb4"),
            connect_timeout=max(1, int(round(timeout))), read_timeout=DEFAULT_TIMEOUT,
            write_timeout=DEFAULT_TIMEOUT, autocommit=True, ssl=ssl,
            cursorclass=pymysql.cursors.DictCursor,
        )

    def close(self, client: Any) -> None:
        client.close()

    def broken(self, exc: BaseException) -> bool:
        import pymysql

        if isinstance(exc, pymysql.err.OperationalError):
            return bool(exc.args) and exc.args[0] in _LOST
        return isinstance(exc, pymysql.err.InterfaceError | OSError)

    def alive(self, client: Any) -> bool:
        if getattr(client, "_chordflow_spent", False):
            return False
        try:
            client.ping(reconnect=False)
            return True
        except Exception:
            return False


DRIVER = MySQLDriver()


def ident(name: str, what: str) -> str:
    """A table or column name, backquoted; StepFailed for anything else."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise StepFailed(f"params.{what}: {name!r} is not a plain identifier (letters, "
                         "digits, '_', '$'; 'schema.table' for another database)")
    return ".".join(f"`{part}`" for part in name.split("."))


def _run(ctx: StepContext, database: str | None, timeout: float | None,
         work: Any) -> dict[str, Any]:
    """``work(cursor)`` on a pooled client; outputs plus ``connected_node``."""
    import pymysql

    limit = operation_timeout(ctx, timeout, DEFAULT_TIMEOUT)

    def on(session: Session[Any]) -> dict[str, Any]:
        client = session.client
        # PyMySQL applies a changed read timeout to its socket before the next read.
        client._read_timeout = client._write_timeout = limit
        if database:
            client.select_db(database)
        try:
            with client.cursor() as cursor:
                out = work(cursor)
        finally:
            if database:  # the next borrower gets the connection's own database
                if client.db:
                    client.select_db(client.db)
                else:  # none to go back to: this client is not lent again
                    client._chordflow_spent = True
        return {**out, "connected_node": session.node}

    try:
        return run_on(ctx, DRIVER, on)
    except pymysql.MySQLError as exc:
        code = exc.args[0] if exc.args else ""
        text = exc.args[1] if len(exc.args) > 1 else str(exc)
        raise StepFailed(f"MySQL error {code}: {text}") from None


def _rows(cursor: Any, max_rows: int) -> dict[str, Any]:
    rows = cursor.fetchmany(max_rows + 1) if cursor.description else []
    if len(rows) > max_rows:
        raise StepFailed(f"the query returned more than {max_rows:,} rows (max_rows); "
                         "page it with LIMIT, or raise max_rows")
    columns = [d[0] for d in cursor.description or ()]
    return {"rows": plain(list(rows)), "columns": columns, "count": len(rows)}


@module.method(sql_params={"sql"})
def query(ctx: StepContext, sql: str, params: Params = None, database: str | None = None,
          max_rows: int = DEFAULT_MAX_ROWS, timeout: float | None = None) -> dict[str, Any]:
    """Run a SELECT (or any statement returning rows); outputs rows, columns, count and
    connected_node.

    sql: the statement, with %s (params a list) or %(name)s (params an object)
        placeholders; no reference may appear in it.
    params: the values of the placeholders, bound by the driver (never pasted).
    database: run in this database (default: the connection's).
    max_rows: fail rather than return more rows than this.
    timeout: seconds the statement may take (default 60; the step's timeout also applies).
    """
    return _run(ctx, database, timeout,
                lambda cur: (cur.execute(sql, params), _rows(cur, max_rows))[1])


@module.method(sql_params={"sql"})
def execute(ctx: StepContext, sql: str, params: Params = None,
            many: list[list[Any] | dict[str, Any]] | None = None,
            database: str | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Run a statement (DDL, INSERT, UPDATE, DELETE, CALL); outputs affected_rows,
    last_insert_id and connected_node.

    sql: the statement with placeholders; no reference may appear in it.
    params: the values of its placeholders.
    many: a list of parameter sets: the statement runs once per set (executemany).
    database: run in this database (default: the connection's).
    timeout: seconds the statement may take (default 60).
    """
    def work(cur: Any) -> dict[str, Any]:
        affected = cur.executemany(sql, many) if many is not None else cur.execute(sql, params)
        return {"affected_rows": int(affected or 0), "last_insert_id": cur.lastrowid}

    return _run(ctx, database, timeout, work)


def _records(data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    rows = [data] if isinstance(data, Mapping) else list(data)
    if not rows or not all(isinstance(r, Mapping) and r for r in rows):
        raise StepFailed("params.data: an object (one row) or a non-empty list of "
                         "non-empty objects")
    return rows


def _columns(rows: list[Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return list(names)


def _insert_sql(table: str, columns: list[str], suffix: str = "") -> str:
    cols = ", ".join(ident(c, "data") for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {ident(table, 'table')} ({cols}) VALUES ({marks}){suffix}"


@module.method
def insert(ctx: StepContext, table: str, data: dict[str, Any] | list[dict[str, Any]],
           database: str | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Insert one row (an object) or many (a list); outputs affected_rows, last_insert_id
    and connected_node.

    table: the table (a plain name, or database.table).
    data: column -> value, or a list of those (missing columns are NULL).
    """
    rows = _records(data)
    columns = _columns(rows)
    sql = _insert_sql(table, columns)
    values = [[row.get(c) for c in columns] for row in rows]
    return _run(ctx, database, timeout,
                lambda cur: {"affected_rows": int(cur.executemany(sql, values) or 0),
                             "last_insert_id": cur.lastrowid})


def _where(where: Mapping[str, Any] | str,
           where_params: Params) -> tuple[str, list[Any] | dict[str, Any]]:
    if isinstance(where, str):
        if not where.strip():
            raise StepFailed("params.where: must not be empty (update every row with "
                             "where '1=1', on purpose)")
        return where, where_params if where_params is not None else []
    if not where:
        raise StepFailed("params.where: must name at least one column (update every "
                         "row with where '1=1', on purpose)")
    parts, values = [], []
    for col, value in where.items():
        if value is None:
            parts.append(f"{ident(col, 'where')} IS NULL")
        else:
            parts.append(f"{ident(col, 'where')} = %s")
            values.append(value)
    return " AND ".join(parts), values


@module.method(sql_params={"where"})
def update(ctx: StepContext, table: str, where: dict[str, Any] | str, data: dict[str, Any],
           where_params: Params = None, database: str | None = None,
           timeout: float | None = None) -> dict[str, Any]:
    """Update the rows that match ``where``; outputs affected_rows and connected_node.

    table: the table (a plain name, or database.table).
    where: column -> value (all must match; null matches NULL), or SQL text with
        placeholders whose values are where_params (no reference in the text).
    data: column -> new value.
    where_params: the values of a text where's placeholders (a list).
    """
    if not data:
        raise StepFailed("params.data: name at least one column to set")
    cond, cond_values = _where(where, where_params)
    sets = ", ".join(f"{ident(c, 'data')} = %s" for c in data)
    sql = f"UPDATE {ident(table, 'table')} SET {sets} WHERE {cond}"
    if isinstance(cond_values, dict):
        raise StepFailed("params.where_params: a list (the text where's %s placeholders)")
    values = [*data.values(), *cond_values]
    return _run(ctx, database, timeout,
                lambda cur: {"affected_rows": int(cur.execute(sql, values) or 0)})


@module.method
def upsert(ctx: StepContext, table: str, data: dict[str, Any] | list[dict[str, Any]],
           key_cols: list[str] | None = None, update_cols: list[str] | None = None,
           database: str | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Insert rows, updating those whose primary or unique key exists already
    (INSERT ... ON DUPLICATE KEY UPDATE); outputs affected_rows (1 per row inserted, 2
    per row changed, as MySQL counts) and connected_node.

    table: the table (a plain name, or database.table).
    data: a row (an object) or a list of rows.
    key_cols: the columns of the unique key the rows match on (the table's keys decide;
        these are left out of the update).
    update_cols: the columns to update on a match (default: every other column given).
    """
    rows = _records(data)
    columns = _columns(rows)
    keys = set(key_cols or ())
    for c in keys:
        ident(c, "key_cols")
    changing = update_cols if update_cols is not None else [c for c in columns if c not in keys]
    if not changing:
        raise StepFailed("params.update_cols: nothing to update on a match")
    sets = ", ".join(f"{ident(c, 'update_cols')} = VALUES({ident(c, 'update_cols')})"
                     for c in changing)
    sql = _insert_sql(table, columns, f" ON DUPLICATE KEY UPDATE {sets}")
    values = [[row.get(c) for c in columns] for row in rows]
    return _run(ctx, database, timeout,
                lambda cur: {"affected_rows": int(cur.executemany(sql, values) or 0)})


@module.method
def show_databases(ctx: StepContext, timeout: float | None = None) -> dict[str, Any]:
    """List the databases the connection's user sees; outputs databases and
    connected_node."""
    return _run(ctx, None, timeout, lambda cur: (
        cur.execute("SHOW DATABASES"),
        {"databases": [next(iter(r.values())) for r in cur.fetchall()]})[1])


@module.method
def show_tables(ctx: StepContext, database: str | None = None,
                timeout: float | None = None) -> dict[str, Any]:
    """List the tables of a database; outputs tables and connected_node.

    database: the database (default: the connection's).
    """
    return _run(ctx, database, timeout, lambda cur: (
        cur.execute("SHOW TABLES"),
        {"tables": [next(iter(r.values())) for r in cur.fetchall()]})[1])


@module.method
def check(ctx: StepContext, timeout: float | None = None) -> dict[str, Any]:
    """Connect (failing over as the connection says) and report the server; outputs
    connected_node and version. What a platform ``connect`` procedure becomes."""
    return _run(ctx, None, timeout, lambda cur: (
        cur.execute("SELECT VERSION() AS version"), {"version": cur.fetchone()["version"]})[1])
