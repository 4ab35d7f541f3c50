"""The dashboard in a real browser, continued: a running step's output streaming into
its drawer, the runs search, the keyboard alone (sign in, every action of a run page,
the drawer closed by Escape), a phone's width (nothing overflows the screen but what
scrolls in its own box) and the browser's time zone."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.api.conftest import Api
from tests.dashboard.conftest import PageFor, unique, wait_run
from tests.dashboard.test_browser import expect

pytestmark = pytest.mark.slow


def test_a_running_steps_output_streams_into_its_drawer(dash_api: Api,
                                                        page_for: PageFor) -> None:
    workflow = {"name": unique("stream"), "steps": [{
        "name": "talk", "module": "bash",
        "params": {"cmd": "echo first line; sleep 6; echo second line"}}]}
    with dash_api.client("author") as client:
        run_id = client.post("/api/v1/runs", json={"workflow": workflow}).json()["run_id"]
        page = page_for("viewer")
        page.goto(f"/#/runs/{run_id}/steps/talk")
        output = page.locator("#drawer #step-output")
        expect(output).to_contain_text("first line")
        # Shown while the step still runs, before the second line exists.
        assert client.get(f"/api/v1/runs/{run_id}").json()["status"] == "running"
        assert "second line" not in output.inner_text()
        page.evaluate("document.getElementById('step-output').dataset.marker = 'kept'")
        expect(output).to_contain_text("second line")
        assert wait_run(client, run_id)["status"] == "succeeded"
    # Appended to the same element (not redrawn), each line once.
    assert output.get_attribute("data-marker") == "kept"
    assert output.inner_text().count("first line") == 1
    expect(page.locator("#drawer #step-status")).to_contain_text("succeeded")
    href = page.locator("#step-download").get_attribute("href")
    downloaded = page.context.request.get(href).text()
    assert "first line" in downloaded and "second line" in downloaded
    assert not page.js_errors


def make_search_runs(dash_api: Api) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Two runs to search for: one with a variable, one that failed with an error."""
    tag = unique("srch")
    with dash_api.client("author") as client:
        alpha = client.post("/api/v1/runs", json={
            "workflow": {"name": f"{tag}-Alpha", "variables": {"color": "none"},
                         "steps": [{"name": "a", "module": "echo"}]},
            "variables": {"color": f"teal-{tag}"}}).json()
        beta = client.post("/api/v1/runs", json={"workflow": {"name": f"{tag}-beta", "steps": [
            {"name": "b", "module": "python",
             "params": {"function": "tests.dashboard.steps:explode", "args": [7777]}}]}}).json()
        wait_run(client, alpha["run_id"])
        wait_run(client, beta["run_id"])
    return tag, alpha, beta


def test_the_runs_search_finds_id_starts_workflow_names_errors_and_variables(
        dash_api: Api) -> None:
    tag, alpha, beta = make_search_runs(dash_api)
    a, b = alpha["run_id"], beta["run_id"]

    def found(q: str) -> set[str]:
        with dash_api.client("viewer") as client:
            answer = client.get("/api/v1/runs", params={"q": q, "limit": 50})
            assert answer.status_code == 200, answer.text
            return {run["run_id"] for run in answer.json()["runs"]}

    assert found(tag) == {a, b}
    assert found(f"{tag}-ALPHA") == {a}  # a part of the name, any case
    assert found(a[:12]) == {a}  # the start of an id
    assert b not in found(b[4:16])  # not the middle of one
    assert found("bad value 7777 ") & {a, b} == {b}  # the error's text
    assert found(f"color=teal-{tag}") == {a}  # a variable's value
    assert found(".*") & {a, b} == set()  # text, never a pattern
    with dash_api.client("viewer") as client:
        counts = client.get("/api/v1/runs/counts", params={"q": tag}).json()
        assert counts["total"] == 2 and counts["counts"]["failed"] == 1
        assert client.get("/api/v1/runs", params={"q": "x" * 201}).status_code == 422


def test_the_search_box_filters_the_runs_list(dash_api: Api, page_for: PageFor) -> None:
    tag, alpha, beta = make_search_runs(dash_api)
    page = page_for("viewer")
    page.goto("/#/runs")
    page.fill("#run-search", f"{tag}-beta")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=*")
    rows = page.locator("#runs-list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run", beta["run_id"])
    expect(page.locator("#run-counts [data-status=total] b")).to_have_text("1")
    page.reload()  # the search is in the address: a link to share
    expect(page.locator("#run-search")).to_have_value(f"{tag}-beta")
    expect(rows).to_have_count(1)
    assert not page.js_errors


FOCUS_INFO = """() => {
  const el = document.activeElement;
  const rect = el.querySelector && el.querySelector('rect');
  const style = getComputedStyle(el);
  return {tag: el.tagName.toLowerCase(), id: el.id,
          text: (el.textContent || '').trim().slice(0, 40),
          step: el.dataset ? el.dataset.step || null : null,
          visible: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2
                   || (rect ? parseFloat(getComputedStyle(rect).strokeWidth) >= 4 : false)};
}"""


