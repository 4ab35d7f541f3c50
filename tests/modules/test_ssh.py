"""The ssh module on a real SSH server (AsyncSSH, started by the tests): quoted commands,
scripts, transfers, keys from secrets, host keys checked."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.modules.conftest import SshServer


def _run(run_embedded: Any, server: SshServer, steps: list[dict[str, Any]],
         variables: dict[str, Any] | None = None, conn: dict[str, Any] | None = None,
         secrets: dict[str, str] | None = None) -> dict[str, Any]:
    doc = {"name": f"ssh-{uuid.uuid4().hex[:6]}", "variables": variables or {},
           "steps": [{"module": "ssh", "connection": "box", **s} for s in steps]}
    return run_embedded(doc, {"box": conn or server.connection()},
                        secrets=secrets if secrets is not None else {"ssh_key": server.client_key})


def test_a_value_in_a_command_is_one_quoted_word(ssh_server: SshServer, run_embedded: Any,
                                                 tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    trap = f"a b; touch {marker}; $(touch {marker})"
    report = _run(run_embedded, ssh_server, [
        {"name": "echo", "method": "run", "params": {"cmd": "printf '%s|' ${variables.v} x"}}],
        variables={"v": trap})
    assert report["status"] == "succeeded", report
    out = report["steps"]["echo"]["outputs"]
    assert out["stdout"] == f"{trap}|x|"
    assert out["exit_code"] == 0
    assert out["connected_node"] == f"127.0.0.1:{ssh_server.port}"
    assert not marker.exists()


def test_a_failing_command_fails_the_step(ssh_server: SshServer, run_embedded: Any) -> None:
    report = _run(run_embedded, ssh_server, [
        {"name": "bad", "method": "run", "params": {"cmd": "echo oops >&2; exit 3"}}])
    assert report["status"] == "failed"
    assert "remote command exited with code 3: oops" in report["steps"]["bad"]["error"]


def test_run_script_upload_and_download(ssh_server: SshServer, run_embedded: Any,
                                        tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text('echo "hello $1"\n')
    source = tmp_path / "data.txt"
    source.write_text("payload\n")
    remote = tmp_path / f"remote-{uuid.uuid4().hex[:6]}.txt"  # the server is this host
    report = _run(run_embedded, ssh_server, [
        {"name": "script", "method": "run_script",
         "params": {"script_path": str(script), "args": ["a b"]}},
        {"name": "up", "method": "upload",
         "params": {"local_path": str(source), "remote_path": str(remote)}},
        {"name": "down", "method": "download", "depends_on": ["up"],
         "params": {"remote_path": str(remote), "local_path": str(tmp_path / "back.txt")}},
    ])
    assert report["status"] == "succeeded", report
    assert report["steps"]["script"]["outputs"]["stdout"] == "hello a b\n"
    assert remote.read_text() == "payload\n"
    assert report["steps"]["up"]["outputs"]["size"] == 8
    assert (tmp_path / "back.txt").read_text() == "payload\n"


def test_password_login_and_masked_credentials(ssh_server: SshServer,
                                               run_embedded: Any) -> None:
    conn = ssh_server.connection(credentials={"password": "ssh_pw"})
    report = _run(run_embedded, ssh_server, [
        {"name": "say", "method": "run", "params": {"cmd": "echo ${secrets.ssh_pw}"}}],
        conn=conn, secrets={"ssh_pw": ssh_server.password})
    assert report["status"] == "succeeded", report
    assert report["steps"]["say"]["outputs"]["stdout"] == "***\n"
    assert ssh_server.password not in str(report)


def test_an_unknown_host_key_is_refused(ssh_server: SshServer, run_embedded: Any,
                                        tmp_path: Path) -> None:
    conn = ssh_server.connection()
    # An empty known_hosts file: the server's key is unknown there.
    (tmp_path / "known_hosts").write_text("")
    conn["options"] = {"known_hosts": str(tmp_path / "known_hosts")}
    before = len(ssh_server.commands)
    report = _run(run_embedded, ssh_server, [
        {"name": "x", "method": "run", "params": {"cmd": "echo never"}}], conn=conn)
    assert report["status"] == "failed"
    assert "not found in known_hosts" in report["steps"]["x"]["error"]
    assert len(ssh_server.commands) == before
