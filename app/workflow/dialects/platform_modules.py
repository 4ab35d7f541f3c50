"""The replaced platform's modules (``mod``/``method``) mapped onto chordflow's own.

Two kinds of procedure need more than a new name:

- A ``connect`` / ``cluster_connect`` (``connect_producer`` ...) opened a client the
  platform kept in its run's memory for the procedures after it. A chordflow step may
  run on another host, so the connection becomes a *definition* instead: an inline
  ``connection`` (docs/connections.md) built from the connect's params, given to that
  procedure (a ``procedures.connect`` step answering ``connected_node``) and to every
  later procedure of the same module until its ``disconnect``. Each worker connects
  itself, through its own pool. Its params must be literal (``@var.`` is read from the
  workflow's variables); a password or key is a secret: ``@sys.NAME`` (never a clear
  value, which would be recorded). A procedure's own ``connection:`` (a named one)
  replaces the connect's params.
- ``Prometheus.dicts2prom`` registered metrics that a later ``push`` or ``write`` sent;
  here each ``dicts2prom`` describes its metric and the ``push``/``write`` builds them.

Parameter names are translated where they differ; times in milliseconds become seconds.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chordflow.errors import WorkflowError


@dataclass(frozen=True)
class Target:
    """What one platform method becomes."""

    module: str
    method: str
    renames: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: Opens the module's implicit connection (of this type).
    connects: str | None = None
    #: Ends it.
    disconnects: bool = False
    #: Runs on the module's connection.
    uses_connection: bool = False
    #: Rewrites the (converted) params: (params, connection state, errors) -> params.
    adjust: Callable[[dict[str, Any], Family, Problems], dict[str, Any]] | None = None
    #: The params (of the procedure's raw params) whose ``@var.x`` is read when the
    #: workflow is loaded, because they define the step's own connection (a connect's
    #: are all read so).
    load_time: Callable[[Mapping[str, Any]], frozenset[str]] | None = None
    #: Declared outputs added beside ``status: true``, over the native outputs
    #: (``${outputs.K}``): where the native method's own ``status`` means something else.
    outputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Family:
    """What a module's procedures share between connect and disconnect."""

    connection: dict[str, Any] | str | None = None
    #: What the connect said that later procedures take as params (Kafka's topics,
    #: Prometheus's job and gateway).
    carried: dict[str, Any] = field(default_factory=dict)
    #: The connect's params were wrong (and reported): no connection, no more errors.
    broken: bool = False
    #: Prometheus: the metrics described since connect, with their data (a reference
    #: or the records themselves).
    metrics: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)


class Problems:
    """Collects the errors of one procedure, located at its step."""

    def __init__(self, step: str, errors: list[WorkflowError]):
        self.step, self.errors = step, errors

    def add(self, message: str, fld: str) -> None:
        self.errors.append(WorkflowError(message, step=self.step, field=fld))


def _same(module: str, names: dict[str, str] | None = None,
          **more: Target) -> dict[str, Target]:
    """Methods that keep their name (``names``: platform -> native where not)."""
    table = {old: Target(module, new) for old, new in (names or {}).items()}
    table.update(more)
    return table


def _connected(module: str, kind: str, methods: dict[str, str],
               cluster: bool = False) -> dict[str, Target]:
    """A stateful module: connect, disconnect, and methods on its connection."""
    table = {
        "connect": Target("procedures", "connect", connects=kind),
        "disconnect": Target("procedures", "disconnect", disconnects=True),
    }
    for old, new in methods.items():
        table[old] = Target(module, new, uses_connection=True)
    if cluster:
        table["cluster_connect"] = Target("procedures", "connect", connects=kind)
        table["cluster_disconnect"] = Target("procedures", "disconnect", disconnects=True)
    return table


