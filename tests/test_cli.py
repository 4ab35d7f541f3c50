"""The ``chordflow`` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.test_embedded import alive, wait_for_file

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")
ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CHORDFLOW, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def write(tmp_path: Path, doc: dict, name: str = "wf.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_run_json_prints_exactly_one_document(tmp_path):
    wf = write(tmp_path, {
        "name": "cli", "variables": {"n": 1, "words": ["a"]},
        "steps": [
            {"name": "a", "module": "bash", "params": {"cmd": "echo noise; echo ${variables.n}"}},
            {"name": "b", "module": "echo", "params": {"w": "${variables.words}"}},
        ],
        "outputs": {"w": "${steps.b.outputs.w}"},
    })
    done = cli("run", wf, "--json", "--var", "n=41", "--var", 'words=["x", 2]')
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert set(report) >= {"run_id", "workflow", "status", "steps", "outputs"}
    assert report["status"] == "succeeded" and report["workflow"] == "cli"
    assert report["steps"]["a"]["outputs"]["stdout"] == "noise\n41\n"
    assert set(report["steps"]["a"]) == {"status", "attempts", "outputs", "error",
                                         "started_at", "finished_at"}
    assert report["outputs"] == {"w": ["x", 2]}


def test_run_json_keeps_stdout_for_the_report_when_steps_print(tmp_path):
    wf = write(tmp_path, {"name": "printing", "steps": [
        {"name": "p", "module": "python",
         "params": {"function": "builtins:print", "args": ["hello from a step"]}}]})
    done = cli("run", wf, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    # What the step printed is its captured output (tests/test_python_output.py), never
    # mixed into the report.
    assert "hello from a step" not in done.stdout.replace('"hello from a step"', "")


def test_run_exit_codes(tmp_path):
    failing = write(tmp_path, {"name": "f", "steps": [
        {"name": "bad", "module": "bash", "params": {"cmd": "exit 3"}}]})
    done = cli("run", failing, "--json")
    assert done.returncode == 1 and json.loads(done.stdout)["status"] == "failed"

    invalid = write(tmp_path, {"name": "i", "steps": [
        {"name": "x", "module": "bash", "params": {"cmd": "${steps.nope.outputs.y}"}}]})
    done = cli("run", invalid, "--json")
    assert done.returncode == 2 and done.stdout == ""
    assert "step 'x', field 'params.cmd'" in done.stderr and "unknown step 'nope'" in done.stderr

    done = cli("run", write(tmp_path, {"name": "v", "steps": [{"name": "a", "module": "echo"}]}),
               "--var", "undeclared=1")
    assert done.returncode == 2 and "unknown variable 'undeclared'" in done.stderr


def test_run_without_json_prints_a_summary(tmp_path):
    wf = write(tmp_path, {"name": "plain", "steps": [{"name": "only", "module": "echo",
                                                       "params": {"x": 1}}]})
    done = cli("run", wf)
    assert done.returncode == 0
    assert "only" in done.stdout and "succeeded" in done.stdout


@pytest.mark.parametrize(("sig", "reason"), [(signal.SIGINT, "interrupted (Ctrl-C)"),
                                             (signal.SIGTERM, "terminated (SIGTERM)")])
def test_ctrl_c_cancels_the_run_and_kills_its_processes(tmp_path, sig, reason):
    pidfile = tmp_path / "pid"
    wf = write(tmp_path, {"name": "sigint", "steps": [
        {"name": "slow", "module": "bash",
         "params": {"cmd": f"echo $$ > {pidfile}; exec sleep 30"}},
        {"name": "next", "module": "echo", "depends_on": ["slow"]}]})
    proc = subprocess.Popen([CHORDFLOW, "run", wf, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        pid = int(wait_for_file(pidfile, timeout=20))
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err  # interrupted, as a shell reports SIGINT
    report = json.loads(out)
    assert report["status"] == "cancelled" and report["error"] == reason
    assert report["steps"]["slow"]["status"] == "cancelled"
    assert report["steps"]["next"]["status"] == "cancelled"
    assert not alive(pid)


def test_live_progress_on_a_terminal(tmp_path):
    wf = write(tmp_path, {"name": "live", "steps": [
        {"name": "first_step", "module": "bash", "params": {"cmd": "sleep 0.5"}},
        {"name": "second_step", "module": "echo", "depends_on": ["first_step"]}]})
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal
        os.chdir(ROOT)
        os.execv(CHORDFLOW, [CHORDFLOW, "run", wf])
    screen = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                screen += chunk
    finally:
        _, status = os.waitpid(pid, 0)
    text = screen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0
    rows = [line for line in text.splitlines() if "first_step" in line]
    assert any("running" in row for row in rows)  # a frame drawn while first_step ran
    assert "first_step" in text and "second_step" in text and "succeeded" in text


def test_validate_graph_modules(tmp_path):
    wf = write(tmp_path, {"name": "g", "steps": [
        {"name": "a", "module": "echo"},
        {"name": "b-2", "module": "echo", "depends_on": ["a"], "when": "1 == 1"}]})
    done = cli("validate", wf)
    assert done.returncode == 0 and "valid" in done.stdout and "2 steps" in done.stdout

    done = cli("graph", wf)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0] == "flowchart TD" and "    s0 --> s1" in lines
    assert any("b-2" in line for line in lines)

    done = cli("modules", "--json")
    listing = {m["name"]: m for m in json.loads(done.stdout)}
    assert {"echo", "bash", "http", "file", "filter", "python"} <= set(listing)
    done = cli("modules")
    assert "bash.run" in done.stdout


def test_validate_reports_a_cycle_with_its_path(tmp_path):
    wf = write(tmp_path, {"name": "c", "steps": [
        {"name": "a", "module": "echo", "depends_on": ["b"]},
        {"name": "b", "module": "echo", "depends_on": ["a"]}]})
    done = cli("validate", wf)
    assert done.returncode == 2
    assert "dependency cycle: a -> b -> a" in done.stderr or \
        "dependency cycle: b -> a -> b" in done.stderr


def test_modules_path_setting_adds_modules(tmp_path):
    apps = ROOT / "tests" / "fixtures" / "apps"
    done = cli("modules", "--json", env={"CHORDFLOW_MODULES_PATH": str(apps)})
    names = {m["name"] for m in json.loads(done.stdout)}
    assert {"GenomeAssembly2", "common.Kt"} <= names


def test_ctrl_c_does_not_wait_for_steps_that_ignore_it(tmp_path):
    started = tmp_path / "started"
    wf = write(tmp_path, {"name": "stubborn", "steps": [
        {"name": "sleepy", "module": "python",
         "params": {"function": "tests.helpers.functions:mark_then_sleep",
                    "args": [str(started), 25]}}]})
    proc = subprocess.Popen([CHORDFLOW, "run", wf, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60  # however slow the CLI is to start here
        while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert started.exists(), "the step never started"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)  # well before the 25 s sleep ends
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert json.loads(out)["status"] == "cancelled"
    assert "ignored the cancel" in err


# -- the CLI as users expect it -----------------------------------------------------------

def on_a_terminal(*args: str, timeout: float = 30) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal (its live table drawn): exit code and screen."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal
        os.chdir(ROOT)
        os.execv(CHORDFLOW, [CHORDFLOW, *args])
    screen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                screen += chunk
    finally:
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


def test_version_and_short_help():
    from chordflow import __version__

    done = cli("--version")
    assert done.returncode == 0 and done.stdout == f"chordflow {__version__}\n"
    for args in (("-h",), ("run", "-h"), ("workflows", "diff", "-h"), ("keys", "create", "-h"),
                 ("status", "-h")):
        shown = cli(*args)
        assert shown.returncode == 0, (args, shown.stderr)
        assert "Usage:" in shown.stdout and "--help" in shown.stdout, args
    assert "Example: chordflow run" in cli("run", "-h").stdout
    assert "--install-completion" in cli("--help").stdout


def test_a_value_outside_the_choices_is_refused_by_the_parser(tmp_path):
    wf = write(tmp_path, {"name": "c", "steps": [{"name": "a", "module": "echo"}]})
    for args, names in ((("run", wf, "--executor", "bogus"), "'embedded', 'celery'"),
                        (("worker", "--pool", "fork"), "'prefork', 'threads', 'solo'"),
                        (("keys", "create", "--name", "x", "--role", "root"), "'viewer'")):
        done = cli(*args, env={"COLUMNS": "300"})  # the parser's message on one line
        assert done.returncode == 2, (args, done.stderr)
        assert names in done.stderr and "Traceback" not in done.stderr, args


def test_var_is_e_and_no_longer_v(tmp_path):
    wf = write(tmp_path, {"name": "v", "variables": {"n": 1},
                          "steps": [{"name": "a", "module": "echo",
                                     "params": {"n": "${variables.n}"}}],
                          "outputs": {"n": "${steps.a.outputs.n}"}})
    done = cli("run", wf, "--json", "-e", "n=5")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"] == {"n": 5}
    refused = cli("run", wf, "-v", "n=5")
    assert refused.returncode == 2 and "No such option: -v" in refused.stderr


def test_the_table_marks_tolerated_failures_and_ends_with_a_summary(tmp_path):
    wf = write(tmp_path, {"name": "tolerant", "steps": [
        {"name": "fine", "module": "echo", "params": {"x": 1}},
        {"name": "flop", "module": "bash",
         "params": {"cmd": "echo line1 >&2; echo line2 >&2; exit 3"},
         "continue_on_failure": True},
        {"name": "broken", "module": "bash", "params": {"cmd": "exit 4"},
         "depends_on": ["fine"]}]})
    done = cli("run", wf, env={"COLUMNS": "200"})  # a row a line
    assert done.returncode == 1, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines()
            if line.startswith("│") and line.split("│")[1].strip()}
    assert "failed (tolerated)" in rows["flop"] and "tolerated" not in rows["broken"]
    assert "failed" in rows["broken"]
    assert "line1" in done.stdout and "line2" not in done.stdout  # the error's first line
    summary = [line for line in done.stdout.splitlines() if line.startswith("run ")][0]
    assert summary.startswith("run ") and " failed: 3 steps: 1 failed, 1 succeeded, " \
        "1 tolerated; wall time " in summary, done.stdout


def test_an_html_error_page_is_shown_as_its_status_line(tmp_path):
    from tests.servers import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/missing"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        wf = write(tmp_path, {"name": "html", "steps": [
            {"name": "fetch", "module": "http", "method": "get", "params": {"url": url}}]})
        done = cli("run", wf)
    finally:
        server.kill()
        server.wait()
    assert done.returncode == 1, done.stderr
    assert "HTTP 404 File not found" in done.stdout
    assert "<" not in done.stdout and "DOCTYPE" not in done.stdout.upper()


def test_a_waiting_retry_is_shown_on_the_live_table(tmp_path):
    wf = write(tmp_path, {"name": "retrying", "steps": [
        {"name": "flaky", "module": "bash", "params": {"cmd": "exit 3"},
         "retries": 2, "retry_delay": 2}]})
    code, screen = on_a_terminal("run", wf)
    assert code == 1
    assert "retry 1/2 in " in screen and "retry 2/2 in " in screen
    assert "run " in screen and "1 failed; wall time " in screen


def test_ctrl_c_on_a_terminal_draws_the_final_state_and_exits_130(tmp_path):
    pidfile = tmp_path / "pid"
    wf = write(tmp_path, {"name": "drawn", "steps": [
        {"name": "slow", "module": "bash",
         "params": {"cmd": f"echo $$ > {pidfile}; exec sleep 30"}}]})
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execv(CHORDFLOW, [CHORDFLOW, "run", wf])
    screen = b""
    try:
        wait_for_file(pidfile, timeout=20)
        time.sleep(0.5)
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                screen += chunk
    finally:
        _, status = os.waitpid(pid, 0)
    text = screen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 130
    tail = text[text.rindex("slow"):]  # the last table drawn, after the interrupt
    assert "cancelled" in tail and "1 cancelled" in text


def test_runs_and_logs_without_an_api_url_say_what_to_set():
    from tests.servers import free_port

    port = free_port()
    env = {"CHORDFLOW_API_URL": "", "CHORDFLOW_API_HOST": "127.0.0.1",
           "CHORDFLOW_API_PORT": str(port)}
    for args in (("runs",), ("logs", "some-run")):
        done = cli(*args, env=env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == (
            f"error: cannot reach http://127.0.0.1:{port}: set CHORDFLOW_API_URL to the "
            "API's address (and CHORDFLOW_API_KEY)"), done.stderr
