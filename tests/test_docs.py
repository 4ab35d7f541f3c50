"""The README and the documentation site: the site builds in strict mode (no broken
link, anchor or included example), the README stays a newcomer's page (short, the two
make commands first, nothing linked outside the repository), and the snippets run as
written: workflows validate, the first workflow, the Python API and a module file run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chordflow.engine.plan import compile_plan
from chordflow.modules.registry import default_registry
from chordflow.workflow.loader import load_data

from tests.servers import ROOT

BIN = Path(sys.executable).parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
#: [text](target) and <scheme://...>; images too.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)|<([a-z]+://[^>]+)>")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(path: Path, lang: str) -> list[str]:
    return [body for kind, body in BLOCK.findall(path.read_text()) if kind == lang]


def local_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHORDFLOW_")}
    return {**env, "CHORDFLOW_WORKDIR": str(tmp_path / "work"),
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}


def test_site_builds_in_strict_mode(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    site = tmp_path / "site"
    for page in DOCS:
        name = "" if page.stem == "index" else page.stem
        assert (site / name / "index.html").exists(), f"{page.name} is not in the site"
    # Every example is included from examples/ as it is (pymdownx.snippets).
    examples = (site / "examples" / "index.html").read_text()
    assert "max_parallel" in examples and "workflow_name" in examples
    assert "--8&lt;--" not in examples and '--8<--' not in examples


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    assert {p.name for p in DOCS} == set(re.findall(r"\b([\w-]+\.md)\b", nav))


def test_readme_is_short_and_starts_with_the_make_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 250
    first = BLOCK.search(text)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(2).splitlines()]
    assert [c for c in commands if c][:2] == ["make run", "make test"]
    for target in ("run:", "test:", "docs:"):
        assert re.search(rf"^{target}", (ROOT / "Makefile").read_text(), re.M), target


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_stay_inside_the_repository(page: Path) -> None:
    text = page.read_text()
    assert not re.search(r"\bissue #?\d", text, re.I), "issue numbers in the text"
    assert "../" not in text, "a path out of the repository"
    for match in LINK.finditer(text):
        target = match.group(1) or match.group(2)
        assert "://" not in target and not target.startswith(("mailto:", "//")), target
        path = target.split("#")[0]
        if not path:
            continue  # an anchor on the same page (mkdocs checks those in docs/)
        resolved = (page.parent / path).resolve()
        assert resolved.is_relative_to(ROOT), f"{target} leaves the repository"
        assert resolved.exists(), f"{page.name}: {target} does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_paths_are_the_package(page: Path) -> None:
    text = page.read_text()
    old = re.findall(r"\b(?:from|import) (?:app|modules|tasks|workers)\b[.\w]*", text)
    old += re.findall(r"-A (?:app|workers)\.\w+", text)
    assert not old, f"{page.name} still names the old import paths: {old}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_workflow_snippets_validate(page: Path) -> None:
    for i, body in enumerate(blocks(page, "yaml")):
        doc = yaml.safe_load(body)
        if isinstance(doc, dict) and "steps" in doc:
            compile_plan(load_data(doc, name_hint=f"{page.stem}-{i}"), default_registry())


def test_readme_first_workflow_runs_as_written(tmp_path: Path) -> None:
    [script] = [b for b in blocks(README, "sh") if "hello.yaml" in b]
    assert script.startswith(". .venv/bin/activate\n")
    script = script.removeprefix(". .venv/bin/activate\n").replace(
        "/tmp/chordflow-hello", str(tmp_path / "out"))
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path,
                          env=local_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"shout": {"status": "skipped"' in done.stdout  # --var who=you
    assert "flowchart TD" in done.stdout
    assert "hello you" in (tmp_path / "out" / "greeting.json").read_text()


def test_readme_python_api_runs_from_any_directory(tmp_path: Path) -> None:
    [code] = blocks(README, "python")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                          env=local_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "5 values, mean 2.8\n"


def test_module_file_from_the_docs_runs(tmp_path: Path) -> None:
    page = ROOT / "docs" / "modules.md"
    [module] = blocks(page, "python")
    [script] = blocks(page, "sh")
    (tmp_path / "my-modules").mkdir()
    (tmp_path / "my-modules" / "greet.py").write_text(module)
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path,
                          env=local_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"text": "hello newcomer"' in done.stdout


def test_schema_for_editors_as_the_reference_says(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "workflows.md").read_text()
    assert "chordflow schema -o workflow.schema.json" in page
    done = subprocess.run([str(BIN / "chordflow"), "schema", "-o", "workflow.schema.json"],
                          cwd=tmp_path, env=local_env(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    schema = json.loads((tmp_path / "workflow.schema.json").read_text())
    assert {"name", "steps"} <= set(schema["properties"])
