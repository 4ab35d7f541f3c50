"""Execution semantics, through ``run_workflow`` so they run on every executor.

Each test is one behaviour from the issue: dependencies, type-preserving references,
declared outputs, ``when`` and skipping, ``foreach``, retries, failure propagation,
``continue_on_failure``, ``max_parallel``.
"""

from __future__ import annotations

from datetime import datetime

import pytest


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def test_references_keep_types_and_flow_between_steps(run_workflow):
    report = run_workflow({
        "name": "types",
        "variables": {"n": 3, "items": [1, 2]},
        "steps": [
            {"name": "a", "module": "echo", "params": {"list": "${variables.items}",
                                                      "obj": {"k": "${variables.n}"}}},
            {"name": "b", "module": "echo", "params": {
                "list": "${steps.a.outputs.list}", "n": "${steps.a.outputs.obj.k}",
                "text": "n=${steps.a.outputs.obj.k} list=${steps.a.outputs.list}",
                "first": "${steps.a.outputs.list[0]}",
            }},
        ],
        "outputs": {"list": "${steps.b.outputs.list}", "text": "${steps.b.outputs.text}"},
    })
    assert report["status"] == "succeeded"
    b = report["steps"]["b"]["outputs"]
    assert b == {"list": [1, 2], "n": 3, "text": "n=3 list=[1, 2]", "first": 1}
    assert report["outputs"] == {"list": [1, 2], "text": "n=3 list=[1, 2]"}


def test_declared_outputs_template_over_params_and_outputs(run_workflow):
    report = run_workflow({
        "name": "declared",
        "variables": {"root": "/data"},
        "steps": [
            {"name": "make", "module": "echo",
             "params": {"dir": "${variables.root}/out", "file": "x"},
             "outputs": {"path": "${params.dir}/.${params.file}/contigs.fa",
                         "again": "${outputs.file}"}},
            {"name": "use", "module": "echo", "params": {"p": "${steps.make.outputs.path}",
                                                        "d": "${steps.make.params.dir}"}},
        ],
    })
    assert report["steps"]["make"]["outputs"]["path"] == "/data/out/.x/contigs.fa"
    assert report["steps"]["make"]["outputs"]["again"] == "x"
    assert report["steps"]["use"]["outputs"] == {"p": "/data/out/.x/contigs.fa",
                                                 "d": "/data/out"}


def test_when_false_skips_the_step_and_its_children(run_workflow):
    report = run_workflow({
        "name": "when",
        "variables": {"mode": "full"},
        "steps": [
            {"name": "count", "module": "echo", "params": {"n": 4}},
            {"name": "big", "module": "echo", "when": "${steps.count.outputs.n} > 3 and "
                                                     "${variables.mode} == 'full'"},
            {"name": "small", "module": "echo", "when": "${steps.count.outputs.n} <= 3"},
            {"name": "after_small", "module": "echo", "depends_on": ["small"]},
            {"name": "grandchild", "module": "echo", "depends_on": ["after_small", "big"]},
            {"name": "independent", "module": "echo", "depends_on": ["count"]},
        ],
    })
    status = {k: v["status"] for k, v in report["steps"].items()}
    assert status == {"count": "succeeded", "big": "succeeded", "small": "skipped",
                      "after_small": "skipped", "grandchild": "skipped",
                      "independent": "succeeded"}
    assert report["status"] == "succeeded"


def test_when_that_cannot_be_evaluated_fails_the_step(run_workflow):
    report = run_workflow({
        "name": "badwhen",
        "steps": [
            {"name": "a", "module": "echo", "params": {"n": None}},
            {"name": "b", "module": "echo", "when": "${steps.a.outputs.n} > 3"},
        ],
    })
    assert report["steps"]["b"]["status"] == "failed"
    assert "when: cannot compare" in report["steps"]["b"]["error"]
    assert report["status"] == "failed"