def _script_args(params: dict[str, Any], family: Family, problems: Problems
                 ) -> dict[str, Any]:
    """``run_script``'s ``args`` was one string; the native method takes a list."""
    args = params.get("args")
    if isinstance(args, str):
        if "${" in args:
            problems.add("a reference in 'args' cannot be split into arguments; give a "
                         "list", "params.args")
        else:
            params["args"] = shlex.split(args) if args.strip() else None
    return params


def _consume(params: dict[str, Any], family: Family, problems: Problems) -> dict[str, Any]:
    """Kafka's ``consume`` reads what ``connect_consumer`` subscribed to."""
    out = {k: v for k, v in family.carried.items()
           if k in ("topics", "group_id", "auto_offset_reset")}
    out.update(params)
    if "timeout_ms" in out:
        out["timeout"] = _seconds(out.pop("timeout_ms"), problems, "params.timeout_ms")
    if "topics" not in out:
        problems.add("no topics: connect_consumer names them (or give 'topics')",
                     "params.topics")
    return out


def _metric(params: dict[str, Any], family: Family, problems: Problems) -> dict[str, Any]:
    """``dicts2prom``: one metric described from its params, built from its data."""
    spec: dict[str, Any] = {"name": params.get("metric_name"),
                            "help": params.get("metric_desc", ""),
                            "type": params.get("metric_type", "gauge"),
                            "value": params.get("value_col", "value"),
                            "labels": params.get("label_cols") or []}
    if params.get("buckets"):
        spec["buckets"] = params["buckets"]
    if params.get("static_labels"):
        problems.add("static labels are not supported: add the label to the records "
                     "(a column) and name it in label_cols", "params.static_labels")
    if "data" not in params:
        problems.add("required parameter is missing", "params.data")
    family.metrics.append((params.get("data"), spec))
    return {"data": params.get("data"), "metrics": [spec]}


def _built(params: dict[str, Any], family: Family, problems: Problems,
           ) -> dict[str, Any]:
    """``push`` / ``write``: every metric described since connect, from their data."""
    if not family.metrics:
        problems.add("no dicts2prom procedure before it describes a metric", "method")
        return params
    data = {json.dumps(d, sort_keys=True, default=str) for d, _ in family.metrics}
    if len(data) > 1:
        problems.add("the dicts2prom procedures before it read different data; "
                     "push or write after each", "method")
    out = {"data": family.metrics[0][0], "metrics": [s for _, s in family.metrics], **params}
    if "file_path" in out:
        out["path"] = out.pop("file_path")
    return out


def _push(params: dict[str, Any], family: Family, problems: Problems) -> dict[str, Any]:
    out = _built(params, family, problems)
    out.setdefault("job", family.carried.get("job", "chordflow"))
    if family.carried.get("gateway") and not family.connection:
        out.setdefault("gateway", family.carried["gateway"])
    return out


#: The key an ``adjust`` puts the step's own inline connection under (popped).
STEP_CONNECTION = "__connection__"


def _email_server(params: Mapping[str, Any]) -> frozenset[str]:
    """An ``email`` that logs in: its server becomes the step's connection, so its
    ``@var.`` are read at load time, as a connect's are."""
    if "username" in params or "password" in params:
        return frozenset({"smtp_host", "smtp_port", "username", "use_tls"})
    return frozenset()


def _email(params: dict[str, Any], family: Family, problems: Problems) -> dict[str, Any]:
    """``email`` logged in with ``username`` / ``password``: the SMTP server becomes the
    step's inline connection (the password a secret, ``@sys.NAME``)."""
    if "username" not in params and "password" not in params:
        return params
    out = dict(params)
    login, password = out.pop("username", None), out.pop("password", None)
    if _templated({k: out.get(k) for k in ("smtp_host", "smtp_port")}):
        problems.add("the SMTP server must be literal (or @var. of the workflow's "
                     "variables) when it logs in: it becomes the step's connection",
                     "params.smtp_host")
        return out
    host, port = out.pop("smtp_host", None), out.pop("smtp_port", None)
    if not host:
        problems.add("required parameter is missing", "params.smtp_host")
        return out
    connection: dict[str, Any] = {"type": "smtp",
                                  "hosts": [f"{host}:{port}" if port else str(host)]}
    if login:
        connection["login"] = login
    secret = secret_name(password, problems, "params.password")
    if secret:
        connection["credentials"] = {"password": secret}
    if "use_tls" in out:
        security = ("tls" if str(port) == "465" else "starttls") if out["use_tls"] else "none"
        connection["options"] = {"security": security}
    out[STEP_CONNECTION] = connection
    return out


