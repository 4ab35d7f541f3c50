"""The replaced systems' formats, from their own READMEs, converted and run.

The files under tests/fixtures/dialects are copied verbatim from the READMEs; where a
test needs a local server instead of a public address it substitutes the address
after loading, and says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from chordflow.config import Settings
from chordflow.errors import ValidationFailed
from chordflow.modules.registry import load_registry
from chordflow.workflow.dialects import detect
from chordflow.workflow.loader import load_data, load_file

FIXTURES = Path(__file__).parent / "fixtures"
DIALECTS = FIXTURES / "dialects"
APPS = load_registry([FIXTURES / "apps"])


def read(name: str) -> dict:
    return json.loads((DIALECTS / name).read_text())


# -- the DAG engine's format (step_name / app / base_context) ------------------------------

def test_dag_engine_readme_example_converts():
    wf = load_file(DIALECTS / "dag_engine_readme_2step.json")
    assert (wf.name, wf.version) == ("my-pipeline", "1.0")
    assert wf.variables["workspace_output_folder"] == "/user/home/output"
    step1, step2 = wf.steps
    assert (step1.module, step1.method) == ("GenomeAssembly2", "run")
    assert step1.params["output_path"] == "${variables.workspace_output_folder}/Assembly"
    assert step2.params["contigs"] == "${steps.step1.outputs.contigs}"
    assert step2.depends_on == ["step1"]
    assert wf.outputs == {"step2.genome": "${steps.step2.outputs.genome}"}


def test_dag_engine_readme_example_runs(run_workflow):
    report = run_workflow(load_file(DIALECTS / "dag_engine_readme_2step.json"),
                          registry=APPS)
    assert report["status"] == "succeeded", report["error"]
    step1 = report["steps"]["step1"]
    contigs = "/user/home/output/Assembly/.assembly_output/contigs.fa"
    assert step1["outputs"]["contigs"] == contigs
    assert step1["outputs"]["app"] == "GenomeAssembly2"
    assert report["outputs"] == {
        "step2.genome": "/user/home/output/Annotation/.annotation/annotation.genome"
    }


def test_dag_engine_missing_workflow_output_fails_the_run_clearly(run_workflow):
    doc = read("dag_engine_readme_2step.json")
    doc["workflow_outputs"] = ["${steps.step2.outputs.nothing}"]
    report = run_workflow(load_data(doc), registry=APPS)
    # The original rejected such a submission; chordflow fails the run, naming the key.
    assert report["steps"]["step2"]["status"] == "succeeded"
    assert report["status"] == "failed"
    assert "outputs:" in report["error"] and "no key 'nothing'" in report["error"]


def test_dag_engine_skeleton_example_with_environment(run_workflow, monkeypatch):
    monkeypatch.setenv("workspace_root", "/ws")
    # As the local CLI loads a file: its environment may be read.
    wf = load_file(DIALECTS / "dag_engine_readme_skeleton.json", environ=os.environ)
    assert wf.variables["workspace_root"] == "/ws"  # copied from the environment
    report = run_workflow(wf, registry=APPS)
    assert report["status"] == "succeeded"
    assert report["steps"]["annotate"]["outputs"]["genome_object"] == \
        "/ws/Annotation/.my_annotation/genome.gto"
    # ${steps[1].outputs['genome_object']}: by position, which the original left as text
    assert report["outputs"] == {
        "annotate.genome_object": "/ws/Annotation/.my_annotation/genome.gto"
    }


def test_dag_engine_unknown_name_is_an_error(monkeypatch):
    monkeypatch.delenv("workspace_root", raising=False)
    with pytest.raises(ValidationFailed) as info:
        load_file(DIALECTS / "dag_engine_readme_skeleton.json", environ=os.environ)
    located = {(e.step, e.field) for e in info.value.errors}
    assert ("assemble", "params.output_path") in located
    assert ("annotate", "params.output_path") in located
    assert "'${workspace_root}' is not in base_context" in str(info.value)


def test_over_http_a_dag_engine_document_reads_only_the_environment_an_admin_allows(
        monkeypatch):
    """A document sent to the API must not read the server's environment (its settings,
    its secrets): only base_context, and the names listed in CHORDFLOW_DIALECT_ENV."""
    monkeypatch.setenv("workspace_root", "/ws")
    monkeypatch.setenv("CHORDFLOW_SECRETS", '{"token": "s3cr3t"}')
    doc = {"workflow_name": "x", "steps": [
        {"step_name": "s1", "app": "echo", "params": {"s": "${CHORDFLOW_SECRETS}"}}]}
    with pytest.raises(ValidationFailed, match="not in base_context"):
        load_data(doc)  # no environment at all, as the API loads it by default
    allowing = Settings(dialect_env="workspace_root,CHORDFLOW_SECRETS")
    assert allowing.dialect_environ() == {"workspace_root": "/ws"}  # never CHORDFLOW_*
    with pytest.raises(ValidationFailed, match="not in base_context"):
        load_data(doc, environ=allowing.dialect_environ())
    wf = load_data(read("dag_engine_readme_skeleton.json"),
                   environ=allowing.dialect_environ())
    assert wf.variables["workspace_root"] == "/ws"


def test_dag_engine_rejects_ids_and_unknown_fields():
    doc = read("dag_engine_readme_2step.json")
    doc["workflow_id"] = "wf_1"
    doc["steps"][0]["step_id"] = "x"
    doc["steps"][1]["retry"] = 3
    with pytest.raises(ValidationFailed) as info:
        load_data(doc)
    located = {(e.step, e.field) for e in info.value.errors}
    assert located == {(None, "workflow_id"), ("step1", "step_id"), ("step2", "retry")}


def test_dag_engine_references_resolve_inside_nested_values_and_keep_types(run_workflow):
    doc = {
        "workflow_name": "nested", "version": "1",
        "base_context": {"n": 3, "root": "/r"},
        "steps": [
            {"step_name": "a", "app": "echo", "params": {"libs": [{"n": "${n}"}],
                                                       "msg": "root is ${root}"}},
            {"step_name": "b", "app": "echo",
             "params": {"n": "${steps.a.outputs.libs[0].n}", "p": "${steps.a.params.msg}"}},
        ],
        "workflow_outputs": ["${steps.b.outputs.n}"],
    }
    report = run_workflow(doc)
    assert report["steps"]["a"]["outputs"] == {"libs": [{"n": 3}], "msg": "root is /r"}
    assert report["steps"]["b"]["outputs"] == {"n": 3, "p": "root is /r"}
    assert report["outputs"] == {"b.n": 3}


# -- the procedures format ---------------------------------------------------------------

def test_procedures_readme_example_runs_against_a_local_server(run_workflow, http_server,
                                                               tmp_path):
    doc = read("procedures_readme.json")
    # Local addresses instead of the README's public ones; everything else verbatim.
    doc["procedures"][0]["params"]["url"] = f"{http_server}/items"
    doc["procedures"][1]["params"]["file_path"] = str(tmp_path / "output.json")
    doc["procedures"][2]["params"]["url"] = f"{http_server}/hook"
    wf = load_data(doc, name_hint="readme")
    assert [s.module for s in wf.steps] == ["http", "file", "notify"]
    assert wf.steps[2].params["body"]["text"] == "Done. Saved ${steps.fetch.outputs.count} rows."
    report = run_workflow(wf)
    saved = json.loads((tmp_path / "output.json").read_text())
    assert saved == {"items": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    # Http.get has no `count`: the original sent the text literally, chordflow says so.
    notify = report["steps"]["notify"]
    assert notify["status"] == "failed" and "no key 'count' in steps.fetch.outputs" in \
        notify["error"]

    doc["procedures"][2]["params"]["body"]["text"] = "Done. Saved @fetch.status_code."
    report = run_workflow(load_data(doc, name_hint="readme"))
    assert report["status"] == "succeeded"
    hook = report["steps"]["notify"]["outputs"]["json"]
    assert hook["method"] == "POST" and hook["body"] == {"text": "Done. Saved 200."}
    assert report["steps"]["fetch"]["outputs"]["status"] is True  # @fetch.status works


def test_procedures_kt_example_runs_in_order(run_workflow):
    wf = load_file(DIALECTS / "procedures_kt.json")
    assert wf.name == "procedures_kt"
    assert wf.steps[1].depends_on == ["step1"]
    report = run_workflow(wf, registry=APPS)
    assert report["steps"]["step2"]["outputs"]["msg"] == "ret from ret from hello world"
    assert report["status"] == "succeeded"  # status 0 is not status false


def test_procedures_kt_example_runs_on_the_native_module(run_workflow):
    wf = load_file(DIALECTS / "procedures_kt.json")
    assert [(s.module, s.method) for s in wf.steps] == [("kt", "prt1"), ("kt", "prt2")]
    report = run_workflow(wf)  # no module path: common.Kt is built in
    assert report["status"] == "succeeded"
    assert report["steps"]["step2"]["outputs"] == {"status": True,
                                                   "msg": "ret from ret from hello world"}


def test_procedures_unknown_mod_names_the_module():
    from chordflow.engine.plan import compile_plan

    doc = read("procedures_kt.json")
    for proc in doc["procedures"]:
        proc["mod"] = "custom.Missing"
    with pytest.raises(ValidationFailed) as info:
        compile_plan(load_data(doc), load_registry())
    assert {(e.step, e.field) for e in info.value.errors} == {("step1", "module"),
                                                               ("step2", "module")}
    assert "unknown module 'custom.Missing'" in str(info.value)


def test_procedures_reference_rules(tmp_path):
    from chordflow.config import Settings
    from chordflow.engine.embedded import EmbeddedExecutor

    with EmbeddedExecutor(settings=Settings(workdir=tmp_path)) as ex:
        run_id = ex.run(ex.compile(load_file(DIALECTS / "procedures_references.json")),
                        timeout=20)
        step2 = ex.store.get_steps(run_id)["step2"]
    assert step2.outputs is not None and step2.outputs["msg"] == "ret from hello"
    assert step2.params == {"msg": "hello", "email": "kk@gmail.com", "raw": "@example"}


@pytest.mark.parametrize("name", ["procedures_filter.json", "procedures_select_dedup.json"])
def test_procedures_filter_examples(run_workflow, tmp_path, name):
    rows = [
        {"host": "a", "region": "eu", "status": "active", "score": 90, "name": "z"},
        {"host": "b", "region": "us", "status": "down", "score": 95, "name": "y"},
        {"host": "a", "region": "eu", "status": "active", "score": 85, "name": "w"},
        {"host": "c", "region": "ap", "status": "active", "score": 70, "name": "v"},
    ]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    doc = read(name)
    # The README snippets read "@prev_step.data"; supply that step.
    doc["procedures"].insert(0, {"name": "prev_step", "mod": "common.FileIO",
                                 "method": "read",
                                 "params": {"file_path": str(tmp_path / "rows.json")}})
    report = run_workflow(load_data(doc))
    assert report["status"] == "succeeded"
    if name == "procedures_filter.json":
        top = report["steps"]["top_10"]["outputs"]
        assert [r["name"] for r in top["data"]] == ["z", "w"] and top["count"] == 2
    else:
        dedup = report["steps"]["dedup_hosts"]["outputs"]["data"]
        assert dedup == [{"host": "a", "region": "eu", "status": "active"},
                         {"host": "b", "region": "us", "status": "down"},
                         {"host": "c", "region": "ap", "status": "active"}]


def test_procedures_text_file_example(run_workflow, tmp_path):
    (tmp_path / "config.conf").write_text("key = value\n")
    doc = read("procedures_csv_text.json")
    doc["procedures"][0]["params"]["file_path"] = str(tmp_path / "config.conf")
    doc["procedures"][1]["params"]["file_path"] = str(tmp_path / "out/report.txt")
    report = run_workflow(load_data(doc))
    assert report["status"] == "succeeded"
    assert (tmp_path / "out/report.txt").read_text() == "key = value\n"


def test_procedures_status_false_fails_and_stops_the_rest(run_workflow):
    doc = {"name": "sf", "procedures": [
        {"name": "a", "mod": "ops.Probe", "method": "fail", "params": {"msg": "connect"}},
        {"name": "b", "mod": "common.Kt", "method": "prt2", "params": {"msg": "@a.error"}},
    ]}
    report = run_workflow(load_data(doc), registry=APPS)
    assert report["steps"]["a"]["status"] == "failed"
    assert "status false: could not connect" in report["steps"]["a"]["error"]
    assert report["steps"]["b"]["status"] == "upstream_failed"


def test_procedures_var_sys_and_nested_references(run_workflow, tmp_path):
    from chordflow.config import Settings
    from chordflow.engine.embedded import EmbeddedExecutor
    from chordflow.engine.report import run_report

    doc = {"name": "refs", "variables": {"env": "production", "n": {"k": [5]}},
           "procedures": [
               {"name": "a", "mod": "common.Bash", "method": "run",
                "params": {"cmd": "echo @var.env @var.n.k.0 @sys.ssh_key user@host"}},
               {"name": "b", "mod": "common.Bash", "method": "run",
                "params": {"cmd": ["echo", "@a.stdout"], "env": {"WHOLE": "@var"}}},
           ]}
    settings = Settings(workdir=tmp_path, secrets={"ssh_key": "/keys/id_rsa"})
    with EmbeddedExecutor(settings=settings) as ex:
        run_id = ex.run(ex.compile(load_data(doc)), timeout=20)
        report = run_report(ex.store, run_id)
    assert report["status"] == "succeeded", report
    # The secret reached the command but is masked in every record.
    assert report["steps"]["a"]["outputs"]["stdout"] == "production 5 *** user@host\n"


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"msg": "@nobody.x"}, "params.msg", "'nobody' is not a step"),
        ({"msg": ["ok", {"deep": "see @later"}]}, "params.msg[1].deep", "'later' runs later"),
        ({"msg": "@sys"}, "params.msg", "'@sys' needs a key"),
    ],
)
def test_procedures_bad_references_name_step_and_field(params, field, message):
    doc = {"procedures": [
        {"name": "first", "mod": "common.Bash", "method": "run", "params": {"cmd": "true"}},
        {"name": "mid", "mod": "common.Kt", "method": "prt1", "params": params},
        {"name": "later", "mod": "common.Bash", "method": "run", "params": {"cmd": "true"}},
    ]}
    with pytest.raises(ValidationFailed) as info:
        load_data(doc)
    (error,) = info.value.errors
    assert (error.step, error.field) == ("mid", field) and message in error.message


def test_procedures_unknown_keys_are_errors_and_options_pass_through():
    with pytest.raises(ValidationFailed) as info:
        load_data({"procedures": [{"name": "s", "mod": "common.Bash", "method": "run",
                                   "parms": {"cmd": "true"}}], "extra": 1})
    located = {(e.step, e.field) for e in info.value.errors}
    assert {("s", "parms"), (None, "extra")} <= located
    wf = load_data({"name": "opts", "_positions": {}, "procedures": [
        {"name": "s", "mod": "common.Bash", "method": "run", "retries": 2, "timeout": 5,
         "params": {"cmd": "true"}}]})
    assert (wf.steps[0].retries, wf.steps[0].timeout) == (2, 5)


def test_procedures_legacy_tasks_key_and_dollar_text():
    wf = load_data({"name": "old", "tasks": [
        {"name": "s", "mod": "common.Bash", "method": "run",
         "params": {"cmd": "echo ${HOME} costs $5"}}]})
    assert wf.steps[0].params["cmd"] == "echo $${HOME} costs $5"


def test_detect():
    assert detect(read("procedures_kt.json")) == "procedures"
    assert detect(read("dag_engine_readme_2step.json")) == "dag-engine"
    assert detect({"name": "x", "steps": []}) == "canonical"
