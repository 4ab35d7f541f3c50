"""The job services and apps an admin configures (``CHORDFLOW_JOB_SERVICES``,
``CHORDFLOW_JOB_APPS``), and the client a step gets from them.

``job_services`` names each service::

    {"bvbrc": {"client": "bvbrc", "url": "https://p3.theseed.org/services/app_service",
               "token_secret": "BVBRC_TOKEN", "poll_interval": 10}}

``job_apps`` maps the replaced engine's ``app:`` names to a service (and, where it
differs, the service's own app id)::

    {"GenomeAssembly2": "bvbrc", "Annotate": {"service": "bvbrc", "app_id": "GenomeAnnotation"}}

Each mapped app becomes a step module of that name (modules/job.py), so a document in
the replaced engine's format (``app: GenomeAssembly2``) runs unchanged.

The token is a secret's *name* (``token_secret``), resolved on the worker that polls
(or the process that cancels) as a named connection's credentials are
(chordflow.connections): it is never part of a record, and every record, event and
error masks its value (app/engine/redaction.py). With ``token_from: key`` it is the
token stored with the API key that submitted the run (chordflow.jobs.key_tokens),
resolved and masked the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from chordflow.jobs.bvbrc import AppJob, AppService
from chordflow.jobs.http_jobs import HttpJob, compile_path
from chordflow.jobs.key_tokens import token_of_run
from chordflow.jobs.polling import PollPolicy
from chordflow.modules.context import StepContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class JobService(BaseModel):
    """One job service, as an admin defines it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client: Literal["bvbrc", "http"] = Field(description="The protocol: bvbrc (the app "
                                             "service's JSON-RPC) or http.")
    #: bvbrc: the app service's URL (its JSON-RPC endpoint).
    url: str | None = None
    #: The name of the secret holding the token (never the token itself).
    token_secret: str | None = None
    #: Where the token comes from: ``secret`` (``token_secret``, one token for every
    #: run) or ``key``: the token stored with the API key that submitted the run
    #: (chordflow.jobs.key_tokens), each user's own.
    token_from: Literal["secret", "key"] = "secret"
    #: bvbrc: the workspace folder given to ``start_app`` when the params have no
    #: ``output_path``.
    workspace: str = ""
    poll_interval: float = Field(default=10.0, gt=0)
    max_poll_interval: float = Field(default=120.0, gt=0)
    backoff: float = Field(default=1.5, ge=1)
    #: Seconds from the submission after which a job is killed and its step failed.
    job_timeout: float | None = Field(default=None, gt=0)
    #: Seconds each call to the service may take.
    request_timeout: float = Field(default=30.0, gt=0)
    # -- http ---------------------------------------------------------------------------
    submit_url: str | None = None
    status_url: str | None = None
    cancel_url: str | None = None
    submit_method: str = "POST"
    cancel_method: str = "DELETE"
    id_path: str = "id"
    state_path: str = "status"
    done_states: list[str] = Field(default_factory=lambda: ["done"])
    failed_states: list[str] = Field(default_factory=lambda: ["failed"])
    result_path: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> JobService:
        if self.token_from == "key" and self.token_secret:
            raise ValueError("token_secret: not with token_from key (the token is the "
                             "submitting key's)")
        if self.client == "bvbrc" and not self.url:
            raise ValueError("url: the app service's URL is required for client bvbrc")
        if self.client == "http":
            if not self.submit_url or not self.status_url:
                raise ValueError("submit_url and status_url are required for client http")
            for name in ("id_path", "state_path", "result_path"):
                if getattr(self, name):
                    compile_path(getattr(self, name), name)
        return self

    @property
    def policy(self) -> PollPolicy:
        return PollPolicy(self.poll_interval, self.max_poll_interval, self.backoff,
                          self.job_timeout)


class JobApp(BaseModel):
    """An ``app:`` name mapped to a service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str
    #: The service's own id for the app; the ``app:`` name if unset.
    app_id: str | None = None


class JobConfigError(ValueError):
    """A job service or app definition that is wrong, named with its field."""


def parse_services(data: Mapping[str, Any]) -> dict[str, JobService]:
    services = {}
    for name, body in data.items():
        try:
            services[name] = JobService.model_validate(body)
        except ValidationError as exc:
            raise JobConfigError(f"job_services.{name}: {_one_line(exc)}") from None
    return services


def parse_apps(data: Mapping[str, Any], services: Mapping[str, JobService]
               ) -> dict[str, JobApp]:
    apps = {}
    for name, body in data.items():
        try:
            app = JobApp(service=body) if isinstance(body, str) else JobApp.model_validate(body)
        except ValidationError as exc:
            raise JobConfigError(f"job_apps.{name}: {_one_line(exc)}") from None
        if app.service not in services:
            raise JobConfigError(f"job_apps.{name}: no job service '{app.service}' (job "
                                 f"services: {', '.join(sorted(services)) or 'none'})")
        apps[name] = app
    return apps


def _one_line(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'value'}: {e['msg']}"
                     for e in exc.errors())


def token_of(ctx: StepContext, service: JobService, name: str = "") -> str | None:
    """The service's token, on this process: the submitting key's (``token_from:
    key``), else from the secret it names (a missing one fails the step, naming it)."""
    if service.token_from == "key":
        return token_of_run(ctx.run_id, f"job service '{name}'" if name else "the job "
                            "service")
    if not service.token_secret:
        return None
    if ctx.connections is None:
        return ctx.secrets.get(service.token_secret)
    # Resolved as an inline connection's credential: the same rules and messages as
    # every other credential (a secret missing here is named).
    resolved = ctx.connections({"type": "http", "hosts": [service.url or "http://localhost"],
                                "credentials": {"token": service.token_secret}})
    return resolved.credential("token")


def app_job(service: JobService, app_id: str, params: dict[str, Any], token: str | None
            ) -> AppJob:
    client = AppService(service.url or "", token, service.request_timeout)
    workspace = str(params.get("output_path") or service.workspace)
    return AppJob(client, app_id, params, workspace)


def http_job(service: JobService, body: Any, token: str | None) -> HttpJob:
    return HttpJob(submit_url=service.submit_url or "", status_url=service.status_url or "",
                   body=body, submit_method=service.submit_method, id_path=service.id_path,
                   state_path=service.state_path, done_states=service.done_states,
                   failed_states=service.failed_states, result_path=service.result_path,
                   cancel_url=service.cancel_url, cancel_method=service.cancel_method,
                   headers=service.headers, token=token,
                   timeout=service.request_timeout)