#: mod -> method -> Target; a method not listed keeps its name on the module.
MODULES: dict[str, dict[str, Target]] = {
    "common.Bash": _same("bash", run=Target("bash", "run")),
    "common.Http": {m: Target("http", m, {"verify_ssl": "verify"})
                    for m in ("get", "post", "put", "delete", "patch", "head")},
    "common.FileIO": {m: Target("file", m, {"file_path": "path"}) for m in ("read", "write")},
    "common.Filter": {m: Target("filter", m)
                      for m in ("filter", "select", "sort", "dedup", "limit")},
    "common.Kt": {m: Target("kt", m) for m in ("prt", "prt1", "prt2")},
    "common.DataTransformer": _same("table", {"dicts2df": "to_columns",
                                              "df2dicts": "to_records"}),
    "common.Notify": {"email": Target("notify", "email", adjust=_email,
                                      load_time=_email_server),
                      "webhook": Target("notify", "webhook")},
    "common.Ssh": {
        **_connected("ssh", "ssh", {"run": "run", "upload": "upload",
                                    "download": "download"}),
        "run_script": Target("ssh", "run_script", uses_connection=True, adjust=_script_args),
    },
    "mysql.MySQL": {
        **_connected("mysql", "mysql", {
            "query": "query", "insert": "insert", "update": "update", "upsert": "upsert",
            "execute": "execute", "showDatabases": "show_databases",
            "showTables": "show_tables", "cluster_query": "query",
            "cluster_insert": "insert", "cluster_update": "update",
            "cluster_insertWithUK": "upsert", "cluster_upsert": "upsert",
            "cluster_execute": "execute"}, cluster=True),
    },
    "mongodb.MongoDB": _connected("mongodb", "mongodb", {
        **{m: m for m in ("find", "insert", "update", "delete", "count", "aggregate")},
        "findOne": "find_one",
        **{f"cluster_{m}": m for m in ("find", "insert", "update", "delete", "count",
                                       "aggregate")},
        "cluster_findOne": "find_one"}, cluster=True),
    "kafkaclient.Kafka": {
        "connect_producer": Target("procedures", "connect", connects="kafka"),
        "connect_consumer": Target("procedures", "connect", connects="kafka"),
        "disconnect": Target("procedures", "disconnect", disconnects=True),
        "send": Target("kafka", "send", uses_connection=True),
        "consume": Target("kafka", "consume", uses_connection=True, adjust=_consume),
        "list_topics": Target("kafka", "list_topics", uses_connection=True),
    },
    "elasticsearchclient.ElasticSearch": {
        **_connected("elasticsearch", "elasticsearch", {
            **{m: m for m in ("search", "get", "index", "create", "bulk", "update",
                              "delete")},
            "createIndex": "create_index", "deleteIndex": "delete_index"}),
        # Its native status is the cluster's colour: kept as health, status is true.
        "health": Target("elasticsearch", "health", uses_connection=True,
                         outputs={"health": "${outputs.status}"}),
    },
    "prometheus.Prometheus": {
        "connect": Target("procedures", "connect", connects="pushgateway"),
        "disconnect": Target("procedures", "disconnect", disconnects=True),
        "dicts2prom": Target("prometheus", "build", adjust=_metric),
        "push": Target("prometheus", "push", uses_connection=True, adjust=_push),
        "write": Target("prometheus", "write", adjust=_built),
    },
}

