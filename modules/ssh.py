"""``ssh``: commands, scripts and file transfers on a remote host (paramiko).

Every method runs on the step's ``connection`` (type ``ssh``): ``login``, the
credentials ``password`` or ``private_key`` (the key's PEM text, from a secret; with
``passphrase`` if it is encrypted), and the host key check, which is never skipped
silently: ``options.host_key`` pins the server's key (``ssh-ed25519 AAAA...``, as a
``known_hosts`` line has it), ``options.known_hosts`` names a file, else the system's
and the user's known hosts are read; an unknown key fails the connection unless the
admin set ``options.insecure_skip_host_key_check`` (Airflow's ``no_host_key_check``).

``cmd`` is shell code, like ``bash``'s (``shell_params``): a reference in it is
inserted shell-quoted, one word, so no value can change the command; ``${raw:...}``
inserts code where the author means it (app/workflow/shellquote.py). The remote
command runs under the remote user's login shell. ``stdout`` and ``stderr`` each keep at
most a quarter of the output limit (head and tail), as ``bash`` does.

Local paths (``upload``'s source, ``download``'s target, ``run_script``'s script) are
confined like every local path (modules/paths.py).
"""

from __future__ import annotations

import base64
import io
import posixpath
import shlex
import time
import uuid
from typing import Any

from chordflow.connections.catalog import Resolved
from chordflow.connections.models import Host
from chordflow.connections.pool import Session
from chordflow.connections.use import operation_timeout, run_on
from chordflow.errors import StepFailed, StepTimeout
from chordflow.modules.context import StepContext
from chordflow.modules.limits import HeadTail, format_bytes
from chordflow.modules.paths import confine
from chordflow.modules.registry import StepModule

#: runs_code=True: it runs the caller's commands on the remote host.
module = StepModule("ssh", "Run commands and scripts, upload and download over SSH.",
                    default_method="run", runs_code=True, connection_types=("ssh",))

#: Seconds a command may run unless ``timeout`` says otherwise.
DEFAULT_TIMEOUT = 600.0
#: Seconds a file transfer may take unless ``timeout`` says otherwise.
TRANSFER_TIMEOUT = 600.0
_READ = 32 * 1024


def _private_key(text: str, passphrase: str | None) -> Any:
    import paramiko

    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text), password=passphrase)
        except (paramiko.SSHException, ValueError):
            continue  # not this kind of key: try the next
    raise StepFailed("credentials.private_key: not a private key paramiko reads "
                     "(Ed25519, ECDSA or RSA, PEM or OpenSSH format)")


class SSHDriver:
    """paramiko clients (chordflow.connections.pool.Driver)."""

    types: tuple[str, ...] = ("ssh",)

    def open(self, resolved: Resolved, host: Host, timeout: float) -> Any:
        import paramiko

        conn, options = resolved.connection, resolved.connection.options
        client = paramiko.SSHClient()
        if options.get("host_key"):
            keytype, _, body = str(options["host_key"]).strip().partition(" ")
            name = host.host if host.port == 22 else f"[{host.host}]:{host.port}"
            key = paramiko.PKey.from_type_string(keytype, base64.b64decode(body.split()[0]))
            client.get_host_keys().add(name, keytype, key)
        elif options.get("known_hosts"):
            client.load_host_keys(str(options["known_hosts"]))
        else:
            client.load_system_host_keys()
        client.set_missing_host_key_policy(
            paramiko.AutoAddPolicy() if options.get("insecure_skip_host_key_check")
            else paramiko.RejectPolicy())
        key_text = resolved.credential("private_key")
        pkey = _private_key(key_text, resolved.credential("passphrase")) if key_text else None
        try:
            client.connect(host.host, host.port, username=conn.login,
                           password=resolved.credential("password"), pkey=pkey,
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                           channel_timeout=timeout, look_for_keys=False, allow_agent=False)
        except Exception:
            client.close()
            raise
        return client

    def close(self, client: Any) -> None:
        client.close()

    def broken(self, exc: BaseException) -> bool:
        import paramiko

        # Not every OSError: an SFTP "no such file" is the request's, not the link's.
        return isinstance(exc, paramiko.SSHException | EOFError | ConnectionError
                          | TimeoutError) \
            and not isinstance(exc, paramiko.AuthenticationException)

    def alive(self, client: Any) -> bool:
        transport = client.get_transport()
        return transport is not None and transport.is_active()


DRIVER = SSHDriver()


def _exec(ctx: StepContext, session: Session[Any], command: str, limit: float,
          stdin: str | None) -> dict[str, Any]:
    """Run ``command`` on a new channel, reading both streams, bounded in size and time."""
    keep = ctx.limits.outputs // 4
    out, err = HeadTail(keep), HeadTail(keep)
    channel = session.client.get_transport().open_session(timeout=limit)
    try:
        channel.settimeout(0.2)
        channel.exec_command(command)
        if stdin is not None:
            channel.sendall(stdin.encode())
        channel.shutdown_write()
        deadline = time.monotonic() + limit
        while True:
            busy = False
            if channel.recv_ready():
                out.write(channel.recv(_READ).decode("utf-8", "replace"))
                busy = True
            if channel.recv_stderr_ready():
                err.write(channel.recv_stderr(_READ).decode("utf-8", "replace"))
                busy = True
            if not busy:
                if channel.exit_status_ready() and not channel.recv_ready() \
                        and not channel.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    raise StepTimeout(f"the remote command ran longer than {limit:g}s")
                ctx.check()
                time.sleep(0.02)
        code = channel.recv_exit_status()
    finally:
        channel.close()
    marker = (lambda cut: f"\n[... {format_bytes(cut)} cut ...]\n")  # noqa: E731
    stdout, stderr = out.text(keep, marker), err.text(keep, marker)
    ctx.capture("stdout", stdout)
    if stderr:
        ctx.capture("stderr", stderr)
    return {"exit_code": code, "stdout": stdout, "stderr": stderr,
            "connected_node": session.node}


