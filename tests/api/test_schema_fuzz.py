"""Schemathesis against a live server: generated requests for every operation of the
OpenAPI schema find no 5xx, no undocumented status and no response that breaks the
schema. It gets its own server and admin key: its stateful phase may revoke keys it
finds, so revoking is the one operation it leaves out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.conftest import Api, make_key, start_api
from tests.servers import ROOT, stop_group

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


@pytest.mark.timeout(660)  # every operation of a growing API; schemathesis has 600 s
def test_schemathesis_finds_no_server_error_or_schema_violation(api: Api, tmp_path) -> None:
    key = make_key(api.env, "schemathesis", "admin")
    proc, url = start_api(api.env, tmp_path / "api.log")
    try:
        done = subprocess.run(
            [SCHEMATHESIS, "run", f"{url}/openapi.json",
             "--header", f"Authorization: Bearer {key}",
             "--checks", "not_a_server_error,response_schema_conformance,"
                         "status_code_conformance,content_type_conformance",
             "--exclude-path", "/api/v1/keys/{key_id}",
             "--max-examples", "15", "--seed", "1", "--request-timeout", "30"],
            capture_output=True, text=True, timeout=600, cwd=ROOT,
        )
    finally:
        stop_group(proc)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