#: The connection type each stateful module's connect opens.
CONNECTION_TYPE = {mod: next(t.connects for t in methods.values() if t.connects)
                   for mod, methods in MODULES.items()
                   if any(t.connects for t in methods.values())}


def target(mod: str, method: str | None) -> Target | None:
    """The native method of ``mod``/``method``; None for a module not mapped here (a
    chordflow module, or the platform's own class loaded from the modules path)."""
    methods = MODULES.get(mod)
    if methods is None:
        return None
    if method in methods:
        return methods[method]
    # An unlisted method: the module's own name for it (an error names the methods).
    any_target = next(iter(methods.values()))
    native = "connect" if any_target.module == "procedures" else any_target.module
    return Target(native, method or "", uses_connection=mod in CONNECTION_TYPE)


# -- connect params -> a connection definition ---------------------------------------------

def _seconds(value: Any, problems: Problems, fld: str) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000.0
    problems.add("must be a number of milliseconds", fld)
    return None


def secret_name(value: Any, problems: Problems, fld: str) -> str | None:
    """A credential param: ``@sys.NAME`` (converted to ``${secrets.NAME}``) names the
    secret; empty means none; a clear value is refused (it would be recorded)."""
    if value in (None, ""):
        return None
    text = str(value)
    if text.startswith("${secrets.") and text.endswith("}") and text.count("${") == 1:
        return text[len("${secrets."):-1]
    problems.add("a credential in a workflow would be recorded in clear: put it in a "
                 "secret (CHORDFLOW_SECRETS) and write '@sys.NAME'", fld)
    return None


def _templated(value: Any) -> bool:
    """Holds a reference other than a secret's (a credential's ``@sys.NAME``)?"""
    if isinstance(value, str):
        return "${" in re.sub(r"^\$\{secrets\.[\w.\-]+\}$", "", value)
    if isinstance(value, Mapping):
        return any(_templated(v) for v in value.values())
    if isinstance(value, list):
        return any(_templated(v) for v in value)
    return False


def _literal(params: Mapping[str, Any], problems: Problems,
             credentials: frozenset[str]) -> None:
    for key, value in params.items():
        if key in credentials:
            continue
        if _templated(value):
            problems.add("a connect's params must be literal (or @var. of the workflow's "
                         "variables): the connection is defined before anything runs",
                         f"params.{key}")


def _hosts_of(entries: list[Mapping[str, Any]], default_port: int | None,
              problems: Problems) -> list[str]:
    hosts = []
    for i, entry in enumerate(entries):
        if not entry.get("host"):
            problems.add("required parameter is missing", f"params.hosts[{i}].host")
            continue
        port = entry.get("port", default_port)
        hosts.append(f"{entry['host']}:{port}" if port else str(entry["host"]))
    return hosts


#: Keys of a connect's params that become the connection's options, per type.
_OPTIONS = {
    "mysql": ("database", "charset", "ssl_ca", "ssl_verify"),
    "mongodb": ("database", "auth_source", "replica_set", "tls", "tls_ca_file",
                "tls_ca_url", "tls_ca_base64", "tls_certificate_key_file",
                "tls_allow_invalid_certificates"),
    "ssh": ("host_key", "known_hosts", "insecure_skip_host_key_check"),
    "kafka": ("client_id", "acks", "retries", "security_protocol", "sasl_mechanism",
              "ssl_check_hostname", "ssl_ca_file", "ssl_cert_file", "ssl_key_file"),
    "elasticsearch": ("verify_certs",),
    "pushgateway": (),
}
_CREDENTIALS = frozenset({"password", "key_file", "api_key", "sasl_plain_password",
                          "basic_auth"})
_CARRIED = {"kafka": ("group_id", "topics", "auto_offset_reset"),
            "pushgateway": ("job", "gateway")}


