"""References and templates: parsing, type preservation, interpolation, escapes."""

from __future__ import annotations

import pytest

from app.errors import ReferenceResolutionError
from app.workflow.references import parse_reference
from app.workflow.templating import (
    Interpolated,
    Literal,
    Ref,
    TemplateSyntaxError,
    compile_template,
    resolve_in,
)

SCOPE = {
    "variables": {"n": 3, "name": "x", "flag": True, "nothing": None},
    "steps": {
        "fetch": {
            "outputs": {"json": {"items": [{"id": 7, "tags": ["a", "b"]}, {"id": 8}]},
                        "dotted.key": 1, "list": [1, 2, 3]},
            "status": "succeeded",
        }
    },
}


def render(value):
    return compile_template(value).render(resolve_in(SCOPE))


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("variables.n", ("variables", "n")),
        ("steps.fetch.outputs.json.items[0].id", ("steps", "fetch", "outputs", "json",
                                                  "items", 0, "id")),
        (" steps.s.outputs['a b'] ", ("steps", "s", "outputs", "a b")),
        ('steps.s.outputs["dotted.key"]', ("steps", "s", "outputs", "dotted.key")),
        ("item", ("item",)),
        ("x[-1]", ("x", -1)),
    ],
)
def test_parse_reference(text, path):
    assert parse_reference(text).path == path


@pytest.mark.parametrize("text", ["", "a..b", "a b", "[0]", "a[x]", "a.", "a.b]"])
def test_parse_reference_rejects_malformed(text):
    with pytest.raises(ValueError):
        parse_reference(text)


def test_single_reference_keeps_type():
    assert render("${steps.fetch.outputs.list}") == [1, 2, 3]
    assert render("${variables.n}") == 3
    assert render("${variables.flag}") is True
    assert render("${variables.nothing}") is None
    assert render("${steps.fetch.outputs.json.items[0]}") == {"id": 7, "tags": ["a", "b"]}
    assert isinstance(compile_template("${variables.n}"), Ref)


def test_nested_keys_and_indexes():
    assert render("${steps.fetch.outputs.json.items[0].tags[1]}") == "b"
    assert render("${steps.fetch.outputs.json.items.1.id}") == 8
    assert render("${steps.fetch.outputs.list[-1]}") == 3
    assert render("${steps.fetch.outputs['dotted.key']}") == 1


def test_interpolation_formats_values():
    assert render("n=${variables.n}, name=${variables.name}") == "n=3, name=x"
    assert render("flag=${variables.flag} none=${variables.nothing}") == "flag=true none=null"
    assert render("list=${steps.fetch.outputs.list}") == "list=[1, 2, 3]"
    assert isinstance(compile_template("a ${variables.n}"), Interpolated)


def test_escape_gives_literal_dollar_brace():
    assert render("cost $${variables.n} is ${variables.n}") == "cost ${variables.n} is 3"
    node = compile_template("$${HOME}")
    assert isinstance(node, Literal) and node.value == "${HOME}"


def test_references_inside_nested_structures():
    value = {"a": ["${variables.n}", {"b": "x-${variables.name}"}], "c": 5}
    assert render(value) == {"a": [3, {"b": "x-x"}], "c": 5}
    assert isinstance(compile_template({"a": [1, {"b": "plain"}]}), Literal)


def test_unclosed_reference_is_an_error():
    with pytest.raises(TemplateSyntaxError):
        compile_template("a ${variables.n")
    with pytest.raises(TemplateSyntaxError):
        compile_template("a ${b ${variables.n}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${steps.fetch.outputs.missing}", "no key 'missing' in steps.fetch.outputs"),
        ("${steps.fetch.outputs.list[5]}", "index 5 is out of range"),
        ("${steps.fetch.outputs.list.x}", "is a list"),
        ("${variables.n.x}", "is int"),
    ],
)
def test_unresolvable_reference_is_an_error(text, message):
    with pytest.raises(ReferenceResolutionError, match=message):
        render(text)
