"""``chordflow dev``: a whole local cluster in one terminal, for trying and developing.

It starts Redis, a MongoDB (``CHORDFLOW_MONGO_URL`` if it answers, else nx-27017), one
worker with the beat, the API and Flower (``chordflow.devcluster``), prints their URLs,
an admin API key and the export lines for another terminal, and stops everything on
Ctrl-C. Everything lives in one data directory, so a restart keeps the runs, the
queued steps and the key.

Ports: each server takes its usual port (API 8080, Flower 5555, Redis 6379, nx-27017
27017) when it is free, else any free one; a port given with ``--*-port`` must be free.
Everything listens on 127.0.0.1 only.

Exit codes: 130 after Ctrl-C (SIGINT), 0 after SIGTERM, 1 when a server failed (which
one and its last log lines go to stderr), 2 when the cluster cannot start at all (a
missing server, a port in use, another ``chordflow dev`` on the same data directory).
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import signal
import socket
import sys
from pathlib import Path
from typing import IO, Annotated

import typer
from chordflow import devcluster as dc
from chordflow import devcredentials
from chordflow.devcluster import ChildFailed, Cluster, DevError, Interrupted
from chordflow.devcredentials import Credentials
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

out = Console()
err = Console(stderr=True, soft_wrap=True)

EXIT_FAILED, EXIT_REFUSED, EXIT_INTERRUPTED = 1, 2, 130
DEFAULT_PORTS = {"api": 8080, "flower": 5555, "redis": 6379, "mongo": 27017}
#: The children that hold data: stopped after the others, which write to them.
STORES = ("redis", "mongo")


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/chordflow/dev``, i.e. ``~/.local/share/chordflow/dev`` by
    default. Fixed rather than platform-dependent on purpose: the default must name the
    same directory on every start, whatever else is installed."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "chordflow" / "dev"


def dev(
    data_dir: Annotated[Path | None, typer.Option(
        help="Where the cluster keeps its data, logs and key (default "
             "$XDG_DATA_HOME/chordflow/dev, i.e. ~/.local/share/chordflow/dev).")] = None,
    api_port: Annotated[int | None, typer.Option(
        help="The API's port (default 8080 if free, else any free one).")] = None,
    flower_port: Annotated[int | None, typer.Option(
        help="Flower's port (default 5555 if free, else any free one).")] = None,
    redis_port: Annotated[int | None, typer.Option(
        help="Redis's port (default 6379 if free, else any free one).")] = None,
    mongo_port: Annotated[int | None, typer.Option(
        help="nx-27017's port, when it is started (default 27017 if free, else any "
             "free one).")] = None,
    no_login: Annotated[bool, typer.Option(
        "--no-login", help="Serve Flower without a login (default: a generated "
                           "user:password, printed and kept in the data directory).")] = False,
    concurrency: Annotated[int | None, typer.Option(
        help="The worker's parallel steps (default: one per CPU).")] = None,
) -> None:
    """Start a local cluster (Redis, MongoDB, a worker with the beat, the API, Flower)
    until Ctrl-C; print its URLs, an admin API key and the lines to export elsewhere."""
    root = (data_dir or default_data_dir()).expanduser().resolve()
    try:
        lock = _lock(root)
    except DevError as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_REFUSED) from None
    cluster = Cluster(root)
    signal.signal(signal.SIGINT, cluster.request_stop)
    signal.signal(signal.SIGTERM, cluster.request_stop)
    code = EXIT_FAILED
    try:
        _run(cluster, {"api": api_port, "flower": flower_port, "redis": redis_port,
                       "mongo": mongo_port}, no_login, concurrency)
    except Interrupted as stop:
        code = EXIT_INTERRUPTED if stop.signum == signal.SIGINT else 0
    except ChildFailed as exc:  # before DevError: it is one
        _error(str(exc))
    except DevError as exc:
        _error(str(exc))
        code = EXIT_REFUSED
    finally:
        if cluster.children:
            err.print("stopping the cluster...", highlight=False)
        cluster.stop(stores=STORES)
        lock.close()
    if cluster.children:
        err.print("stopped", highlight=False)
    raise typer.Exit(code)


def _error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def _lock(root: Path) -> IO[str]:
    """Make the data directory (the user's only) and hold its lock while the cluster
    runs: two clusters on one directory would share Redis's and SQLite's files."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = (root / "dev.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DevError(f"another chordflow dev uses {root}; stop it or pass another "
                       "--data-dir") from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _run(cluster: Cluster, wanted: dict[str, int | None], no_login: bool,
         concurrency: int | None) -> None:
    """Start the stores, the key, then the applications; watch them until one dies
    (ChildFailed) or a signal comes (Interrupted)."""
    from chordflow.config import get_settings

    root = cluster.data_dir
    taken: set[int] = set()
    # Everything that can be refused is checked before anything starts.
    ports = {name: dc.pick_port(wanted[name], DEFAULT_PORTS[name], name, taken)
             for name in ("api", "flower", "redis")}
    stores = [dc.redis_child(root, ports["redis"])]
    given_mongo = os.environ.get("CHORDFLOW_MONGO_URL")
    if given_mongo and dc.mongo_answers(given_mongo):
        mongo_url, mongo_where = given_mongo, "CHORDFLOW_MONGO_URL"
    else:
        if given_mongo:
            err.print(f"[yellow]warning:[/] CHORDFLOW_MONGO_URL ({escape(_redact(given_mongo))})"
                      " does not answer; starting nx-27017 instead", highlight=False)
        ports["mongo"] = dc.pick_port(wanted["mongo"], DEFAULT_PORTS["mongo"], "mongo", taken)
        stores.append(dc.nx_child(root, ports["mongo"]))
        mongo_url = f"mongodb://{dc.LOOPBACK}:{ports['mongo']}"
        mongo_where = f"nx-27017, {root / 'mongo' / 'nx-27017.db'}"
    broker = f"redis://{dc.LOOPBACK}:{ports['redis']}/0"
    mongo_db = get_settings().mongo_db
    err.print(f"starting a local cluster in {root}...", highlight=False)
    cluster.start(stores)
    creds = devcredentials.ensure(root, mongo_url, mongo_db)
    env = {**os.environ, "CHORDFLOW_BROKER_URL": broker, "CHORDFLOW_RESULT_BACKEND": broker,
           "CHORDFLOW_MONGO_URL": mongo_url, "CHORDFLOW_WORKDIR": str(root / "work"),
           "PYTHONUNBUFFERED": "1"}
    cluster.start([dc.worker_child(root, env, concurrency),
                   # The dashboard links each step to its task in this Flower.
                   dc.api_child(root, {**env, "CHORDFLOW_FLOWER_URL":
                                       f"http://{dc.LOOPBACK}:{ports['flower']}"},
                                ports["api"]),
                   dc.flower_child(root, env, ports["flower"],
                                   None if no_login else creds.flower_login)])
    _summary(root, ports, broker, mongo_url, mongo_where, creds, no_login,
             direct=mongo_where != "CHORDFLOW_MONGO_URL",
             logs=[child.name for child in cluster.children])
    dead = cluster.watch()
    raise dc.ChildFailed(cluster.failure(dead, "stopped unexpectedly"))


def _redact(url: str) -> str:
    """``url`` without the password of its user, if it has one."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def _summary(root: Path, ports: dict[str, int], broker: str, mongo_url: str,
             mongo_where: str, creds: Credentials, no_login: bool, direct: bool,
             logs: list[str]) -> None:
    """What runs where, then the lines to paste into another terminal: printed as
    plain lines (never wrapped), so that they can be copied whole."""
    api_url = f"http://127.0.0.1:{ports['api']}"
    flower_url = f"http://127.0.0.1:{ports['flower']}"
    login = "no login: --no-login" if no_login else f"login {creds.flower_login}"
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in (
        ("API", f"{api_url}  (docs: {api_url}/docs)"),
        ("Dashboard", f"{api_url}/  (sign in with the admin key, from its file below)"),
        ("Flower", f"{flower_url}  ({login})"),
        ("Worker", f"dev@{socket.gethostname()} with the beat; scratch in {root / 'work'}"),
        ("Redis", broker),
        ("MongoDB", f"{_redact(mongo_url)}  ({mongo_where})"),
        ("Key", f"admin key {creds.api_key_id}, kept in "
                f"{root / devcredentials.FILE_NAME} (mode 600)"),
        ("Logs", f"{root / 'logs'}/{{{','.join(logs)}}}.log"),
    ):
        table.add_row(name, escape(value))
    out.print(Panel(table, title="chordflow dev", title_align="left", expand=False))
    lines = ["In another terminal:",
             f"export CHORDFLOW_API_URL={shlex.quote(api_url)} "
             f"CHORDFLOW_API_KEY={shlex.quote(creds.api_key)}"]
    if direct:
        lines += ["and for the commands that use Redis and MongoDB directly (resume, "
                  "reconcile, keys, run --executor celery):",
                  f"export CHORDFLOW_BROKER_URL={shlex.quote(broker)} "
                  f"CHORDFLOW_MONGO_URL={shlex.quote(mongo_url)}"]
    lines += ["then e.g.: chordflow submit examples/sales-report.yaml --var out=report --wait",
              "Ctrl-C stops the cluster.", ""]
    sys.stdout.write("\n".join(lines))
    sys.stdout.flush()
