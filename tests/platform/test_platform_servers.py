"""The platform's workflows for its server modules, in its own format
(tests/fixtures/platform/modules_*.json), run unchanged against real servers:
``common.Ssh`` on the AsyncSSH test server, ``common.Notify`` on aiosmtpd (STARTTLS and
login) and a real HTTP server, ``prometheus.Prometheus`` on Debian's Pushgateway and as a
node_exporter textfile, embedded and on Celery workers;
``kafkaclient.Kafka`` and ``elasticsearchclient.ElasticSearch`` where
CHORDFLOW_TEST_KAFKA / CHORDFLOW_TEST_ELASTICSEARCH name a server (skipped, saying so,
elsewhere), and converted to native steps that compile everywhere.

Only the servers' addresses and the test's own paths replace the fixtures' values (as
its variables, or a server's params); the procedures are the platform's.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
import pytest
from chordflow.config import Settings
from chordflow.engine.plan import compile_plan
from chordflow.errors import ValidationFailed
from chordflow.modules.registry import load_registry
from chordflow.service import RunService
from chordflow.workflow.loader import load_data

from tests.modules import conftest as module_servers
from tests.modules.conftest import SmtpServer, SshServer
from tests.servers import SMTP_PASSWORD, SSH_PASSWORD, TEST_SECRETS, celery_worker

#: The module tests' real servers (tests/modules/conftest.py), reused by name here.
ssh_server = module_servers.ssh_server
smtp_server = module_servers.smtp_server
pushgateway = module_servers.pushgateway

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "platform"
KAFKA = os.environ.get("CHORDFLOW_TEST_KAFKA")
ELASTIC = os.environ.get("CHORDFLOW_TEST_ELASTICSEARCH")
#: The platform's modules: what a mapped procedure may become.
NATIVE = {"procedures", "ssh", "notify", "prometheus", "kafka", "elasticsearch", "kt"}


#: Runs embedded only (``run_workflow`` also has embedded-mongo and celery).
EMBEDDED = pytest.mark.parametrize("run_workflow", ["embedded"], indirect=True)


def read(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The embedded runs' settings (``run_workflow`` uses them): confined to the test's
    directory like a worker, with the workers' secrets (the servers' passwords)."""
    return Settings(workdir=tmp_path / "work", file_roots=[tmp_path],
                    embedded_confined=True, secrets=dict(TEST_SECRETS))


def mapped_steps_say_status_true(report: dict[str, Any]) -> None:
    """The platform's contract: every method returns ``{"status": true, ...}``."""
    for name, step in report["steps"].items():
        assert step["outputs"]["status"] is True, (name, step["outputs"])


@pytest.mark.parametrize("name", ["modules_ssh.json", "modules_notify.json",
                                  "modules_prometheus.json", "modules_kafka.json",
                                  "modules_elasticsearch.json"])
def test_each_fixture_becomes_native_steps_that_compile(name: str) -> None:
    wf = load_data(read(name))
    compile_plan(wf, load_registry())  # every native method takes these params
    assert {s.module for s in wf.steps} <= NATIVE
    assert all(s.outputs.get("status") is True and s.fail_on_false_status
               for s in wf.steps)


# -- common.Ssh ----------------------------------------------------------------------------

def ssh_doc(server: SshServer, tmp_path: Path) -> dict[str, Any]:
    """modules_ssh.json with this server's address and key, and the test's files."""
    doc = read("modules_ssh.json")
    script = tmp_path / "report.sh"
    script.write_text('echo "report $1 $2"\n')
    (tmp_path / "payload.txt").write_text("payload 1234\n")
    doc["variables"].update(
        ssh_host="127.0.0.1", ssh_port=server.port, ssh_user=server.user,
        ssh_host_key=server.host_key, greeting=f"a b; touch {tmp_path / 'pwned'}",
        script=str(script), local_file=str(tmp_path / "payload.txt"),
        # The server is this host: its "remote" files are here too.
        remote_file=str(tmp_path / f"remote-{uuid.uuid4().hex[:6]}.txt"),
        back_file=str(tmp_path / "back" / "payload.txt"))
    return doc


