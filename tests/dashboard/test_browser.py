"""The dashboard in a real browser (Debian's Chromium, headless, through Playwright)
against a real API, real Celery workers, Redis and the MongoDB-protocol server: what a
user does, click by click, and what the page shows as the run goes on."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.conftest import Api
from tests.dashboard.conftest import UI_TIMEOUT_MS, PageFor, unique, wait_run

pytestmark = pytest.mark.slow


def expect(target: Any) -> Any:
    """Playwright's ``expect``, waiting as long as a real run may take."""
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=UI_TIMEOUT_MS)
    return playwright_expect(target)


def test_sign_in_with_a_key_then_sign_out(browser: Any, dash_api: Api,
                                          page_for: PageFor) -> None:
    page = page_for(None)
    page.goto("/")
    page.fill("#key", "cf_unknown_key")
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#sign-in [role=alert]")).to_contain_text("unknown or revoked")
    page.fill("#key", dash_api.keys["author"])
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#who-name")).to_have_text("dash-author (author)")
    expect(page.locator("#run-counts [data-status=total]")).to_be_visible()
    # The key is in an httpOnly, SameSite=Strict cookie: no script can read it.
    cookie = next(c for c in page.context.cookies() if c["name"] == "chordflow_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "chordflow_session" not in page.evaluate("document.cookie")
    # An author is no admin: the Admin page is not offered.
    expect(page.locator("[data-nav=admin]")).to_be_hidden()
    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    status = page.evaluate("fetch('/api/v1/runs').then(r => r.status)")
    assert status == 401
    assert not page.js_errors


def test_start_a_stored_workflow_from_its_run_form_and_watch_its_dag_turn_green(
        dash_api: Api, page_for: PageFor) -> None:
    name = unique("green")
    workflow = {"name": name, "variables": {"greeting": "hello", "times": 2, "loud": False},
                "steps": [
                    {"name": "wait", "module": "bash", "params": {"cmd": "sleep 1"}},
                    {"name": "say", "module": "echo", "depends_on": ["wait"],
                     "params": {"text": "${variables.greeting}", "n": "${variables.times}"}},
                    {"name": "each", "module": "echo", "foreach": [1, 2, 3],
                     "params": {"item": "${item}"}, "depends_on": ["wait"]},
                    {"name": "done", "module": "echo", "depends_on": ["say", "each"]}]}
    with dash_api.client("author") as client:
        assert client.post("/api/v1/workflows", json=workflow).status_code == 201
    page = page_for("operator")
    page.goto(f"/#/workflows/{name}")
    form = page.locator("#run-form")
    expect(form.locator("#var-times")).to_have_value("2")
    form.locator("#var-greeting").fill("bonjour")
    page.evaluate("window.notReloaded = true")
    form.locator("#start-run").click()
    page.wait_for_url("**/#/runs/*")
    run_id = page.url.rsplit("/", 1)[1]
    nodes = page.locator("#dag [data-step]")
    expect(nodes).to_have_count(4)
    for step in ("wait", "say", "each", "done"):
        expect(page.locator(f'#dag [data-step="{step}"]')).to_have_attribute(
            "data-status", "succeeded")
    expect(page.locator("#run-status .badge")).to_have_text("succeeded")
    expect(page.locator('#dag [data-step="each"] text').nth(1)).to_contain_text("3/3")
    assert page.evaluate("window.notReloaded") is True  # live, without a reload
    with dash_api.client("viewer") as client:
        run = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["variables"]["greeting"] == "bonjour" and run["trigger"] == "api"
    page.click("#tab-timeline")
    expect(page.locator("#gantt .gantt-bar.succeeded").first).to_be_visible()
    assert not page.js_errors


def test_a_failed_steps_drawer_shows_its_traceback_and_output(
        dash_api: Api, page_for: PageFor) -> None:
    workflow = {"name": unique("boom"), "steps": [
        {"name": "boom", "module": "python",
         "params": {"function": "tests.dashboard.steps:explode", "args": [42]}}]}
    with dash_api.client("author") as client:
        run_id = client.post("/api/v1/runs", json={"workflow": workflow}).json()["run_id"]
        assert wait_run(client, run_id)["status"] == "failed"
    page = page_for("viewer")
    page.goto(f"/#/runs/{run_id}/steps/boom")  # a step's permalink
    drawer = page.locator("#drawer")
    expect(drawer.locator("#step-error")).to_contain_text("ValueError: bad value 42")
    expect(drawer.locator("#step-traceback")).to_contain_text(
        "Traceback (most recent call last):")
    expect(drawer.locator("#step-traceback")).to_contain_text("in _check")
    expect(drawer.locator("#step-output")).to_contain_text("about to check 42")
    expect(drawer.locator("table")).to_contain_text("w")  # the attempt's worker
    assert "@" in drawer.locator("table tbody td").nth(1).inner_text()
    expect(drawer.get_by_role("link", name="Open in Flower")).to_have_attribute(
        "href", f"http://flower.test:5555/task/{run_id}%3Aboom%3A1")
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    assert page.url.endswith(f"/#/runs/{run_id}")
    assert not page.js_errors


def test_cancel_a_running_run_then_rerun_it(dash_api: Api, page_for: PageFor) -> None:
    name = unique("long")
    workflow = {"name": name, "steps": [
        {"name": "slow", "module": "bash", "params": {"cmd": "sleep 60"}},
        {"name": "after", "module": "echo", "depends_on": ["slow"]}]}
    with dash_api.client("author") as client:
        assert client.post("/api/v1/workflows", json=workflow).status_code == 201
        run_id = client.post(f"/api/v1/workflows/{name}/runs", json={}).json()["run_id"]
    try:
        page = page_for("operator")
        page.goto(f"/#/runs/{run_id}")
        expect(page.locator('#dag [data-step="slow"]')).to_have_attribute("data-status",
                                                                         "running")
        page.click("#cancel-run")
        expect(page.locator("#run-status .badge")).to_have_text("cancelled")
        expect(page.locator('#dag [data-step="slow"]')).to_have_attribute("data-status",
                                                                         "cancelled")
        expect(page.locator('#dag [data-step="after"]')).to_have_attribute("data-status",
                                                                          "cancelled")
        page.click("#rerun-run")
        expect(page.locator("#run-status .badge")).to_have_text("running")
        expect(page.locator('#dag [data-step="slow"]')).to_have_attribute("data-status",
                                                                         "running")
        with dash_api.client("viewer") as client:
            assert client.get(f"/api/v1/runs/{run_id}").json()["reruns"] == 1
        assert not page.js_errors
    finally:
        with dash_api.client("operator") as client:
            client.post(f"/api/v1/runs/{run_id}/cancel")


def test_a_viewer_sees_no_buttons_and_a_forged_action_is_refused(
        dash_api: Api, page_for: PageFor) -> None:
    name = unique("readonly")
    with dash_api.client("author") as client:
        assert client.post("/api/v1/workflows", json={
            "name": name, "variables": {"x": 1},
            "steps": [{"name": "a", "module": "python", "params": {
                "function": "tests.dashboard.steps:explode", "args": [1]}}]}).status_code == 201
        run_id = client.post(f"/api/v1/workflows/{name}/runs", json={}).json()["run_id"]
        assert wait_run(client, run_id)["status"] == "failed"
        schedule = client.post("/api/v1/schedules", json={"workflow": name,
                                                          "interval_seconds": 3600,
                                                          "enabled": False})
        assert schedule.status_code == 201, schedule.text
    page = page_for("viewer")
    page.goto(f"/#/runs/{run_id}")
    expect(page.locator("#run-status .badge")).to_have_text("failed")
    expect(page.locator("#run-actions button")).to_have_count(0)
    page.goto(f"/#/workflows/{name}")
    expect(page.locator("#workflow-text")).to_contain_text(name)
    assert page.locator("#run-form").count() == 0
    assert page.locator("#workflow-actions").count() == 0
    assert page.locator("[data-restore]").count() == 0
    page.goto("/#/schedules")
    expect(page.locator(f'[data-schedule="{schedule.json()["id"]}"]')).to_be_visible()
    assert page.locator("[data-pause], [data-trigger]").count() == 0
    expect(page.locator("[data-nav=admin]")).to_be_hidden()
    # Forged from the page itself, with the session's CSRF token: the role decides.
    forged = page.evaluate("""async (runId) => {
        const s = await (await fetch('/ui/session')).json();
        const r = await fetch(`/api/v1/runs/${runId}/rerun`,
                              {method: 'POST', headers: {'X-CSRF-Token': s.csrf}});
        return [r.status, (await r.json()).detail];
    }""", run_id)
    assert forged[0] == 403 and "operator role" in forged[1]
    assert not page.js_errors


def test_a_2000_step_run_page_renders(dash_api: Api, page_for: PageFor) -> None:
    steps: list[dict[str, Any]] = [{"name": "gate", "module": "bash",
                                    "params": {"cmd": "sleep 60"}}]
    steps += [{"name": f"s{i:04d}", "module": "echo", "depends_on": ["gate"]}
              for i in range(1999)]
    with dash_api.client("author") as client:
        # Recording 2,000 steps takes a while on a loaded machine.
        made = client.post("/api/v1/runs", json={"workflow": {"name": unique("big"),
                                                              "steps": steps}}, timeout=180)
        assert made.status_code == 201, made.text
        run_id = made.json()["run_id"]
    try:
        page = page_for("viewer")
        page.goto(f"/#/runs/{run_id}")
        dag = page.locator("#dag")
        expect(dag).to_have_attribute("data-layout", "collapsed")
        expect(dag.locator("[data-step]")).to_have_count(2000)
        expect(dag.locator('[data-step="gate"]')).to_have_attribute("data-status", "running")
        dag.locator('[data-step="s1234"]').click()
        expect(page.locator("#drawer #drawer-title")).to_have_text("s1234")
        expect(page.locator("#drawer #step-status")).to_contain_text("pending")
        assert not page.js_errors
    finally:
        with dash_api.client("operator") as client:
            client.post(f"/api/v1/runs/{run_id}/cancel")


def test_restore_a_version_from_its_side_by_side_diff(dash_api: Api,
                                                     page_for: PageFor) -> None:
    name = unique("versions")
    v1 = f"# the first version\nname: {name}\nsteps:\n  - {{name: a, module: echo}}\n"
    v2 = (f"# the second version\nname: {name}\nsteps:\n  - {{name: a, module: echo}}\n"
          "  - {name: b, module: echo, depends_on: [a]}\n")
    yaml = {"Content-Type": "application/yaml"}
    with dash_api.client("author") as client:
        assert client.post("/api/v1/workflows", content=v1, headers=yaml).status_code == 201
        assert client.put(f"/api/v1/workflows/{name}", content=v2,
                          headers=yaml).status_code == 200
    page = page_for("author")
    page.goto(f"/#/workflows/{name}")
    expect(page.locator("#workflow-text")).to_have_text(v2)
    diff = page.locator("#diff .diff")
    expect(diff.locator(".del")).to_contain_text(["# the first version"])
    expect(diff.locator(".add").first).to_contain_text("# the second version")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click('[data-restore="1"]')
    expect(page.locator("#toast")).to_contain_text("restored as version 3")
    expect(page.locator("#workflow-text")).to_have_text(v1)
    with dash_api.client("viewer") as client:
        v3 = client.get(f"/api/v1/workflows/{name}/versions/3").json()
    assert v3["text"] == v1 and v3["format"] == "yaml"
    assert not page.js_errors


def test_schedules_workers_and_admin_pages(dash_api: Api, page_for: PageFor) -> None:
    name = unique("scheduled")
    with dash_api.client("author") as client:
        assert client.post("/api/v1/workflows", json={
            "name": name, "steps": [{"name": "a", "module": "echo"}]}).status_code == 201
        schedule = client.post("/api/v1/schedules", json={
            "workflow": name, "cron": "0 6 * * *"}).json()
    page = page_for("admin")
    page.goto("/#/schedules")
    row = page.locator(f'[data-schedule="{schedule["id"]}"]')
    expect(row).to_contain_text("cron 0 6 * * *")
    row.locator("[data-pause]").click()
    expect(row).to_contain_text("paused")
    row.locator("[data-trigger]").click()
    page.wait_for_url("**/#/runs/*")
    expect(page.locator("#run-status .badge")).to_have_text("succeeded")
    expect(page.locator("dl")).to_contain_text(f"manual-schedule:{schedule['id']}")
    page.goto("/#/workers")
    expect(page.locator("#workers")).to_contain_text("w1@")
    expect(page.locator("#queues")).to_contain_text("chordflow")
    page.goto("/#/admin")
    key_name = unique("robot")
    page.fill("#create-key input[name=name]", key_name)
    page.select_option("#create-key select[name=role]", "operator")
    page.click("#create-key button[type=submit]")
    created = page.locator("#new-key .key-once").inner_text()
    assert created.startswith("cf_")
    with httpx.Client(base_url=dash_api.url, timeout=30,
                      headers={"Authorization": f"Bearer {created}"}) as robot:
        assert robot.get("/api/v1/runs", params={"limit": 1}).status_code == 200
    expect(page.locator("#keys")).to_contain_text(key_name)
    assert created not in page.locator("#keys").inner_text()  # shown once, not listed
    expect(page.locator("#audit")).to_contain_text("schedule.pause")
    # Links are real links: focused, Enter opens the run (no mouse needed).
    page.goto("/#/runs")
    first = page.locator("#runs-list tbody a").first
    first.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/#/runs/*")
    assert not page.js_errors