def _checked(result: dict[str, Any], check: bool) -> dict[str, Any]:
    if check and result["exit_code"] != 0:
        tail = (result["stderr"].strip() or result["stdout"].strip())[-500:]
        raise StepFailed(f"remote command exited with code {result['exit_code']}"
                         + (f": {tail}" if tail else ""))
    return result


@module.method(shell_params={"cmd"})
def run(ctx: StepContext, cmd: str | list[str], timeout: float | None = None,
        check: bool = True, stdin: str | None = None) -> dict[str, Any]:
    """Run a command on the remote host; outputs exit_code, stdout, stderr and
    connected_node.

    cmd: shell code run by the remote user's shell (references inserted shell-quoted;
        ${raw:variables.x} inserts code), or a list of arguments (each quoted).
    timeout: seconds the command may run (default 600; the step's timeout also applies).
    check: fail the step when the exit code is not 0.
    stdin: text fed to the command's standard input.
    """
    command = shlex.join(cmd) if isinstance(cmd, list) else cmd
    limit = operation_timeout(ctx, timeout, DEFAULT_TIMEOUT)
    result = run_on(ctx, DRIVER, lambda s: _exec(ctx, s, command, limit, stdin))
    ctx.logger.info("remote exit code %s on %s", result["exit_code"], result["connected_node"])
    return _checked(result, check)


@module.method
def run_script(ctx: StepContext, script_path: str, interpreter: str = "bash",
               args: list[str] | None = None, timeout: float | None = None,
               check: bool = True) -> dict[str, Any]:
    """Copy a local script to the remote host, run it there, remove it; outputs
    exit_code, stdout, stderr and connected_node.

    script_path: the local script (relative to the step's scratch directory).
    interpreter: what runs it (bash, sh, python3, ...: one word or words, no quoting).
    args: its arguments, each passed as one word.
    timeout: seconds it may run (default 600).
    check: fail the step when the exit code is not 0.
    """
    local = confine(ctx, script_path, "script_path")
    if not local.is_file():
        raise StepFailed(f"params.script_path: {local} is not a file")
    limit = operation_timeout(ctx, timeout, DEFAULT_TIMEOUT)
    remote = f"/tmp/chordflow-{uuid.uuid4().hex[:12]}-{local.name}"
    command = shlex.join([*shlex.split(interpreter), remote, *(args or [])])

    def on(session: Session[Any]) -> dict[str, Any]:
        sftp = session.client.open_sftp()
        try:
            sftp.get_channel().settimeout(limit)
            sftp.put(str(local), remote)
            try:
                return _exec(ctx, session, command, limit, None)
            finally:
                try:
                    sftp.remove(remote)
                except OSError:
                    ctx.logger.warning("could not remove %s on %s", remote, session.node)
        finally:
            sftp.close()

    return _checked(run_on(ctx, DRIVER, on), check)


@module.method
def upload(ctx: StepContext, local_path: str, remote_path: str,
           timeout: float | None = None) -> dict[str, Any]:
    """Copy a local file to the remote host; outputs remote_path, size and
    connected_node.

    local_path: the local file (relative to the step's scratch directory).
    remote_path: where on the remote host (a directory ending in '/' keeps the name).
    timeout: seconds the transfer may take (default 600).
    """
    local = confine(ctx, local_path, "local_path")
    if not local.is_file():
        raise StepFailed(f"params.local_path: {local} is not a file")
    target = remote_path + local.name if remote_path.endswith("/") else remote_path
    limit = operation_timeout(ctx, timeout, TRANSFER_TIMEOUT)

    def on(session: Session[Any]) -> dict[str, Any]:
        sftp = session.client.open_sftp()
        try:
            sftp.get_channel().settimeout(limit)
            attrs = sftp.put(str(local), target)
        finally:
            sftp.close()
        return {"remote_path": target, "size": attrs.st_size, "connected_node": session.node}

    return run_on(ctx, DRIVER, on)


@module.method
def download(ctx: StepContext, remote_path: str, local_path: str,
             timeout: float | None = None) -> dict[str, Any]:
    """Copy a remote file here; outputs local_path, size and connected_node.

    remote_path: the file on the remote host.
    local_path: where here (relative to the step's scratch directory; a directory
        ending in '/' keeps the name).
    timeout: seconds the transfer may take (default 600).
    """
    wanted = local_path + posixpath.basename(remote_path) if local_path.endswith("/") \
        else local_path
    local = confine(ctx, wanted, "local_path")
    local.parent.mkdir(parents=True, exist_ok=True)
    limit = operation_timeout(ctx, timeout, TRANSFER_TIMEOUT)

    def on(session: Session[Any]) -> dict[str, Any]:
        sftp = session.client.open_sftp()
        try:
            sftp.get_channel().settimeout(limit)
            sftp.get(remote_path, str(local))
        except FileNotFoundError:
            raise StepFailed(f"params.remote_path: no file {remote_path} on "
                             f"{session.node}") from None
        finally:
            sftp.close()
        return {"local_path": str(local), "size": local.stat().st_size,
                "connected_node": session.node}

    return run_on(ctx, DRIVER, on)