@pytest.mark.parametrize("run_workflow", ["embedded", "celery"], indirect=True)
def test_ssh_workflow_runs_unchanged(run_workflow: Any, ssh_server: SshServer,
                                     tmp_path: Path) -> None:
    doc = ssh_doc(ssh_server, tmp_path)
    report = run_workflow(doc)
    assert report["status"] == "succeeded", report["error"] or report["steps"]
    steps = {name: s["outputs"] for name, s in report["steps"].items()}
    node = f"127.0.0.1:{ssh_server.port}"
    assert steps["ssh_connect"] == {"status": True, "connected_node": node}
    # The variable is one quoted word: its ';' ran nothing.
    assert steps["greet"]["stdout"] == f"{doc['variables']['greeting']}|done|"
    assert not (tmp_path / "pwned").exists()
    assert steps["run_report"]["stdout"] == "report --env production\n"
    remote = Path(doc["variables"]["remote_file"])
    assert remote.read_text() == "payload 1234\n"
    assert steps["push_file"]["size"] == 13 and steps["push_file"]["remote_path"] == str(remote)
    assert steps["check_file"]["stdout"].strip() == "13"
    assert Path(doc["variables"]["back_file"]).read_text() == "payload 1234\n"
    assert steps["fetch_back"]["connected_node"] == node
    assert steps["ssh_close"] == {"status": True}
    assert steps["summary"]["msg"] == \
        "ret from uploaded 13 bytes, report said: report --env production\n"
    mapped_steps_say_status_true(report)
    assert SSH_PASSWORD not in json.dumps(report)


# -- common.Notify -------------------------------------------------------------------------

