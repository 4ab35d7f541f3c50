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



def test_floats_reach_the_command_line_as_they_were_written(tmp_path: Path) -> None:
    # The document is recorded as JSON with the run: 1.23e5 must still print 123000
    # (cwltool prints a float from its written text), 123000.0 still 123000.0, and a
    # job file is read as YAML 1.2 (2.5e3 is a float there, not a string).
    done = cwl("--quiet", "--outdir", str(tmp_path / "out"), str(DOCS / "floats.cwl"),
               str(DOCS / "floats-job.yml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "floats.txt").read_text() == "0.00001 123000 123000.0 2500"
    done = cwl("--quiet", str(DOCS / "bigint.cwl"), cwd=tmp_path)  # and an int of 18 bytes
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"big": 42 * 10**41, "small": 4242424242}


def test_a_subworkflow_s_steps_are_chordflow_steps(tmp_path: Path) -> None:
    # features.cwl's "sub" (run above, end to end) becomes its input object, its own
    # step and the gathering of its outputs, each a chordflow step of the run.
    from chordflow.cwl.convert import cwl_document

    doc = cwl_document(DOCS / "features.cwl", DOCS / "features-job.yml", tmp_path)
    steps = {s["name"]: s for s in doc["steps"]}
    assert [n for n in steps if n.startswith("sub")] == ["sub__inputs", "sub__twice", "sub"]
    assert (steps["sub__inputs"]["method"], steps["sub__twice"]["method"],
            steps["sub"]["method"]) == ("inputs", "step", "gather")
    assert steps["sub__twice"]["params"]["inputs"]["n"]["sources"] == [
        {"value": "${steps.sub__inputs.outputs}", "key": "n"}]
