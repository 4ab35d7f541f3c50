"""One CWL process run by cwltool, the reference implementation, in a subprocess.

What cwltool does well is taken as it is: building the command line, staging inputs
(``InitialWorkDirRequirement``, secondary files), ``EnvVarRequirement``,
``ShellCommandRequirement``, JavaScript with Node.js, ``ToolTimeLimit``, globbing and
``outputEval``, containers. A subprocess (cwltool's ``main.run``) rather than cwltool in
the worker's own process: it is stopped with the step (a cancel, a timeout, a lost
lease: modules/process.py), its global logging and working state stay its own, and a
crash in it fails one step, not the worker.

The process runs from the packed document, with the requirements and hints it inherits
from its workflow and step merged into its own (the most specific wins, as the
specification says), so that it runs alone exactly as it would inside the workflow.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chordflow.cwl.document import container_engine
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.process import run_process

#: cwltool's exit code for a feature it does not support (the runner contract's too).
UNSUPPORTED = 33
_RUN = "import sys; from cwltool.main import run; sys.exit(run(sys.argv[1:]))"


class CwlStepFailed(StepFailed):
    """cwltool failed the process; retrying runs it again (``retries``)."""


class CwlStepUnsupported(StepFailed):
    """The process needs a feature this machine cannot give; retrying cannot help."""

    final = True


def derive(packed: Mapping[str, Any], process_id: str, requirements: Sequence[dict[str, Any]],
           hints: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The packed document with ``process_id``'s inherited requirements and hints
    merged into its own (its own win over a step's, a step's over the workflow's)."""
    doc = json.loads(json.dumps(packed))
    for process in doc["$graph"]:
        if process.get("id") == process_id:
            process["requirements"] = _merged(requirements, process.get("requirements"))
            process["hints"] = _merged(hints, process.get("hints"))
            if not process["requirements"]:
                del process["requirements"]
            if not process["hints"]:
                del process["hints"]
    return doc


def _merged(inherited: Sequence[dict[str, Any]], own: Any) -> list[dict[str, Any]]:
    by_class: dict[str, dict[str, Any]] = {}
    for req in [*inherited, *(own or [])]:
        by_class[str(req.get("class"))] = req
    return list(by_class.values())


def run_cwltool(ctx: StepContext, document: Mapping[str, Any], process_id: str,
                job: Mapping[str, Any], outdir: Path) -> dict[str, Any]:
    """Run ``process_id`` of ``document`` on ``job``; its output object (files in
    ``outdir``). CwlStepUnsupported for cwltool's exit 33, CwlStepFailed otherwise."""
    # UTF-8, not \u escapes: cwltool reads these files as YAML, which takes a character
    # beyond the BMP written as a JSON surrogate pair (an emoji) for two lone surrogates.
    text = json.dumps(document, sort_keys=True, ensure_ascii=False)
    work = ctx.workdir
    doc_path = work / f"process-{hashlib.sha256(text.encode()).hexdigest()[:16]}.cwl.json"
    doc_path.write_text(text, encoding="utf-8")
    job_path = work / "job.json"
    job_path.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    outdir.mkdir(parents=True, exist_ok=True)
    tmp = work / "tmp"
    tmp.mkdir(exist_ok=True)
    # cwltool.main.run, not ``python -m cwltool``: its __main__ drops the exit code.
    # --relax-path-checks: CWL allows any file name (a space, a '#': conformance test
    # filename_with_hash_mark); cwltool alone accepts only [a-zA-Z0-9._+-] without it.
    cmd = [sys.executable, "-c", _RUN, "--disable-color", "--relax-path-checks",
           "--outdir", str(outdir),
           "--tmpdir-prefix", f"{tmp}/", "--tmp-outdir-prefix", f"{tmp}/out-"]
    engine = container_engine()
    if engine == "podman":
        cmd.append("--podman")
    elif engine is None:
        # Only hints can ask for one here (a required container is refused before the
        # run, exit 33): run without, as the specification allows for hints.
        cmd.append("--no-container")
    cmd += [f"{doc_path}{process_id}", str(job_path)]
    done = run_process(ctx, cmd, shell=False, cwd=work)
    if done.exit_code == UNSUPPORTED:
        raise CwlStepUnsupported(f"cwl: unsupported feature: {_tail(done.stderr)}")
    if done.exit_code != 0:
        raise CwlStepFailed(f"cwltool exited {done.exit_code}: {_tail(done.stderr)}")
    try:
        outputs = json.loads(done.stdout)
    except ValueError:
        raise CwlStepFailed(f"cwltool printed no output object (exit {done.exit_code}): "
                            f"{_tail(done.stderr)}") from None
    return dict(outputs) if isinstance(outputs, dict) else {}


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