@pytest.fixture
def mail_runner(request: pytest.FixtureRequest, run_workflow: Any, smtp_server: SmtpServer,
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    """``run_workflow`` where the SMTP test server's self-signed certificate is trusted,
    as a deployment trusts its mail server's CA: through the system's store (OpenSSL
    reads SSL_CERT_FILE). The platform's ``email`` names no CA, so the workflow stays
    unchanged. Embedded, the store is this process's; on Celery, a worker of its own
    started with it, serving its own queue, which the submitter and the worker (for the
    steps after the first) send the run's steps to (CHORDFLOW_DEFAULT_QUEUE): the
    session's workers do not trust it, and stay as they are for the other tests."""
    if request.node.callspec.params["run_workflow"] != "celery":
        monkeypatch.setenv("SSL_CERT_FILE", str(smtp_server.cert))
        yield run_workflow
        return
    stack = request.getfixturevalue("celery_stack")
    queue = f"mail-{uuid.uuid4().hex[:8]}"
    env = stack.env(CHORDFLOW_DEFAULT_QUEUE=queue, SSL_CERT_FILE=str(smtp_server.cert))
    with celery_worker(env, queue, "--pool", "threads", "--concurrency", "2",
                       log=tmp_path / "mail-worker.log"):
        service = RunService.celery(stack.settings().model_copy(
            update={"default_queue": queue}))

        def run(doc: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
            run_id = service.submit(load_data(doc))
            status = service.wait(run_id, timeout)
            assert status.finished, f"run did not finish within {timeout}s"
            report: dict[str, Any] = service.report(run_id)
            return report

        try:
            yield run
        finally:
            service.close()


@pytest.mark.parametrize("run_workflow", ["embedded", "celery"], indirect=True)
def test_notify_workflow_sends_mail_and_webhooks(mail_runner: Any, smtp_server: SmtpServer,
                                                 http_server: str) -> None:
    doc = read("modules_notify.json")
    subject_tag = uuid.uuid4().hex[:6]
    doc["procedures"][0]["params"]["msg"] = f"nightly-{subject_tag}"
    # Its server from the variables (read at load time: it becomes the step's connection).
    doc["variables"].update(smtp_host="localhost", smtp_port=smtp_server.port,
                            hook_url=f"{http_server}/echo")
    report = mail_runner(doc)
    assert report["status"] == "succeeded", report["error"] or report["steps"]
    steps = {name: s["outputs"] for name, s in report["steps"].items()}
    sent = steps["mail_ops"]
    assert sent["recipients"] == ["ops@example.com", "dev@example.com"]
    assert sent["connected_node"] == f"localhost:{smtp_server.port}"
    [envelope] = [e for e in smtp_server.messages
                  if subject_tag in message_from_bytes(e.content)["Subject"]]
    assert envelope.mail_from == "automation@example.com"
    message = message_from_bytes(envelope.content)
    assert message["Subject"] == f"ret from nightly-{subject_tag} finished"
    assert message.get_content_type() == "text/html"
    hook = steps["hook"]["json"]
    assert hook["method"] == "POST" and hook["headers"]["X-Source"] == "automation"
    assert hook["body"] == {"text": f"ret from nightly-{subject_tag} done, mail "
                                    f"{sent['message_id']}",
                            "recipients": ["ops@example.com", "dev@example.com"]}
    assert steps["hook_put"]["json"]["method"] == "PUT"
    assert steps["hook_put"]["json"]["body"] == "plain text"
    mapped_steps_say_status_true(report)
    assert SMTP_PASSWORD not in json.dumps(report)


# -- prometheus.Prometheus -----------------------------------------------------------------

def prometheus_doc(tmp_path: Path, gateway: str | None) -> dict[str, Any]:
    doc = read("modules_prometheus.json")
    doc["variables"]["textfile"] = str(tmp_path / "textfile" / "servers.prom")
    if gateway is None:  # a workflow that only writes the textfile: no gateway, no push
        del doc["procedures"][0]["params"]["gateway"]
        doc["procedures"] = [p for p in doc["procedures"] if p["method"] != "push"]
        # ... and its records written in the procedures rather than read.
        for proc in doc["procedures"]:
            if proc["method"] == "dicts2prom":
                proc["params"]["data"] = doc["variables"]["servers"]
    else:
        doc["variables"]["pushgateway"] = gateway
    return doc


def assert_textfile(path: Path) -> None:
    text = path.read_text()
    assert 'server_cpu_percent{host="web01",region="eu"} 75.0' in text
    assert 'server_requests_total{host="web02"} 30.0' in text
    assert 'server_latency_seconds_bucket{le="0.5"} 1.0' in text
    assert "server_latency_seconds_count 2.0" in text


@pytest.mark.parametrize("run_workflow", ["embedded", "celery"], indirect=True)
def test_prometheus_workflow_pushes_and_writes(run_workflow: Any, pushgateway: str,
                                               tmp_path: Path) -> None:
    doc = prometheus_doc(tmp_path, pushgateway)
    instance = f"batch-{uuid.uuid4().hex[:6]}"  # this run's group on the shared gateway
    doc["procedures"][4]["params"]["grouping_key"]["instance"] = instance
    report = run_workflow(doc)
    assert report["status"] == "succeeded", report["error"] or report["steps"]
    steps = {name: s["outputs"] for name, s in report["steps"].items()}
    node = pushgateway.removeprefix("http://")
    assert steps["prom_connect"] == {"status": True, "connected_node": node}
    assert 'server_cpu_percent{host="web02",region="us"} 10.5' in steps["cpu_metric"]["text"]
    assert (steps["push"]["job"], steps["push"]["connected_node"]) == ("server_monitor", node)
    scraped = httpx.get(f"{pushgateway}/metrics", timeout=10).text
    group = f'instance="{instance}",job="server_monitor"'
    assert f'server_cpu_percent{{host="web01",{group},region="eu"}} 75' in scraped
    assert f'server_requests_total{{host="web01",{group}}} 1200' in scraped
    assert_textfile(tmp_path / "textfile" / "servers.prom")
    assert steps["prom_close"] == {"status": True}
    mapped_steps_say_status_true(report)


@EMBEDDED
def test_prometheus_workflow_without_a_gateway_writes_the_textfile(run_workflow: Any,
                                                                   tmp_path: Path) -> None:
    report = run_workflow(prometheus_doc(tmp_path, None))
    assert report["status"] == "succeeded", report["error"] or report["steps"]
    assert report["steps"]["prom_connect"]["outputs"] == {"status": True}
    assert report["steps"]["textfile"]["outputs"]["path"] == \
        str(tmp_path / "textfile" / "servers.prom")
    assert_textfile(tmp_path / "textfile" / "servers.prom")
    mapped_steps_say_status_true(report)


# -- kafkaclient.Kafka and elasticsearchclient.ElasticSearch --------------------------------

def test_kafka_procedures_convert_to_native_steps() -> None:
    wf = load_data(read("modules_kafka.json"))
    steps = {s.name: s for s in wf.steps}
    assert [(s.module, s.method) for s in wf.steps] == [
        ("procedures", "connect"), ("kafka", "send"), ("kafka", "list_topics"),
        ("procedures", "disconnect"), ("procedures", "connect"), ("kafka", "consume"),
        ("procedures", "disconnect")]
    producer = {"type": "kafka", "hosts": ["kafka1:9092", "kafka2:9092"],
                "options": {"client_id": "automation", "acks": "all", "retries": 3,
                            "security_protocol": "PLAINTEXT"}}
    assert steps["producer"].connection == steps["publish"].connection == \
        steps["topics"].connection == producer
    assert steps["events"].connection == {"type": "kafka",
                                          "hosts": ["kafka1:9092", "kafka2:9092"]}
    assert steps["events"].params == {"topics": ["deployments"], "group_id": "automation",
                                      "auto_offset_reset": "earliest", "max_messages": 1,
                                      "timeout": 20.0}


def test_elasticsearch_procedures_convert_to_native_steps() -> None:
    wf = load_data(read("modules_elasticsearch.json"))
    assert [(s.module, s.method) for s in wf.steps] == [
        ("procedures", "connect"), ("elasticsearch", "create_index"),
        ("elasticsearch", "index"), ("elasticsearch", "bulk"), ("elasticsearch", "update"),
        ("elasticsearch", "search"), ("elasticsearch", "get"), ("elasticsearch", "delete"),
        ("elasticsearch", "health"), ("elasticsearch", "delete_index"),
        ("procedures", "disconnect")]
    conn = {"type": "elasticsearch", "hosts": ["https://es1.example.com:9200"],
            "options": {"verify_certs": True}}
    assert all(s.connection == conn for s in wf.steps[:-1])
    assert wf.steps[-1].connection is None  # disconnect ended it


def _kafka_doc() -> dict[str, Any]:
    doc = read("modules_kafka.json")
    doc["variables"].update(kafka=KAFKA, topic=f"cf-{uuid.uuid4().hex[:8]}",
                            group=f"g-{uuid.uuid4().hex[:8]}")
    return doc


@EMBEDDED
@pytest.mark.skipif(not KAFKA, reason="no Kafka: set CHORDFLOW_TEST_KAFKA=host:port to "
                                      "run the platform's Kafka workflow against one")
def test_kafka_workflow_runs_unchanged(run_workflow: Any) -> None:
    doc = _kafka_doc()
    report = run_workflow(doc, timeout=90)
    assert report["status"] == "succeeded", report["error"] or report["steps"]
    steps = {name: s["outputs"] for name, s in report["steps"].items()}
    assert steps["publish"]["sent"] == 1
    assert doc["variables"]["topic"] in steps["topics"]["topics"]
    [event] = steps["events"]["messages"]
    assert (event["key"], event["value"]) == ("web01", {"event": "deployed",
                                                        "version": "1.4.2"})
    mapped_steps_say_status_true(report)


@EMBEDDED
@pytest.mark.skipif(not ELASTIC, reason="no Elasticsearch: set "
                    "CHORDFLOW_TEST_ELASTICSEARCH=http://host:9200 to run the platform's "
                    "Elasticsearch workflow against one")
def test_elasticsearch_workflow_runs_unchanged(run_workflow: Any) -> None:
    doc = read("modules_elasticsearch.json")
    doc["variables"].update(es=ELASTIC, index=f"cf-{uuid.uuid4().hex[:8]}")
    report = run_workflow(doc)
    assert report["status"] == "succeeded", report["error"] or report["steps"]
    steps = {name: s["outputs"] for name, s in report["steps"].items()}
    assert sorted(h["_id"] for h in steps["find"]["hits"]) == ["1", "2", "3"]
    assert {h["_id"]: h["msg"] for h in steps["find"]["hits"]}["3"] == "deploy retried"
    assert steps["one"]["document"] == {"msg": "deploy started", "host": "web01"}
    assert steps["cluster"]["health"] in ("green", "yellow")  # the cluster's colour
    assert steps["drop_index"]["acknowledged"] is True
    mapped_steps_say_status_true(report)


# -- status: true on every mapped procedure ------------------------------------------------

@EMBEDDED
def test_status_true_survives_a_procedures_own_outputs_and_health_keeps_its_colour(
        run_workflow: Any) -> None:
    doc = {"name": f"status-{uuid.uuid4().hex[:6]}", "procedures": [
        {"name": "a", "mod": "common.Kt", "method": "prt1", "params": {"msg": "x"}},
        # Filter answers no status of its own: the mapping's, kept beside the
        # procedure's own outputs.
        {"name": "b", "mod": "common.Filter", "method": "limit",
         "params": {"data": [1, 2, 3], "count": 2}, "outputs": {"from_a": "@a.msg"}},
        {"name": "c", "mod": "common.Kt", "method": "prt1", "params": {"msg": "@b.from_a"},
         "when": "@b.status"}]}
    report = run_workflow(doc)
    assert report["status"] == "succeeded", report["error"] or report["steps"]
    assert report["steps"]["b"]["outputs"] == {"status": True, "data": [1, 2], "count": 2,
                                               "from_a": "ret from x"}
    assert report["steps"]["c"]["outputs"]["msg"] == "ret from ret from x"
    health = {s.name: s for s in load_data(read("modules_elasticsearch.json")).steps}
    assert health["cluster"].outputs == {"status": True, "health": "${outputs.status}"}


def test_an_ssh_key_file_path_says_what_to_do_instead() -> None:
    doc = read("modules_ssh.json")
    params = doc["procedures"][0]["params"]
    del params["password"]
    params["key_file"] = "/home/deploy/.ssh/id_ed25519"  # the platform's way: a path
    with pytest.raises(ValidationFailed) as info:
        load_data(doc)
    [error] = info.value.errors
    assert (error.step, error.field) == ("ssh_connect", "params.key_file")
    assert "put the key's text in a secret" in error.message and "@sys.NAME" in error.message
    assert "/home/deploy" not in str(info.value)  # never echoed: it may be the key itself
    params["key_file"] = "@sys.deploy_key"
    assert load_data(doc).steps[1].connection["credentials"] == {"private_key": "deploy_key"}
