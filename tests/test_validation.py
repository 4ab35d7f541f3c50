"""Validation: every error names the step and the field, and all are reported at once."""

from __future__ import annotations

from typing import Any

import pytest
from chordflow.engine.plan import compile_plan
from chordflow.errors import ValidationFailed
from chordflow.modules.registry import load_registry
from chordflow.workflow.loader import load_data, load_text

REGISTRY = load_registry()


def errors_of(doc: dict[str, Any]) -> list[tuple[str | None, str | None, str]]:
    with pytest.raises(ValidationFailed) as info:
        compile_plan(load_data(doc), REGISTRY)
    return [(e.step, e.field, e.message) for e in info.value.errors]


def wf(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "t", "steps": list(steps), **extra}


def test_valid_workflow_compiles_with_dependencies_from_references():
    plan = compile_plan(load_data(wf(
        {"name": "a", "module": "echo"},
        {"name": "b", "module": "echo", "params": {"x": "${steps.a.outputs.x}"}},
        {"name": "c", "module": "echo", "depends_on": "a",
         "when": "${steps.b.outputs.x} == 1"},
    )), REGISTRY)
    assert plan.steps["b"].parents == ("a",)
    assert set(plan.steps["c"].parents) == {"a", "b"}
    assert plan.roots == ("a",)
    assert plan.order.index("a") < plan.order.index("b") < plan.order.index("c")


def test_unknown_module_and_method():
    errs = errors_of(wf({"name": "a", "module": "nope"},
                        {"name": "b", "module": "http", "method": "fetch",
                         "params": {"url": "x"}}))
    assert errs[0][:2] == ("a", "module") and "unknown module 'nope'" in errs[0][2]
    assert errs[1][:2] == ("b", "method") and "has no method 'fetch'" in errs[1][2]


def test_unknown_and_missing_params():
    errs = errors_of(wf({"name": "a", "module": "bash", "params": {"command": "ls"}}))
    assert ("a", "params.cmd", "required parameter is missing") in errs
    assert any(e[:2] == ("a", "params.command") and "unknown parameter" in e[2]
               for e in errs)


def test_unknown_references():
    errs = errors_of(wf(
        {"name": "a", "module": "echo", "params": {
            "x": "${steps.nope.outputs.y}",
            "y": {"deep": ["${variables.missing}"]},
            "z": "${stepz.a}",
            "w": "${item}",
            "v": "${steps.a.outputs.v}",
        }},
    ))
    by_field = {f: m for _, f, m in errs}
    assert "unknown step 'nope'" in by_field["params.x"]
    assert "unknown variable 'missing'" in by_field["params.y.deep[0]"]
    assert "unknown reference root 'stepz'" in by_field["params.z"]
    assert "only available in a step with 'foreach'" in by_field["params.w"]
    assert "cannot read itself" in by_field["params.v"]
    assert all(step == "a" for step, _, _ in errs)


def test_suggests_close_step_names():
    errs = errors_of(wf({"name": "fetch", "module": "echo"},
                        {"name": "b", "module": "echo", "depends_on": ["fecth"]}))
    assert errs == [("b", "depends_on", "unknown step 'fecth' (did you mean 'fetch'?)")]


def test_cycle_is_reported_with_its_path():
    errs = errors_of(wf(
        {"name": "a", "module": "echo", "depends_on": ["c"]},
        {"name": "b", "module": "echo", "params": {"x": "${steps.a.outputs.x}"}},
        {"name": "c", "module": "echo", "depends_on": ["b"]},
    ))
    assert len(errs) == 1
    step, fld, message = errs[0]
    assert fld == "depends_on" and "dependency cycle" in message
    path = message.split(": ", 1)[1].split(" -> ")
    assert path[0] == path[-1] and set(path) == {"a", "b", "c"}


def test_cycle_names_the_field_that_made_the_edge():
    errs = errors_of(wf(
        {"name": "a", "module": "echo", "params": {"x": "${steps.b.outputs.y}"}},
        {"name": "b", "module": "echo", "when": "${steps.a.outputs.x} == 1"},
    ))
    (step, fld, message), = errs
    assert "dependency cycle" in message
    assert (step, fld) in (("a", "params.x"), ("b", "when"))


