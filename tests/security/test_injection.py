"""Values never become code: a reference in a shell command is inserted shell-quoted.

On each executor (``run_workflow``: embedded, embedded on MongoDB, real Celery
workers), and for secrets on the workers of ``celery_stack`` and on the embedded
executor, each with a secret that is a shell trap.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chordflow.config import Settings
from chordflow.engine.embedded import EmbeddedExecutor
from chordflow.engine.plan import compile_plan
from chordflow.engine.report import run_report
from chordflow.engine.state import RunStatus
from chordflow.errors import ValidationFailed
from chordflow.modules.registry import default_registry
from chordflow.workflow.loader import load_data

from tests.servers import TEST_SHELL_SECRET

#: Values that would run ``echo INJECTED`` if they were pasted into the command.
ATTACKS = ["'; echo INJECTED; '", "hi; echo INJECTED", "$(echo INJECTED)",
           "`echo INJECTED`", "x && echo INJECTED", "a\necho INJECTED", "' || echo INJECTED #"]


def test_variables_and_outputs_are_inserted_as_text(run_workflow):
    variables = {f"v{i}": value for i, value in enumerate(ATTACKS)}
    steps = [{"name": f"s{i}", "module": "bash",
              "params": {"cmd": f"echo X=${{variables.v{i}}}"}} for i in range(len(ATTACKS))]
    steps += [
        {"name": "emit", "module": "echo", "params": {"v": "$(echo INJECTED)"}},
        {"name": "use", "module": "bash", "params": {"cmd": "echo ${steps.emit.outputs.v}"}},
    ]
    report = run_workflow({"name": "inject", "variables": variables, "steps": steps})
    assert report["status"] == "succeeded", report
    for i, value in enumerate(ATTACKS):
        out = report["steps"][f"s{i}"]["outputs"]["stdout"]
        assert out == f"X={value}\n", (value, out)
        assert "INJECTED" not in out.splitlines()
    assert report["steps"]["use"]["outputs"]["stdout"] == "$(echo INJECTED)\n"


def test_values_inside_the_authors_quotes_stay_text(run_workflow):
    value = "$(echo INJECTED) `echo INJECTED` '\"; echo INJECTED"
    forms = {"double": 'echo "X=${variables.x}"', "single": "echo 'X=${variables.x}'",
             "heredoc": "cat <<EOF\nX=${variables.x}\nEOF",
             "no_shell": "printf X=%s ${variables.x}"}
    report = run_workflow({"name": "quoted", "variables": {"x": value}, "steps": [
        {"name": name, "module": "bash",
         "params": {"cmd": cmd, **({"shell": False} if name == "no_shell" else {})}}
        for name, cmd in forms.items()]})
    assert report["status"] == "succeeded", report
    for name in forms:
        end = "" if name == "no_shell" else "\n"
        assert report["steps"][name]["outputs"]["stdout"] == f"X={value}{end}", name


def test_the_readme_injection_example_prints_the_value(run_workflow):
    doc = {"name": "readme", "variables": {"x": "safe"}, "steps": [
        {"name": "s", "module": "bash", "params": {"cmd": "echo X=${variables.x}"}}]}
    report = run_workflow(doc, {"x": "'; echo INJECTED; '"})  # set per run, as --var does
    assert report["steps"]["s"]["outputs"]["stdout"] == "X='; echo INJECTED; '\n"


def test_the_raw_marker_inserts_code(run_workflow):
    report = run_workflow({"name": "raw", "variables": {
        "more": "echo two; echo three", "code": "echo one; echo two"}, "steps": [
        {"name": "mixed", "module": "bash",
         "params": {"cmd": "echo one; ${raw:variables.more}"}},
        {"name": "whole", "module": "bash", "params": {"cmd": "${raw:variables.code}"}},
        {"name": "quoted", "module": "bash", "continue_on_failure": True,
         "params": {"cmd": "${variables.code}"}},
    ]})
    assert report["steps"]["mixed"]["outputs"]["stdout"] == "one\ntwo\nthree\n"
    assert report["steps"]["whole"]["outputs"]["stdout"] == "one\ntwo\n"
    # Without raw, a whole-string reference is one quoted word: a command of that name.
    quoted = report["steps"]["quoted"]
    assert quoted["status"] == "failed" and "exited with code 127" in quoted["error"]


def test_argv_lists_and_literal_escapes_are_unchanged(run_workflow):
    value = ATTACKS[0]
    report = run_workflow({"name": "argv", "variables": {"x": value, "w": "a b"}, "steps": [
        {"name": "argv", "module": "bash", "params": {"cmd": ["printf", "%s", "${variables.x}"]}},
        {"name": "escape", "module": "bash",
         "params": {"cmd": "Y=lit; echo $${Y}-${variables.w}"}},
    ]})
    assert report["steps"]["argv"]["outputs"]["stdout"] == value
    assert report["steps"]["escape"]["outputs"]["stdout"] == "lit-a b\n"


def test_raw_outside_shell_code_is_refused_naming_step_and_field():
    doc = {"name": "misplaced", "variables": {"x": "1"}, "steps": [
        {"name": "e", "module": "echo", "params": {"m": "v=${raw:variables.x}"}}]}
    with pytest.raises(ValidationFailed) as info:
        compile_plan(load_data(doc), default_registry())
    error = info.value.errors[0]
    assert (error.step, error.field) == ("e", "params.m")
    assert "only in parameters that are shell code" in error.message


SECRET_STEP = {"name": "use", "module": "bash",
               "params": {"cmd": "printf %s ${secrets.shell_trap} > seen; ls"}}


def check_secret_run(report: dict, scratch: Path, recorded_params: str) -> None:
    assert report["status"] == "succeeded", report
    assert report["steps"]["use"]["outputs"]["stdout"] == "seen\n"  # nothing else made
    assert (scratch / "seen").read_text() == TEST_SHELL_SECRET
    assert not (scratch / "pwned").exists() and not (scratch / "pwned2").exists()
    assert "pwned" not in recorded_params  # masked, in its quoted form too


def test_a_secret_is_not_executed_on_workers(celery_stack):
    service = celery_stack.service()
    run_id = service.submit(load_data({"name": "secret-shell", "steps": [SECRET_STEP]}))
    assert service.wait(run_id, timeout=60) is RunStatus.SUCCEEDED
    steps = service.engine.store.get_steps(run_id)
    check_secret_run(service.report(run_id), celery_stack.workdir / run_id / "use",
                     str(steps["use"].params))


def test_a_secret_is_not_executed_embedded(tmp_path):
    settings = Settings(workdir=tmp_path / "work", secrets={"shell_trap": TEST_SHELL_SECRET})
    with EmbeddedExecutor(settings=settings, threads=2) as ex:
        plan = ex.compile(load_data({"name": "secret-shell", "steps": [SECRET_STEP]}))
        run_id = ex.run(plan, timeout=30)
        report = run_report(ex.store, run_id, list(plan.order))
        params = str(ex.store.get_steps(run_id)["use"].params)
    check_secret_run(report, tmp_path / "work" / run_id / "use", params)
