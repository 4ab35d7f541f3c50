"""What a step can reach: on real workers (Redis, the MongoDB-protocol server, two
workers whose environment holds every CHORDFLOW_* setting and a secret), a step's
processes see a minimal environment, and a step sees only the secrets it references;
a reference to a secret that does not exist is refused before anything runs."""

from __future__ import annotations

import hashlib

import pytest
from chordflow.engine.state import RunStatus
from chordflow.errors import ValidationFailed
from chordflow.workflow.loader import load_data

from tests.servers import TEST_SECRET


def test_a_steps_processes_get_a_minimal_environment(celery_stack):
    service = celery_stack.service()
    run_id = service.submit(load_data({"name": "printenv", "steps": [
        {"name": "env", "module": "bash", "params": {"cmd": "printenv",
                                                     "env": {"MINE": "yes"}}}]}))
    assert service.wait(run_id, timeout=60) is RunStatus.SUCCEEDED
    printed = service.report(run_id)["steps"]["env"]["outputs"]["stdout"]
    names = {line.split("=", 1)[0] for line in printed.splitlines() if "=" in line}
    assert "PATH" in names and "MINE" in names
    assert not [n for n in names if n.startswith("CHORDFLOW_")], printed
    assert TEST_SECRET not in printed
    assert names <= {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "MINE", "PWD",
                     "SHLVL", "_", "OLDPWD"}, names


def test_a_secret_reaches_a_step_only_through_its_own_reference(celery_stack):
    service = celery_stack.service()
    run_id = service.submit(load_data({"name": "secret-env", "steps": [
        {"name": "use", "module": "bash",
         # Compared by digest: the secret itself must not appear in any stored document
         # (tests/api/test_security.py scans them all).
         "params": {"cmd": 'test "$(printf %s "$TOKEN" | sha256sum)" = "$EXPECTED  -" '
                           '&& echo same',
                    "env": {"TOKEN": "${secrets.api_token}",
                            "EXPECTED": hashlib.sha256(TEST_SECRET.encode()).hexdigest()}}}]}))
    assert service.wait(run_id, timeout=60) is RunStatus.SUCCEEDED
    report = service.report(run_id)
    assert report["steps"]["use"]["outputs"]["stdout"] == "same\n"
    steps = service.engine.store.get_steps(run_id)
    assert TEST_SECRET not in str(steps["use"].params)  # masked in the record


def test_an_unknown_secret_is_refused_at_submission_without_naming_the_others(celery_stack):
    service = celery_stack.service()
    with pytest.raises(ValidationFailed) as info:
        service.submit(load_data({"name": "nope", "steps": [
            {"name": "s", "module": "echo", "params": {"x": "${secrets.nope}"}}]}))
    error = info.value.errors[0]
    assert (error.step, error.field) == ("s", "params.x")
    assert "no secret 'nope'" in error.message and "api_token" not in str(info.value)
