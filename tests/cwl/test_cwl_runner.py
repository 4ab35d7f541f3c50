"""``chordflow-cwl`` (the conformance runner contract) and ``chordflow run x.cwl job``,
embedded, as real subprocesses: chordflow's own CWL documents (tests/cwl/docs) with
scatter, valueFrom, when, linkMerge and pickValue, secondary files, staging,
environment and shell requirements, JavaScript, records and a subworkflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).with_name("docs")
BIN = Path(sys.executable).parent
TIMEOUT = 240


def cwl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "chordflow-cwl"), *args], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=cwd)


def test_features_workflow_prints_exactly_its_output_object(tmp_path: Path) -> None:
    done = cwl("--quiet", "--outdir", str(tmp_path / "out"), str(DOCS / "features.cwl"),
               str(DOCS / "features-job.yml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)  # stdout is the output object and nothing else
    report = output.pop("report")
    assert output == {"greetings": ["hello ADA!", "hello GRACE!"],
                      "joined": "hello ADA! / hello GRACE!",  # the skipped step's null left out
                      "summary": {"lines": 3, "kind": "hello"},
                      "doubled": 6, "index": "data.txt.idx"}
    # The output file was moved where the caller asked, and is named there.
    assert report["location"] == (tmp_path / "out" / "count.txt").as_uri()
    assert (tmp_path / "out" / "count.txt").read_text().startswith("3 ")


def test_required_container_without_docker_is_unsupported_and_bad_input_fails(
        tmp_path: Path) -> None:
    from chordflow.cwl.document import container_engine

    done = cwl("--outdir", str(tmp_path), str(DOCS / "docker.cwl"), cwd=tmp_path)
    if container_engine() is None:
        assert done.returncode == 33, done.stderr
        assert "DockerRequirement" in done.stderr and done.stdout == ""
    else:
        assert done.returncode == 0, done.stderr
    (tmp_path / "bad.cwl").write_text("cwlVersion: v1.2\nclass: CommandLineTool\n"
                                      "inputs: {x: {type: nosuchtype}}\noutputs: []\n")
    done = cwl(str(tmp_path / "bad.cwl"), cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert "does not load" in done.stderr and "nosuchtype" in done.stderr


def test_chordflow_run_takes_a_cwl_document_and_its_job(tmp_path: Path) -> None:
    done = subprocess.run([str(BIN / "chordflow"), "run", str(DOCS / "scatter.cwl"),
                           str(DOCS / "scatter-job.json"), "--json"], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["outputs"]["cwl"] == {"lines": [["hello ada!"], ["hi ada!"]]}
    # Each CWL step is a chordflow step; the scatter is a foreach of two tasks.
    assert set(report["steps"]) == {"greet__scatter", "greet", "cwl_outputs"}
    assert report["steps"]["greet"]["status"] == "succeeded"
    assert len(report["steps"]["greet"]["outputs"]["items"]) == 2

