"""``bash``: run a shell command, capturing its exit code and output.

``cmd`` is shell code (``shell_params``): a reference in it is inserted shell-quoted,
one word, so no variable, output or secret can change the command; ``${raw:...}``
inserts a value as code, where the author means it (app/workflow/templating.py). A list
``cmd`` is an argv and needs no quoting. ``cwd`` is confined like every local path
(modules/paths.py); what the command itself opens is bounded by the worker's OS user.

The ``stdout`` and ``stderr`` outputs each hold at most a quarter of the step's output
limit (``CHORDFLOW_MAX_OUTPUT_BYTES``: 1 MiB each by default, JSON-encoded), so that a
chatty command never fails its step only for what it printed: beyond that, the head and
the tail of the stream, with a line between them saying how much was cut. What it
printed is also kept for ``chordflow logs``, separately, within
``CHORDFLOW_MAX_LOG_BYTES``. A command whose whole output matters writes it to a file.
"""

from __future__ import annotations

import shlex
from typing import Any

from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.limits import format_bytes
from chordflow.modules.paths import confine
from chordflow.modules.process import run_process
from chordflow.modules.registry import StepModule

module = StepModule("bash", "Run shell commands.", default_method="run")

#: Each of the stdout and stderr outputs holds at most this share of the output limit,
#: leaving the rest to the other outputs (and to declared ones that repeat them).
OUTPUT_SHARE = 4


@module.method(shell_params={"cmd"})
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
    """Run a command and return exit_code, stdout and stderr (each cut to its head and
    tail beyond a quarter of CHORDFLOW_MAX_OUTPUT_BYTES).

    cmd: a string (run by /bin/sh) or a list of arguments (run directly). References
        in a string are inserted shell-quoted; ${raw:variables.x} inserts code.
    cwd: working directory; defaults to the step's scratch directory, relative to it,
        inside the run's scratch directory or CHORDFLOW_FILE_ROOTS.
    env: environment variables of the command (besides PATH, HOME, LANG, LC_ALL, TZ
        and TMPDIR, which it inherits; never the worker's own settings).
    timeout: seconds before the command is killed (the step's timeout also applies).
    check: fail the step when the exit code is not 0.
    shell: run through the shell; defaults to true for a string, false for a list. A
        string run without the shell is split into arguments as the shell would.
    stdin: text fed to the command's standard input.
    """
    use_shell = isinstance(cmd, str) if shell is None else shell
    if use_shell and isinstance(cmd, list):
        cmd = shlex.join(cmd)
    elif not use_shell and isinstance(cmd, str):
        # Words as the shell would split them, without running it: the quoted
        # references stay one argument each.
        try:
            cmd = shlex.split(cmd)
        except ValueError as exc:
            raise StepFailed(f"step '{ctx.step}': params.cmd cannot be split into "
                             f"arguments: {exc}") from None
    workdir = confine(ctx, cwd, "cwd") if cwd else ctx.workdir
    keep = ctx.limits.outputs // OUTPUT_SHARE
    done = run_process(ctx, cmd, shell=use_shell, cwd=workdir, env=env,
                       timeout=timeout, stdin=stdin, keep=keep,
                       keep_reason=f"the output keeps its head and tail, {format_bytes(keep)}")
    stdout, stderr = done.stdout, done.stderr
    ctx.logger.info("exit code %s", done.exit_code)
    if check and done.exit_code != 0:
        tail = (stderr.strip() or stdout.strip())[-500:]
        raise StepFailed(f"command exited with code {done.exit_code}" +
                         (f": {tail}" if tail else ""))
    return {"exit_code": done.exit_code, "stdout": stdout, "stderr": stderr}
