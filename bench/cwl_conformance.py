"""The CWL v1.2 conformance suite with cwltest: chordflow-cwl embedded, chordflow-cwl
on Celery workers, and cwltool (the reference implementation) in the same run.

    python bench/cwl_conformance.py --suite ../shared/cwl-v1.2 [-j 1] [-n 1-50]
        [--tags required] [--timeout 300] [--runners embedded,celery,cwltool]

Prints, for each runner, passed / failed / unsupported by tag (a test counts under
each of its tags, and under ``all``), and the targets: every ``required`` test that
needs no Docker passes; at least 85% of the tests that need no Docker pass. The
Celery runner gets its own Redis, MongoDB-protocol server (nx-27017) and one worker,
started here and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))


def load_tests(path: Path, root: Path | None = None) -> list[dict[str, Any]]:
    """conformance_tests.yaml with its ``$import``s, in order; each test's ``tool`` and
    ``job`` relative to the suite's folder (an imported file's are relative to its own,
    as cwltest resolves them)."""
    root = root or path.parent
    out: list[dict[str, Any]] = []
    for entry in yaml.safe_load(path.read_text()) or []:
        if "$import" in entry:
            out += load_tests(path.parent / entry["$import"], root)
            continue
        for key in ("tool", "job"):
            if entry.get(key):
                rebased = os.path.relpath(path.parent / str(entry[key]), root)
                entry[key] = rebased.replace(os.sep, "/")
        out.append(entry)
    return out


def needs_docker(test: dict[str, Any], suite: Path) -> bool:
    """Does the test's document *require* a container (the chordflow runners' exit 33
    where no container engine answers)?"""
    from chordflow.cwl.document import CwlInvalid, needs_container, pack_document

    path = suite / str(test.get("tool", "")).split("#")[0]
    if not path.is_file() or "DockerRequirement" not in path.read_text(errors="replace"):
        return False
    try:
        return needs_container(pack_document(path))
    except CwlInvalid:
        return False


def run_cwltest(suite: Path, tool: str, report: Path, args: argparse.Namespace,
                env: dict[str, str]) -> dict[str, str]:
    """Run cwltest with ``tool``; test id → passed / failed / unsupported.

    Read from cwltest's log and the exit codes the wrapper records with the arguments
    of each call (cwltest writes its JUnit report only at the end, so a run stopped by
    ``--budget`` still counts what it finished); a code is matched to its test by the
    tool and job it ran, so that ``-j2`` (tests finishing out of order) counts right.
    """
    codes = report.with_suffix(".codes")
    codes.write_text("")
    wrapper = report.with_suffix(".sh")
    wrapper.write_text(f'#!/bin/sh\n"{tool}" "$@"\nrc=$?\necho "$rc $*" >> "{codes}"\n'
                       'exit $rc\n')
    wrapper.chmod(0o755)
    cmd = [str(BIN / "cwltest"), "--test", str(suite / "conformance_tests.yaml"),
           "--tool", str(wrapper), "-j", str(args.j), "--timeout", str(args.timeout)]
    if args.n:
        cmd += ["-n", args.n]
    if args.tags:
        cmd += ["--tags", args.tags]
    log = report.with_suffix(".log")
    with log.open("wb") as out:
        try:
            subprocess.run(cmd, cwd=suite, env=env, stdout=out, stderr=subprocess.STDOUT,
                           timeout=args.budget, check=False)
        except subprocess.TimeoutExpired:
            out.write(b"\n(stopped: --budget reached)\n")
    return results(log.read_text(errors="replace"), codes.read_text().splitlines(),
                   {t["id"]: t for t in load_tests(suite / "conformance_tests.yaml")})


def _call_key(args: list[str]) -> tuple[str, ...]:
    """The tool and job of one call, as paths relative to the suite's folder."""
    return tuple(a.removeprefix("./") for a in args if not a.startswith("--"))


def results(log: str, codes: list[str], tests: dict[str, dict[str, Any]]
            ) -> dict[str, str]:
    """Test id → passed / failed / unsupported: failed from cwltest's log, the others
    from the exit code of the call that ran the test's tool and job (33: unsupported)."""
    started = re.findall(r"^Test \[(\d+)/\d+\] ([^:\s]+)", log, re.M)
    failed = set(re.findall(r"^Test (\d+) (?:failed|timed out)", log, re.M))
    by_call: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for line in codes:
        rc, _, args = line.partition(" ")
        by_call[_call_key(args.split())].append(rc)
    found: dict[str, str] = {}
    for number, test_id in started:
        test = tests.get(test_id, {})
        key = tuple(str(test[k]) for k in ("tool", "job") if test.get(k))
        code = by_call[key].pop(0) if by_call.get(key) else None
        if code == "33":  # cwltest fails a `required` test for it: it is unsupported
            found[test_id] = "unsupported"
        elif number in failed:
            found[test_id] = "failed"
        elif code is not None:
            found[test_id] = "passed"
    return found


