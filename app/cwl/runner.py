"""``chordflow-cwl``: a CWL runner by the conformance runner contract, on chordflow.

    chordflow-cwl [--outdir DIR] [--quiet] [--executor embedded|celery] TOOL [JOB]

stdout is exactly the output object as JSON; logs go to stderr. Exit codes: 0 success,
33 a feature that is not supported here (a DockerRequirement without Docker or Podman,
whatever cwltool reports as unsupported), 1 a failure (an invalid document or job, a
failed step), 130 interrupted. ``--executor celery`` (or ``CHORDFLOW_CWL_EXECUTOR``)
runs the steps on the workers of ``CHORDFLOW_BROKER_URL``/``CHORDFLOW_MONGO_URL``;
their ``CHORDFLOW_WORKDIR`` must be a directory this process can read (a shared one
across hosts), and ``--outdir`` one the workers can write.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from chordflow.cwl.convert import cwl_document
from chordflow.cwl.document import CwlInvalid, CwlUnsupported
from chordflow.cwl.values import decode

EXIT_OK, EXIT_FAILED, EXIT_UNSUPPORTED, EXIT_INTERRUPTED = 0, 1, 33, 130
#: What a step's error says when its process needs an unsupported feature.
UNSUPPORTED_MARK = "cwl: unsupported feature"

log = logging.getLogger("chordflow.cwl")


def outcome(report: Mapping[str, Any]) -> tuple[int, Any]:
    """The exit code and the output object of a finished run's report."""
    if report["status"] == "succeeded":
        return EXIT_OK, decode((report.get("outputs") or {}).get("cwl") or {})
    errors = [str(s.get("error") or "") for s in report["steps"].values()]
    if any(UNSUPPORTED_MARK in e for e in errors):
        return EXIT_UNSUPPORTED, None
    return EXIT_FAILED, None


def run_embedded(doc: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    from chordflow.engine.embedded import EmbeddedExecutor
    from chordflow.engine.report import run_report
    from chordflow.workflow.loader import load_data

    with EmbeddedExecutor() as executor:
        plan = executor.compile(load_data(doc))
        run_id = executor.run(plan, timeout=timeout)
        return run_report(executor.store, run_id, list(plan.order))


def run_celery(doc: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    from chordflow.service import RunService
    from chordflow.workflow.loader import load_data

    service = RunService.celery()
    try:
        try:
            run_id = service.submit(load_data(doc))
        except OverflowError:  # pymongo's, for an int BSON cannot hold
            raise CwlInvalid("the document or job holds an integer beyond 8 bytes, which "
                             "the run's records in MongoDB cannot hold; run it embedded "
                             "(--executor embedded)") from None
        service.wait(run_id, timeout)
        return service.report(run_id)
    finally:
        service.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="chordflow-cwl", description="Run a CWL document on chordflow (the CWL "
        "runner contract: the output object on stdout, exit 33 if unsupported).")
    parser.add_argument("--outdir", default=os.getcwd(), help="Where output files go.")
    parser.add_argument("--quiet", action="store_true", help="Only warnings on stderr.")
    parser.add_argument("--executor", choices=("embedded", "celery"),
                        default=os.environ.get("CHORDFLOW_CWL_EXECUTOR", "embedded"))
    parser.add_argument("--timeout", type=float, default=None,
                        help="Seconds the run may take (default: no limit).")
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("tool", help="The CWL document (a path or URI, #id allowed).")
    parser.add_argument("job", nargs="?", help="The job object (YAML or JSON).")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING if args.quiet else
                        logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        doc = cwl_document(args.tool, args.job, args.outdir)
    except CwlUnsupported as exc:
        print(f"chordflow-cwl: unsupported: {exc}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except CwlInvalid as exc:
        print(f"chordflow-cwl: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        runner = run_celery if args.executor == "celery" else run_embedded
        report = runner(doc, args.timeout)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except CwlInvalid as exc:
        print(f"chordflow-cwl: {exc}", file=sys.stderr)
        return EXIT_FAILED
    code, output = outcome(report)
    if code != EXIT_OK:
        for name, step in report["steps"].items():
            if step.get("error"):
                print(f"chordflow-cwl: step {name}: {step['error']}", file=sys.stderr)
        if report.get("error"):
            print(f"chordflow-cwl: {report['error']}", file=sys.stderr)
        return code
    sys.stdout.write(json.dumps(output, indent=2, sort_keys=True) + "\n")
    return EXIT_OK


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"chordflow-cwl {version('chordflow')} (cwltool {version('cwltool')})"
    except PackageNotFoundError:
        return "chordflow-cwl"


if __name__ == "__main__":
    sys.exit(main())