def test_item_in_when_of_a_foreach_step_explains_why():
    errs = errors_of(wf({"name": "a", "module": "echo", "foreach": [1, 2],
                         "when": "${item} > 1"}))
    assert errs[0][:2] == ("a", "when")
    assert "evaluated once for the whole step" in errs[0][2]


def test_quoted_reference_in_when_is_an_error():
    errs = errors_of(wf({"name": "a", "module": "echo"},
                        {"name": "b", "module": "echo",
                         "when": "'${steps.a.outputs.m}' == 'full'"}))
    assert errs[0][:2] == ("b", "when") and "write it unquoted" in errs[0][2]


def test_secrets_cannot_be_iterated():
    errs = errors_of(wf({"name": "a", "module": "echo", "foreach": ["${secrets.x}"]}))
    assert errs[0][:2] == ("a", "foreach[0]") and "cannot be iterated" in errs[0][2]


def test_self_dependency():
    errs = errors_of(wf({"name": "a", "module": "echo", "depends_on": ["a"]}))
    assert errs == [("a", "depends_on", "a step cannot depend on itself")]


def test_duplicate_names():
    errs = errors_of(wf({"name": "a", "module": "echo"}, {"name": "a", "module": "echo"}))
    assert ("a", "name", "duplicate step name") in errs


@pytest.mark.parametrize(
    ("options", "fld"),
    [
        ({"retries": -1}, "retries"),
        ({"retry_delay": "soon"}, "retry_delay"),
        ({"timeout": 0}, "timeout"),
        ({"priority": 12}, "priority"),
        ({"continue_on_failure": "maybe"}, "continue_on_failure"),
        ({"retrys": 2}, "retrys"),
        ({"when": "  "}, "when"),
    ],
)
def test_bad_option_values(options, fld):
    with pytest.raises(ValidationFailed) as info:
        load_data(wf({"name": "x", "module": "echo"}, {"name": "a", "module": "echo", **options}))
    (error,) = info.value.errors
    assert (error.step, error.field) == ("a", fld)


def test_bad_step_name_and_workflow_fields():
    with pytest.raises(ValidationFailed) as info:
        load_data({"name": "t", "max_parallel": 0, "steps": [{"name": "a.b", "module": "echo"}]})
    located = {(e.step, e.field) for e in info.value.errors}
    assert (None, "max_parallel") in located and ("a.b", "name") in located


def test_when_and_foreach_that_do_not_parse():
    errs = errors_of(wf(
        {"name": "a", "module": "echo"},
        {"name": "b", "module": "echo", "when": "${steps.a.outputs.n} >> 3"},
        {"name": "c", "module": "echo", "foreach": "items: ${steps.a.outputs.list}"},
        {"name": "d", "module": "echo", "when": "${steps.a.outputs.n > 3"},
    ))
    fields = {(s, f) for s, f, _ in errs}
    assert ("b", "when") in fields and ("c", "foreach") in fields and ("d", "when") in fields


def test_params_reference_only_in_declared_outputs():
    errs = errors_of(wf({"name": "a", "module": "echo", "params": {"x": 1, "y": "${params.x}"},
                         "outputs": {"z": "${params.nope}"}}))
    by_field = {f: m for _, f, m in errs}
    assert "only available in a step's declared 'outputs'" in by_field["params.y"]
    assert "no param 'nope'" in by_field["outputs.z"]


def test_every_error_is_reported_at_once():
    errs = errors_of(wf(
        {"name": "a", "module": "nope"},
        {"name": "b", "module": "echo", "params": {"x": "${steps.zz.outputs.a}"}},
        {"name": "c", "module": "echo", "when": "((("},
    ))
    assert [s for s, _, _ in errs] == ["a", "b", "c"]