def test_foreach_runs_once_per_item_in_order(run_workflow):
    report = run_workflow({
        "name": "map",
        "steps": [
            {"name": "list", "module": "echo", "params": {"xs": [{"v": 3}, {"v": 1},
                                                                 {"v": 2}]}},
            {"name": "each", "module": "bash", "foreach": "${steps.list.outputs.xs}",
             "params": {"cmd": "sleep 0.0${item.v}; echo ${item_index}:${item.v}"}},
            {"name": "after", "module": "echo",
             "params": {"all": "${steps.each.outputs.items}"}},
        ],
    })
    items = report["steps"]["each"]["outputs"]["items"]
    assert [i["stdout"] for i in items] == ["0:3\n", "1:1\n", "2:2\n"]
    assert len(report["steps"]["after"]["outputs"]["all"]) == 3
    assert report["status"] == "succeeded"


def test_foreach_over_empty_list_and_non_list(run_workflow):
    report = run_workflow({
        "name": "map2",
        "steps": [
            {"name": "list", "module": "echo", "params": {"xs": [], "n": 5}},
            {"name": "none", "module": "echo", "foreach": "${steps.list.outputs.xs}"},
            {"name": "bad", "module": "echo", "foreach": "${steps.list.outputs.n}"},
            {"name": "literal", "module": "echo", "foreach": [1, 2],
             "params": {"x": "${item}"}},
        ],
    })
    assert report["steps"]["none"] == {**report["steps"]["none"], "status": "succeeded",
                                       "outputs": {"items": []}}
    assert report["steps"]["bad"]["status"] == "failed"
    assert "expected a list, got int" in report["steps"]["bad"]["error"]
    assert report["steps"]["literal"]["outputs"] == {"items": [{"x": 1}, {"x": 2}]}


def test_foreach_item_failure_fails_the_step(run_workflow):
    report = run_workflow({
        "name": "mapfail",
        "steps": [
            {"name": "each", "module": "bash", "foreach": [0, 1, 0],
             "params": {"cmd": "exit ${item}"}},
            {"name": "child", "module": "echo", "depends_on": ["each"]},
        ],
    })
    assert report["steps"]["each"]["status"] == "failed"
    assert "1 of 3 items failed; item 1" in report["steps"]["each"]["error"]
    assert report["steps"]["child"]["status"] == "upstream_failed"


