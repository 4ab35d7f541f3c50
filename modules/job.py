"""``job``: steps that are jobs on another system, submitted then polled without a worker.

Methods:

- ``job.run``: ``app`` with ``params`` on a configured job service (``service``, one
  of ``CHORDFLOW_JOB_SERVICES``);
- ``job.http``: a job on any HTTP scheduler described in the step itself (submit URL,
  status URL, the JSONPath of the state, the states that mean done and failed).

And one module per app of ``CHORDFLOW_JOB_APPS`` (:func:`app_modules`), named after the
app, whose ``run`` method takes the app's params as they are: that is how the replaced
DAG engine's steps (``app: GenomeAssembly2``, ``params: {...}``) run unchanged.

Every call does one thing and returns at once (chordflow.jobs.polling): the first
submits and leaves the job's id with the engine, which frees the worker and wakes the
step up later (app/engine/waiting.py); later calls poll; cancelling the run kills the
job (a ``foreach`` element's too). A service's token is a secret's, or with
``token_from: key`` the one stored with the API key that submitted the run
(chordflow.jobs.key_tokens), masked in all a call leaves. Outputs of a job that
succeeded: ``job_id`` (also ``task_id``, the replaced engine's name), ``status`` and
the service's result (BV-BRC: ``task``, ``output_path``, ``output_file``,
``output_folder``; HTTP: ``result``, ``response``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chordflow.errors import StepFailed
from chordflow.jobs.http_jobs import HttpJob
from chordflow.jobs.key_tokens import masked
from chordflow.jobs.polling import PollPolicy, run_job
from chordflow.jobs.services import (
    JobApp,
    JobConfigError,
    JobService,
    app_job,
    http_job,
    parse_apps,
    parse_services,
    token_of,
)
from chordflow.modules.context import StepContext
from chordflow.modules.registry import StepModule

#: runs_code=False: it sends jobs to services the admin configured or the caller names,
#: as ``http`` sends requests; nothing the caller wrote runs on the worker.
module = StepModule("job", "Jobs on another system (BV-BRC app service, HTTP "
                    "schedulers): submitted, then polled without holding a worker.",
                    default_method="run", runs_code=False)


class JobServiceMissing(StepFailed):
    """A step names a job service this worker does not know. Retrying cannot help."""

    final = True


def _service(name: str) -> JobService:
    from chordflow.config import get_settings

    try:
        services = parse_services(get_settings().job_services)
    except JobConfigError as exc:
        raise JobServiceMissing(str(exc)) from None
    if name not in services:
        raise JobServiceMissing(f"params.service: no job service '{name}' is configured "
                                f"here (CHORDFLOW_JOB_SERVICES: "
                                f"{', '.join(sorted(services)) or 'none'})")
    return services[name]


def _client(service: JobService, app: str, params: dict[str, Any], token: str | None) -> Any:
    if service.client == "bvbrc":
        return app_job(service, app, params, token)
    return http_job(service, {"app": app, "params": params}, token)


def _job(ctx: StepContext, name: str, service: JobService, app: str, params: dict[str, Any]
         ) -> dict[str, Any]:
    """One call of the job's life (submit, or one poll), the token resolved here and
    masked in all it leaves (a key's token is no configured secret the engine masks)."""
    token = token_of(ctx, service, name)
    return masked(token, ctx, lambda c: run_job(c, _client(service, app, params, token),
                                                service.policy))


def _kill(ctx: StepContext, name: str, service: JobService, app: str,
          params: dict[str, Any]) -> None:
    """Kill the job a cancelled step waits for, with the token its submission had."""
    if not ctx.resume:
        return
    job_id = str(ctx.resume["id"])
    token = token_of(ctx, service, name)
    masked(token, ctx, lambda _: _client(service, app, params, token).kill(job_id))


def _run_cancel(ctx: StepContext, service: str, app: str, params: dict[str, Any] | None = None,
                **_: Any) -> None:
    _kill(ctx, service, _service(service), app, params or {})


@module.method(waits=True, cancel=_run_cancel)
def run(ctx: StepContext, service: str, app: str, params: dict[str, Any] | None = None,
        ) -> dict[str, Any]:
    """Run ``app`` with ``params`` as a job on the configured job service ``service``.

    service: a job service of CHORDFLOW_JOB_SERVICES (its URL, token secret and polling).
    app: the service's app (BV-BRC: GenomeAssembly2, ...).
    params: the app's parameters, as the service takes them.
    """
    return _job(ctx, service, _service(service), app, params or {})


def _http_client(params: Mapping[str, Any]) -> HttpJob:
    try:
        return HttpJob(**{k: v for k, v in params.items() if k not in _POLL_PARAMS})
    except ValueError as exc:
        raise StepFailed(f"params.{exc}") from None


_POLL_PARAMS = ("poll_interval", "max_poll_interval", "backoff", "job_timeout")


def _http_cancel(ctx: StepContext, **params: Any) -> None:
    if ctx.resume:
        _http_client(params).kill(str(ctx.resume["id"]))


@module.method(name="http", waits=True, cancel=_http_cancel)
def http_(ctx: StepContext, submit_url: str, status_url: str, body: Any = None,
          submit_method: str = "POST", id_path: str = "id", state_path: str = "status",
          done_states: list[str] | None = None, failed_states: list[str] | None = None,
          result_path: str | None = None, cancel_url: str | None = None,
          cancel_method: str = "DELETE", headers: dict[str, str] | None = None,
          token: str | None = None, poll_interval: float = 10.0,
          max_poll_interval: float = 120.0, backoff: float = 1.5,
          job_timeout: float | None = None) -> dict[str, Any]:
    """Submit a job to an HTTP scheduler and poll its status URL until it ends.

    submit_url: where the job is submitted (with body as JSON).
    status_url: the job's status, with {id} for the job's id.
    id_path: JSONPath of the job id in the submit answer.
    state_path: JSONPath of the state in the status answer.
    done_states: states that mean the job succeeded (default ["done"]).
    failed_states: states that mean it failed (default ["failed"]).
    result_path: JSONPath of the result output in the last status answer.
    cancel_url: called with cancel_method when the run is cancelled ({id} for the id).
    token: sent as a bearer token (write ${secrets.NAME}).
    poll_interval: seconds before the first poll; later polls wait backoff times longer,
        up to max_poll_interval.
    job_timeout: seconds from the submission after which the job is killed and the step
        fails.
    """
    client = _http_client({
        "submit_url": submit_url, "status_url": status_url, "body": body,
        "submit_method": submit_method, "id_path": id_path, "state_path": state_path,
        "done_states": done_states or ["done"], "failed_states": failed_states or ["failed"],
        "result_path": result_path, "cancel_url": cancel_url, "cancel_method": cancel_method,
        "headers": headers, "token": token})
    return run_job(ctx, client, PollPolicy(poll_interval, max_poll_interval, backoff,
                                           job_timeout))


def app_module(name: str, app: JobApp, service: JobService) -> StepModule:
    """The step module of one mapped app: ``<name>.run(**params)`` submits the app's
    job with the step's params as they are."""
    app_id = app.app_id or name
    mod = StepModule(name, f"The app {app_id} as a job on job service '{app.service}' "
                     f"({service.client}).", default_method="run", runs_code=False)

    def cancel(ctx: StepContext, **params: Any) -> None:
        _kill(ctx, app.service, service, app_id, params)

    def run_app(ctx: StepContext, **params: Any) -> dict[str, Any]:
        """Submit the app's job with these params; poll it until it ends."""
        return _job(ctx, app.service, service, app_id, params)

    mod.method(run_app, name="run", waits=True, cancel=cancel)
    return mod


def app_modules(apps: Mapping[str, Any], services: Mapping[str, Any]) -> list[StepModule]:
    """A module per app of ``job_apps`` (JobConfigError naming the app or service and
    the field that is wrong)."""
    parsed_services = parse_services(services)
    return [app_module(name, app, parsed_services[app.service])
            for name, app in parse_apps(apps, parsed_services).items()]