def reference_tool(work: Path) -> Path:
    """cwltool as the chordflow runners run their processes: without a container where
    no container engine answers (a required one is then unsupported, exit 33)."""
    from chordflow.cwl.document import container_engine

    script = work / "cwltool-reference"
    flags = "" if container_engine() else " --no-container"
    script.write_text(f"#!/bin/sh\nexec {BIN / 'cwltool'}{flags} \"$@\"\n")
    script.chmod(0o755)
    return script


_docker: dict[str, bool] = {}


def docker_needed(test: dict[str, Any], suite: Path) -> bool:
    if test["id"] not in _docker:
        _docker[test["id"]] = needs_docker(test, suite)
    return _docker[test["id"]]


def table(name: str, tests: list[dict[str, Any]], got: dict[str, str], suite: Path) -> str:
    by_tag: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for test in tests:
        status = got.get(test["id"])
        if status is None:
            continue
        for tag in ["all", *(test.get("tags") or [])]:
            by_tag[tag][status] += 1
    lines = [f"### {name}", "", "| tag | passed | failed | unsupported |",
             "| --- | ---: | ---: | ---: |"]
    for tag in sorted(by_tag, key=lambda t: (t != "all", t != "required", t)):
        c = by_tag[tag]
        lines.append(f"| {tag} | {c['passed']} | {c['failed']} | {c['unsupported']} |")
    plain = [t for t in tests if t["id"] in got and not docker_needed(t, suite)]
    required = [t for t in plain if "required" in (t.get("tags") or ())]
    passed = sum(got[t["id"]] == "passed" for t in plain)
    req_passed = sum(got[t["id"]] == "passed" for t in required)
    lines += ["", f"Without Docker: {passed}/{len(plain)} passed "
              f"({100 * passed / max(1, len(plain)):.0f}%, target 85%); required: "
              f"{req_passed}/{len(required)} (target all).", ""]
    return "\n".join(lines)


@contextmanager
def celery_workers(work: Path) -> Iterator[dict[str, str]]:
    """Redis, nx-27017 and one worker (prefork, 2 processes), as `chordflow dev` has."""
    from tests.servers import celery_worker, mongo_server, redis_server, worker_env

    work.mkdir(parents=True, exist_ok=True)
    with redis_server() as (broker, _, _), mongo_server() as mongo:
        env = worker_env(broker, mongo, f"cwl{uuid.uuid4().hex[:8]}", work / "work",
                         CHORDFLOW_CWL_EXECUTOR="celery")
        with celery_worker(env, "cwl", "--concurrency", "2", log=work / "worker.log"):
            yield env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, required=True)
    parser.add_argument("-j", type=int, default=1)
    parser.add_argument("-n", default=None, help="cwltest's test numbers (1-50, 3,7)")
    parser.add_argument("--tags", default=None)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per test")
    parser.add_argument("--budget", type=int, default=6 * 3600,
                        help="seconds each runner's whole suite may take")
    parser.add_argument("--runners", default="embedded,celery,cwltool")
    parser.add_argument("--out", type=Path, default=None, help="keep the reports here")
    args = parser.parse_args()
    suite = args.suite.resolve()
    tests = load_tests(suite / "conformance_tests.yaml")
    work = args.out or Path(tempfile.mkdtemp(prefix="cwl-conformance-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    sections = []
    for runner in args.runners.split(","):
        start = time.monotonic()
        report = work / runner
        if runner == "cwltool":
            got = run_cwltest(suite, str(reference_tool(work)), report, args, env)
        elif runner == "embedded":
            got = run_cwltest(suite, str(BIN / "chordflow-cwl"), report, args,
                              {**env, "CHORDFLOW_CWL_EXECUTOR": "embedded"})
        else:
            with celery_workers(work / "celery") as worker:
                got = run_cwltest(suite, str(BIN / "chordflow-cwl"), report, args,
                                  {**worker, "PATH": env["PATH"]})
        label = {"embedded": "chordflow-cwl (embedded)", "celery": "chordflow-cwl (Celery)",
                 "cwltool": "cwltool (reference)"}[runner]
        sections.append(table(f"{label}: {len(got)} tests in "
                              f"{time.monotonic() - start:.0f}s", tests, got, suite))
        print(sections[-1], flush=True)
        (work / "summary.md").write_text("\n".join(sections))
        json.dump(got, (work / f"{runner}.json").open("w"))
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