def connection_of(kind: str, params: Mapping[str, Any], family: Family,
                  problems: Problems) -> dict[str, Any] | None:
    """The inline connection a connect procedure's params define (None on errors)."""
    before = len(problems.errors)
    _literal(params, problems, _CREDENTIALS)
    definition: dict[str, Any] = {"type": kind}
    credentials: dict[str, str] = {}
    family.carried = {k: params[k] for k in _CARRIED.get(kind, ()) if k in params}
    if kind == "kafka":
        servers = params.get("bootstrap_servers")
        hosts = [h.strip() for h in servers.split(",")] if isinstance(servers, str) \
            else list(servers or [])
        definition["login"] = params.get("sasl_plain_username")
        secret = secret_name(params.get("sasl_plain_password"), problems,
                             "params.sasl_plain_password")
        if secret:
            credentials["password"] = secret
    elif kind == "elasticsearch":
        raw = params.get("hosts") or ["http://localhost:9200"]
        hosts = [raw] if isinstance(raw, str) else list(raw)
        auth = params.get("basic_auth") or {}
        if auth:
            definition["login"] = auth.get("username")
            secret = secret_name(auth.get("password"), problems, "params.basic_auth.password")
            if secret:
                credentials["password"] = secret
        secret = secret_name(params.get("api_key"), problems, "params.api_key")
        if secret:
            credentials["api_key"] = secret
        if params.get("ca_certs"):
            definition["options"] = {"tls_ca_file": params["ca_certs"]}
    elif kind == "pushgateway":
        hosts = [params["gateway"]] if params.get("gateway") else []
        if not hosts:  # write to a textfile only: no gateway to connect to
            return None
    elif "hosts" in params:  # cluster_connect
        entries = params["hosts"]
        if not isinstance(entries, list) or not entries or \
                not all(isinstance(e, Mapping) for e in entries):
            problems.add("a list of {host, port, username, password, database}",
                         "params.hosts")
            return None
        hosts = _hosts_of(entries, None, problems)
        first = entries[0]
        for key in ("username", "password", "database"):
            if len({str(e.get(key)) for e in entries}) > 1:
                problems.add(f"every host must have the same {key} (one connection "
                             "has one login)", f"params.hosts[*].{key}")
        definition["login"] = first.get("username")
        secret = secret_name(first.get("password"), problems, "params.hosts[0].password")
        if secret:
            credentials["password"] = secret
        params = {**{k: v for k, v in first.items() if k not in ("host", "port")},
                  **params}
        if "timeout" in params:
            definition["timeout"] = _seconds(params["timeout"], problems, "params.timeout")
        for key in ("retry_count", "retry_delay", "retry_on_error"):
            if key in params:
                definition[key] = params[key]
    else:
        if not params.get("host"):
            problems.add("required parameter is missing", "params.host")
            return None
        port = params.get("port")
        hosts = [f"{params['host']}:{port}" if port else str(params["host"])]
        definition["login"] = params.get("username")
        secret = secret_name(params.get("password"), problems, "params.password")
        if secret:
            credentials["password"] = secret
        if kind == "ssh":
            key_file = params.get("key_file")
            if isinstance(key_file, str) and key_file and \
                    not key_file.startswith("${secrets."):
                # Their key_file was a path on the one host they ran on (never echoed:
                # it might be the key itself).
                problems.add("a key file is on one host, and a step may run on any "
                             "worker: put the key's text in a secret (CHORDFLOW_SECRETS, "
                             "or a file in CHORDFLOW_SECRETS_DIR) and write '@sys.NAME'",
                             "params.key_file")
            else:
                key_secret = secret_name(key_file, problems, "params.key_file")
                if key_secret:
                    credentials["private_key"] = key_secret
            if isinstance(params.get("timeout"), int | float):
                definition["timeout"] = params["timeout"]
    definition["hosts"] = hosts
    options = {k: params[k] for k in _OPTIONS[kind] if k in params}
    if options:
        definition["options"] = {**definition.get("options", {}), **options}
    if credentials:
        definition["credentials"] = credentials
    if not definition.get("login"):
        definition.pop("login", None)
    return definition if len(problems.errors) == before else None
