"""``bash``: run a shell command, capturing its exit code and output."""

from __future__ import annotations

from typing import Any

from app.errors import StepFailed
from modules.context import StepContext
from modules.process import run_process
from modules.registry import StepModule

module = StepModule("bash", "Run shell commands.", default_method="run")

#: Captured output beyond this many characters is cut (the end is kept).
MAX_OUTPUT = 1_000_000


@module.method
def run(
    ctx: StepContext,
    cmd: str | list[str],
    cwd: str | None = None,
    env: dict[str, Any] | None = None,
    timeout: float | None = None,
    check: bool = True,
    shell: bool | None = None,
    stdin: str | None = None,
) -> dict[str, Any]:
    """Run a command and return exit_code, stdout and stderr.

    cmd: a string (run by /bin/sh) or a list of arguments (run directly).
    cwd: working directory; defaults to the step's scratch directory.
    env: environment variables of the command (besides PATH, HOME, LANG, LC_ALL, TZ
        and TMPDIR, which it inherits; never the worker's own settings).
    timeout: seconds before the command is killed (the step's timeout also applies).
    check: fail the step when the exit code is not 0.
    shell: run through the shell; defaults to true for a string, false for a list.
    stdin: text fed to the command's standard input.
    """
    use_shell = isinstance(cmd, str) if shell is None else shell
    if use_shell and isinstance(cmd, list):
        import shlex

        cmd = shlex.join(cmd)
    done = run_process(ctx, cmd, shell=use_shell, cwd=cwd or ctx.workdir, env=env,
                       timeout=timeout, stdin=stdin)
    stdout, stderr = done.stdout[-MAX_OUTPUT:], done.stderr[-MAX_OUTPUT:]
    ctx.logger.info("exit code %s", done.exit_code)
    if check and done.exit_code != 0:
        tail = (stderr.strip() or stdout.strip())[-500:]
        raise StepFailed(f"command exited with code {done.exit_code}" +
                         (f": {tail}" if tail else ""))
    return {"exit_code": done.exit_code, "stdout": stdout, "stderr": stderr}