def test_retries_are_counted(run_workflow, tmp_path):
    counter = tmp_path / "count"
    report = run_workflow({
        "name": "retry",
        "steps": [
            # Fails twice, then succeeds on the third attempt.
            {"name": "flaky", "module": "bash", "retries": 3, "retry_delay": 0.05,
             "params": {"cmd": f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]"}},
            {"name": "hopeless", "module": "bash", "retries": 2,
             "params": {"cmd": "exit 7"}},
        ],
    })
    assert report["steps"]["flaky"]["status"] == "succeeded"
    assert report["steps"]["flaky"]["attempts"] == 3
    assert report["steps"]["hopeless"]["status"] == "failed"
    assert report["steps"]["hopeless"]["attempts"] == 3
    assert "exited with code 7" in report["steps"]["hopeless"]["error"]


def test_failure_marks_descendants_and_lets_independent_branches_finish(run_workflow):
    report = run_workflow({
        "name": "fail",
        "steps": [
            {"name": "bad", "module": "bash", "params": {"cmd": "exit 1"}},
            {"name": "child", "module": "echo", "depends_on": ["bad"]},
            {"name": "grandchild", "module": "echo", "depends_on": ["child"]},
            {"name": "slow", "module": "bash", "params": {"cmd": "sleep 0.3"}},
            {"name": "after_slow", "module": "echo", "depends_on": ["slow"]},
            {"name": "join", "module": "echo", "depends_on": ["after_slow", "grandchild"]},
        ],
    })
    status = {k: v["status"] for k, v in report["steps"].items()}
    assert status == {"bad": "failed", "child": "upstream_failed",
                      "grandchild": "upstream_failed", "slow": "succeeded",
                      "after_slow": "succeeded", "join": "upstream_failed"}
    assert report["status"] == "failed"
    assert report["error"].startswith("step 'bad' failed")


def test_continue_on_failure_lets_children_run_and_see_the_failure(run_workflow):
    report = run_workflow({
        "name": "cof",
        "steps": [
            {"name": "bad", "module": "bash", "continue_on_failure": True,
             "params": {"cmd": "echo oops >&2; exit 2"}},
            {"name": "cleanup", "module": "echo", "params": {
                "status": "${steps.bad.status}", "error": "${steps.bad.error}"}},
            {"name": "only_if_ok", "module": "echo",
             "when": "${steps.bad.status} == 'succeeded'"},
        ],
    })
    assert report["steps"]["bad"]["status"] == "failed"
    out = report["steps"]["cleanup"]["outputs"]
    assert out["status"] == "failed" and "oops" in out["error"]
    assert report["steps"]["only_if_ok"]["status"] == "skipped"
    assert report["status"] == "succeeded"


def test_unresolvable_reference_at_run_time_fails_the_step_clearly(run_workflow):
    report = run_workflow({
        "name": "missing",
        "steps": [
            {"name": "a", "module": "echo", "params": {"x": 1}},
            {"name": "b", "module": "echo", "retries": 3,
             "params": {"y": "${steps.a.outputs.nope}"}},
        ],
    })
    b = report["steps"]["b"]
    assert b["status"] == "failed" and b["attempts"] == 1  # not retried: it cannot change
    assert "params:" in b["error"] and "no key 'nope' in steps.a.outputs" in b["error"]


def test_params_of_the_wrong_type_fail_with_the_field(run_workflow):
    report = run_workflow({
        "name": "types2",
        "steps": [
            {"name": "a", "module": "echo", "params": {"n": "five"}},
            {"name": "b", "module": "filter", "method": "limit",
             "params": {"data": [1, 2], "count": "${steps.a.outputs.n}"}},
        ],
    })
    assert "params.count" in report["steps"]["b"]["error"]


def test_workflow_output_that_cannot_resolve_fails_the_run(run_workflow):
    report = run_workflow({
        "name": "outs",
        "steps": [{"name": "a", "module": "echo", "params": {"x": 1}}],
        "outputs": {"y": "${steps.a.outputs.y}"},
    })
    assert report["status"] == "failed"
    assert report["error"].startswith("outputs:")


@pytest.mark.parametrize("limit", [1, 3])
def test_max_parallel_limits_concurrency_including_foreach_items(run_workflow, limit,
                                                                 tmp_path):
    log = tmp_path / "log"
    cmd = f"echo +1 >> {log}; sleep 0.1; echo -1 >> {log}"
    steps = [{"name": f"s{i}", "module": "bash", "params": {"cmd": cmd}} for i in range(4)]
    steps.append({"name": "m", "module": "bash", "foreach": [1, 2, 3, 4],
                  "params": {"cmd": cmd}})
    report = run_workflow({"name": "mp", "max_parallel": limit, "steps": steps})
    assert report["status"] == "succeeded"
    running = peak = 0
    lines = log.read_text().split()
    for delta in lines:
        running += int(delta)
        peak = max(peak, running)
    assert len(lines) == 16 and running == 0
    assert peak == limit  # never more than the limit, and the limit is used


def test_non_series_parallel_dag_starts_each_step_when_its_own_parents_finish(run_workflow):
    """A->C, A->D, B->D: C must not wait for B (a level-by-level barrier would)."""
    report = run_workflow({
        "name": "nsp",
        "steps": [
            {"name": "A", "module": "bash", "params": {"cmd": "sleep 0.2"}},
            {"name": "B", "module": "bash", "params": {"cmd": "sleep 1.2"}},
            {"name": "C", "module": "bash", "depends_on": ["A"],
             "params": {"cmd": "sleep 0.2"}},
            {"name": "D", "module": "bash", "depends_on": ["A", "B"],
             "params": {"cmd": "true"}},
        ],
    })
    s = {k: (ts(v["started_at"]), ts(v["finished_at"])) for k, v in report["steps"].items()}
    assert report["status"] == "succeeded"
    assert s["C"][0] >= s["A"][1]                      # C after its parent
    assert s["C"][1] < s["B"][1]                       # ...and did not wait for B
    assert s["D"][0] >= max(s["A"][1], s["B"][1])      # D after both parents
