"""References and templates: parsing, type preservation, interpolation, escapes."""

from __future__ import annotations

import pytest
from chordflow.errors import ReferenceResolutionError
from chordflow.workflow.references import parse_reference
from chordflow.workflow.templating import (
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


# -- shell code: references are inserted quoted unless marked raw ----------------------

SHELL_SCOPE = {"variables": {"word": "hello", "spaced": "a b", "evil": "'; echo INJECTED; '",
                             "sub": "$(id)", "n": 3, "argv": ["ls", "-l"], "empty": "",
                             "obj": {"k": "v w"}, "code": "echo one; echo two"}}


def shell(value):
    return compile_template(value, shell=True).render(resolve_in(SHELL_SCOPE))


def test_shell_code_inserts_each_reference_quoted():
    assert shell("echo ${variables.word}") == "echo hello"  # a plain word is unchanged
    assert shell("echo ${variables.spaced}!") == "echo 'a b'!"
    assert shell("echo X=${variables.evil}") == "echo X=''\"'\"'; echo INJECTED; '\"'\"''"
    assert shell("echo ${variables.sub} ${variables.n}") == "echo '$(id)' 3"
    assert shell("echo [${variables.empty}]") == "echo ['']"
    assert shell("echo ${variables.obj}") == "echo '{\"k\": \"v w\"}'"


def test_shell_code_raw_marker_inserts_code():
    assert shell("${variables.word} ${raw:variables.code}") == "hello echo one; echo two"
    assert shell("echo ${ raw: variables.spaced }") == "echo a b"
    node = compile_template("x ${raw:steps.a.outputs.c}", shell=True)
    assert [r.text for r in node.references()] == ["steps.a.outputs.c"]


def test_shell_code_whole_string_reference_is_quoted_unless_raw():
    assert shell("${variables.code}") == "'echo one; echo two'"
    assert shell("${raw:variables.code}") == "echo one; echo two"
    assert shell("${variables.n}") == "3"
    assert shell("${variables.argv}") == ["ls", "-l"]  # a list is argv: run without a shell


def test_shell_code_escape_and_literals_stay_as_written():
    assert shell("X=1; echo $${X} ${variables.spaced}") == "X=1; echo ${X} 'a b'"
    assert shell("echo 'literal; text'") == "echo 'literal; text'"
    assert shell(["printf", "%s", "${variables.evil}"]) == ["printf", "%s",
                                                            SHELL_SCOPE["variables"]["evil"]]


def test_raw_marker_outside_shell_code_is_an_error():
    with pytest.raises(TemplateSyntaxError, match="only in parameters that are shell code"):
        compile_template({"msg": "hi ${raw:variables.word}"}, "params")
    with pytest.raises(TemplateSyntaxError, match="empty reference"):
        compile_template("echo ${raw:}", shell=True)


NASTY = ["'; echo INJECTED; '", '"; echo INJECTED; "', "$(echo INJECTED)", "`echo INJECTED`",
         "a\\\necho INJECTED", "\\", "x' ; echo INJECTED ; '", "$HOME", "a\nEOX", "#!*?[a]~"]


@pytest.mark.parametrize(("template", "expected"), [
    ("printf '%s\\n' ${variables.v}", "{v}"),
    ('printf "%s\\n" "hi ${variables.v}!"', "hi {v}!"),
    ("printf '%s\\n' 'hi ${variables.v}!'", "hi {v}!"),
    ('printf "%s\\n" "$(printf %s ${variables.v})"', "{v}"),
    ('printf "%s\\n" "`printf %s ${variables.v}`"', "{v}"),
    ('printf "%s\\n" "`printf %s "${variables.v}"`"', "{v}"),
    ("printf '%s\\n' \"$(printf %s \"`printf %s ${variables.v}`\")\"", "{v}"),
    ("cat <<EOF\nv=${variables.v}\nEOF", "v={v}"),
    ("cat <<'EOF'\nv=${variables.v} $HOME\nEOF", "v={v} $HOME"),
    ("cat <<-EOF\n\tv=${variables.v}\n\tEOF", "v={v}"),
    ("# note ${variables.v}\necho done", "done"),
])
@pytest.mark.parametrize("value", NASTY)
@pytest.mark.parametrize("sh", ["/bin/sh", "bash"])
def test_shell_quoting_holds_wherever_the_reference_stands(template, expected, value, sh):
    """Each command really runs in a shell (/bin/sh, and bash, which is /bin/sh on some
    hosts): the value comes back as text, nothing of it runs."""
    import shutil
    import subprocess

    if shutil.which(sh) is None:
        pytest.skip(f"{sh} is not installed")
    cmd = compile_template(template, shell=True).render(resolve_in({"variables": {"v": value}}))
    done = subprocess.run([sh, "-c", cmd], capture_output=True, text=True, timeout=10)
    assert (done.returncode, done.stdout) == (0, expected.replace("{v}", value) + "\n"), cmd


def test_shell_quoting_refuses_what_it_cannot_quote():
    with pytest.raises(TemplateSyntaxError, match="parameter expansion"):
        compile_template("echo $${X:-${variables.v}}", "params.cmd", shell=True)
    with pytest.raises(TemplateSyntaxError, match="here-document"):
        compile_template("cat <<${variables.v}\nx\n", "params.cmd", shell=True)
    node = compile_template("cat <<EOF\n${variables.v}\nEOF", shell=True)
    with pytest.raises(ReferenceResolutionError, match="delimiter of the here-document"):
        node.render(resolve_in({"variables": {"v": "a\nEOF\necho INJECTED"}}))