def test_sign_in_and_work_a_run_page_with_the_keyboard_alone(dash_api: Api,
                                                            page_for: PageFor) -> None:
    with dash_api.client("author") as client:
        run_id = client.post("/api/v1/runs", json={"workflow": {
            "name": unique("keys"), "steps": [
                {"name": "boom", "module": "python",
                 "params": {"function": "tests.dashboard.steps:explode", "args": [3]}},
                {"name": "after", "module": "echo", "depends_on": ["boom"]}]}}).json()["run_id"]
        wait_run(client, run_id)
    page = page_for(None)
    page.goto(f"/#/runs/{run_id}")  # a permalink, signed out: sign in, then the run
    expect(page.locator("#key")).to_be_focused()
    page.keyboard.type(dash_api.keys["operator"])
    page.keyboard.press("Enter")
    expect(page.locator("#run-status .badge")).to_have_text("failed")
    expect(page.locator("#view")).to_be_focused()  # the keyboard starts at the view
    page.keyboard.press("Shift+Tab")  # back into the header
    assert page.evaluate(FOCUS_INFO)["id"] == "sign-out"
    page.keyboard.press("Tab")
    seen: list[dict[str, Any]] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        focus = page.evaluate(FOCUS_INFO)
        seen.append(focus)
        assert focus["visible"], f"no visible focus on {focus}"
        if focus["step"] == "boom":
            break
    ids = {f["id"] for f in seen}
    assert {"rerun-run", "relaunch-run", "tab-graph", "tab-timeline", "tab-steps",
            "tab-details"} <= ids, seen
    # Enter opens the step's drawer, focused on its Close button; Escape closes it and
    # gives the focus back to the node.
    page.keyboard.press("Enter")
    drawer = page.locator("#drawer")
    expect(drawer.locator("#step-traceback")).to_contain_text("bad value 3")
    assert page.evaluate(FOCUS_INFO)["text"] == "Close"
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate(FOCUS_INFO)["id"] == "step-download":
            break
    else:
        pytest.fail("the drawer's download link is not reachable with Tab")
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    assert page.evaluate(FOCUS_INFO)["step"] == "boom"
    # A tab, by keyboard: the steps table, whose names are links to each drawer.
    page.focus("#tab-steps")
    page.keyboard.press("Enter")
    link = page.get_by_role("link", name="after")
    link.focus()
    page.keyboard.press("Enter")
    expect(drawer.locator("#drawer-title")).to_have_text("after")
    assert page.url.endswith(f"/#/runs/{run_id}/steps/after")  # a permalink
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    # The re-run button, by keyboard.
    page.focus("#rerun-run")
    page.keyboard.press("Enter")
    expect(page.locator("#toast")).to_contain_text("Re-run started")
    assert not page.js_errors


OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const scrolls = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) return true;
    }
    return false;
  };
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (!r.width || el.closest('.skip')) continue;
    if ((r.right > width + 1 || r.left < -1) && !scrolls(el)) {
      out.push(`${el.tagName}#${el.id}.${el.className.baseVal ?? el.className} ` +
               `${Math.round(r.left)}..${Math.round(r.right)}`);
    }
  }
  return {width, page: document.documentElement.scrollWidth, out};
}"""


def test_every_page_fits_a_phone_screen(dash_api: Api, page_for: PageFor) -> None:
    name = unique("phone-width-workflow-with-a-long-name")
    with dash_api.client("author") as client:
        assert client.post("/api/v1/workflows", json={
            "name": name, "variables": {"greeting": "hello"},
            "steps": [{"name": "a", "module": "echo"}]}).status_code == 201
        assert client.put(f"/api/v1/workflows/{name}", json={
            "name": name, "variables": {"greeting": "hello"},
            "steps": [{"name": "a", "module": "echo"},
                      {"name": "b", "module": "echo", "depends_on": ["a"]}]}).status_code == 200
        run_id = client.post(f"/api/v1/workflows/{name}/runs", json={}).json()["run_id"]
        wait_run(client, run_id)
        assert client.post("/api/v1/schedules", json={
            "workflow": name, "cron": "0 6 * * *", "enabled": False}).status_code == 201
    page = page_for("admin", viewport={"width": 375, "height": 812}, is_mobile=True,
                    has_touch=True)
    pages = {"runs": ("/#/runs", "#runs-list tbody tr"),
             "run": (f"/#/runs/{run_id}", '#dag [data-step="b"]'),
             "step": (f"/#/runs/{run_id}/steps/a", "#drawer #step-output"),
             "workflows": ("/#/workflows", "table"),
             "workflow": (f"/#/workflows/{name}", "#diff .diff"),
             "schedules": ("/#/schedules", "table"),
             "workers": ("/#/workers", "#workers table"),
             "admin": ("/#/admin", "#audit table")}
    for label, (address, ready) in pages.items():
        page.goto(address)
        expect(page.locator(ready).first).to_be_visible()
        found = page.evaluate(OVERFLOW)
        assert found["page"] <= found["width"] and not found["out"], (label, found)
    assert not page.js_errors


def test_times_are_shown_in_the_browsers_time_zone(dash_api: Api, page_for: PageFor) -> None:
    with dash_api.client("author") as client:
        run_id = client.post("/api/v1/runs", json={"workflow": {
            "name": unique("tz"), "steps": [{"name": "a", "module": "echo"}]}}).json()["run_id"]
        run = wait_run(client, run_id)
    zone = "Asia/Kathmandu"  # UTC+5:45: no other zone's clock reads the same
    page = page_for("viewer", timezone_id=zone, locale="en-GB")
    page.goto(f"/#/runs/{run_id}")
    created = datetime.fromisoformat(run["created_at"]).astimezone(ZoneInfo(zone))
    expect(page.locator("#run-created")).to_contain_text(created.strftime("%H:%M:%S"))
    assert page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") in (
        zone, "Asia/Katmandu")  # Chromium's ICU may answer with the older spelling
    assert not page.js_errors