def test_run_variables_must_be_declared():
    plan = compile_plan(load_data(wf({"name": "a", "module": "echo"},
                                     variables={"x": 1})), REGISTRY)
    assert plan.effective_variables({"x": 2}) == {"x": 2}
    with pytest.raises(ValidationFailed, match="unknown variable 'y'"):
        plan.effective_variables({"y": 2})


def test_yaml_and_json_text():
    text = "name: t\nsteps:\n  - {name: a, module: echo, params: {x: 1}}\n"
    assert load_text(text).steps[0].params == {"x": 1}
    with pytest.raises(ValidationFailed, match="not valid JSON"):
        load_text("{", fmt="json")


# -- suggestions, literal params, YAML hints (issue 13, item 5) ---------------------------

def all_errors_of(doc: dict[str, Any]) -> list[tuple[str | None, str | None, str]]:
    """Every error, loading's and compiling's, as the API and CLI report them."""
    from chordflow.workflow.loader import compile_loaded

    with pytest.raises(ValidationFailed) as info:
        compile_loaded(lambda: load_data(doc), lambda w: compile_plan(w, REGISTRY))
    return [(e.step, e.field, e.message) for e in info.value.errors]


def test_a_misspelled_field_suggests_the_right_one_and_hides_no_other_error():
    errs = all_errors_of(wf({"name": "a", "module": "echo", "depend_on": ["b"]},
                            {"name": "b", "module": "echo", "depends_on": "nope"},
                            {"name": "c", "module": "nomodule"}, varibles={"x": 1}))
    assert ("a", "depend_on",
            "unknown field 'depend_on' (did you mean 'depends_on'?)") in errs
    assert (None, "varibles", "unknown field 'varibles' (did you mean 'variables'?)") in errs
    assert any(e[:2] == ("b", "depends_on") and "unknown step 'nope'" in e[2] for e in errs)
    assert any(e[:2] == ("c", "module") for e in errs)


def test_an_unknown_field_like_no_other_gets_no_suggestion():
    errs = all_errors_of(wf({"name": "a", "module": "echo", "zzzzqqq": 1}))
    assert errs == [("a", "zzzzqqq", "unknown field 'zzzzqqq'")]


def test_literal_params_are_checked_against_the_signature_at_validation():
    errs = all_errors_of(wf(
        {"name": "a", "module": "file", "method": "read",
         "params": {"path": 3, "format": "xml"}},
        {"name": "b", "module": "bash", "params": {"cmd": "true", "timeout": "soon",
                                                   "check": "${variables.c}"}},
        variables={"c": "maybe"}))
    fields = {(step, fld) for step, fld, _ in errs}
    assert fields == {("a", "params.path"), ("a", "params.format"), ("b", "params.timeout")}
    assert any("valid string" in m for s, f, m in errs if f == "params.path")


def test_templated_params_are_left_to_run_time():
    plan = compile_plan(load_data(wf(
        {"name": "a", "module": "file", "method": "read",
         "params": {"path": "${variables.p}", "encoding": "${variables.e}"}},
        variables={"p": 3, "e": "utf-8"})), REGISTRY)
    assert list(plan.steps) == ["a"]


def test_an_unquoted_reference_in_a_yaml_flow_mapping_says_where_and_how_to_quote():
    text = "name: t\nsteps:\n  - {name: a, module: echo, params: {x: ${variables.x}}}\n"
    with pytest.raises(ValidationFailed) as info:
        load_text(text)
    assert [e.message for e in info.value.errors] == [
        'not valid YAML: line 3, column 41: a value starting with ${ must be quoted in '
        'YAML: "${variables.x}"']


def test_other_yaml_and_json_errors_say_line_and_column():
    with pytest.raises(ValidationFailed) as info:
        load_text("name: t\nsteps: [a: b: c]\n  x\n")
    assert "line 2, column" in info.value.errors[0].message
    with pytest.raises(ValidationFailed) as info:
        load_text('{"name": "t",}', fmt="json")
    assert info.value.errors[0].message.startswith("not valid JSON: line 1, column 14")
