"""The dashboard under test: a real ``chordflow api`` on the session's Celery stack
(Redis, the MongoDB-protocol server, two real workers), one key per role, and Debian's
Chromium, headless, driven by Playwright (``executable_path``: no browser download).

Where Chromium or Playwright is missing the browser tests skip, naming what to install;
the HTTP tests of the session cookie need neither.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import ROLES, Api, make_key, start_api
from tests.servers import stop_group

#: Where Debian's chromium package puts the browser.
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
#: Seconds a page may take to show what a test waits for (a run of real steps included).
UI_TIMEOUT_MS = 30_000


def chromium_path() -> str | None:
    found = os.environ.get("CHORDFLOW_CHROMIUM") or shutil.which("chromium")
    return found or next((p for p in CHROMIUM_PATHS if Path(p).exists()), None)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_run(client: httpx.Client, run_id: str, statuses: tuple[str, ...] = (
        "succeeded", "failed", "cancelled"), timeout: float = 60) -> dict[str, Any]:
    """The run once its status is one of ``statuses`` (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in statuses:
            return run  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"run {run_id} is still {run['status']}"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def dash_api(celery_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The API with the dashboard, a key per role, and Flower's URL configured (for the
    step drawer's link)."""
    base = tmp_path_factory.mktemp("dashboard")
    env = {**celery_stack.env(), "CHORDFLOW_FLOWER_URL": "http://flower.test:5555/"}
    keys = {role: make_key(env, f"dash-{role}", role) for role in ROLES}
    log = base / "api.log"
    proc, url = start_api({**env, "CHORDFLOW_AUTH_FAILURES_PER_MINUTE": "10000"}, log)
    try:
        yield Api(url, keys, env, log)
    finally:
        stop_group(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian's package, for one test file: Playwright's sync API
    keeps an event loop running in this thread while it is open, which would make
    every later test that starts one (``asyncio.run``) fail in this process."""
    path = chromium_path()
    if path is None:
        pytest.skip("Debian's chromium package is not installed (apt-get install chromium): "
                    "the dashboard's browser tests need it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install 'chordflow[test]')")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=path, headless=True,
                                              args=["--no-sandbox"], timeout=60_000)
        try:
            yield launched
        finally:
            launched.close()


PageFor = Callable[..., Any]


@pytest.fixture
def page_for(browser: Any, dash_api: Api) -> Iterator[PageFor]:
    """``page_for(role)``: a new browser page signed in with that role's key (through
    the session endpoint, as the sign-in form does), at 1280x800; closed after."""
    contexts: list[Any] = []

    def make(role: str | None, **options: Any) -> Any:
        context = browser.new_context(base_url=dash_api.url,
                                      viewport=options.pop("viewport", {"width": 1280,
                                                                        "height": 800}),
                                      **options)
        context.set_default_timeout(UI_TIMEOUT_MS)
        contexts.append(context)
        if role is not None:
            signed = context.request.post("/ui/session", data={"key": dash_api.keys[role]})
            assert signed.ok, signed.text()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors  # read by the tests: no script error on any page
        return page

    yield make
    for context in contexts:
        context.close()
