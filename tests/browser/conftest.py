"""Fixtures of the browser suite: one `replan up --preset tiny` stack for the suite, Debian's Chromium driven
headless by Playwright, and a recorder of every request and console message of a page.

The stack is real (planner, editor, Celery worker on SQLite, gateway serving the page) and stays on
loopback, exactly as users run it (the tiny preset's two-digit coordinates keep the random-weight planner's
boxes inside the image often enough that some planner seed yields a box).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, sync_playwright
from pydantic import BaseModel

from replan_common.protocol import PlanRequest
from replan_gateway.protocol import JobCreate
from tests.support.processes import RunningProcess, free_port, replan_command, start_process

REPO_ROOT = Path(__file__).resolve().parents[2]
STATIC_DIR = REPO_ROOT / "gateway" / "replan_gateway" / "static"
ARTIFACTS = REPO_ROOT / "artifacts" / "browser"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: Laptop screen (the layout must work from here up).
LAPTOP = {"width": 1366, "height": 768}


def chromium_path() -> str:
    """Debian's Chromium; Playwright's own browser downloads are never used (no downloads here)."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None:
        pytest.fail(
            "Chromium is missing: the browser tests drive Debian's Chromium. Install it with "
            "`apt-get install -y --no-install-recommends chromium` (do not run `playwright install`)."
        )
    return found


@dataclass
class Stack:
    """A running `replan up --preset tiny`."""

    url: str
    process: RunningProcess

    def info(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/v1/info", timeout=10).json()


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`replan up --preset tiny` on a free loopback port, started once for the whole browser suite."""
    root = tmp_path_factory.mktemp("stack")
    (root / "logs").mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_process(
        "replan-up",
        replan_command("up", "--preset", "tiny", "--port", str(port), "--state-dir", str(root / "state")),
        log_dir=root / "logs",
        url=url,
        ready_path="/readyz",
        timeout_s=240,
    )
    try:
        yield Stack(url=url, process=process)
    finally:
        process.stop(timeout_s=30)


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Callable[[], Browser]]:
    """The suite's one Chromium, launched on first use inside a test, so that a missing Chromium makes each
    test FAIL (with the install command), not error out in setup or skip."""
    launched: list[Browser] = []

    def get() -> Browser:
        if not launched:
            launched.append(playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS))
        return launched[0]

    yield get
    for browser in launched:
        browser.close()


# ------------------------------------------------------------------------------------- request checks

#: Every public route the page may call: (method, path pattern, body model or None).
PUBLIC_API: list[tuple[str, re.Pattern[str], type[BaseModel] | None]] = [
    ("GET", re.compile(r"/v1/info"), None),
    ("POST", re.compile(r"/v1/plan"), PlanRequest),
    ("POST", re.compile(r"/v1/jobs"), JobCreate),
    ("GET", re.compile(r"/v1/jobs/job_[0-9a-f]+"), None),
    ("DELETE", re.compile(r"/v1/jobs/job_[0-9a-f]+"), None),
    ("GET", re.compile(r"/v1/jobs/job_[0-9a-f]+/events"), None),
]


@dataclass
class Recorded:
    method: str
    url: str
    resource_type: str
    body: Any
    authorization: str | None = None

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


@dataclass
class PageLog:
    """Every request the browser context sent and every console message and uncaught error of its pages."""

    origin: str
    requests: list[Recorded] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_request(self, request: Request) -> None:
        body: Any = None
        if request.post_data is not None:
            try:
                body = json.loads(request.post_data)
            except ValueError:
                body = request.post_data
        self.requests.append(
            Recorded(request.method, request.url, request.resource_type, body, request.headers.get("authorization"))
        )

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text} ({message.location})")

    def api_calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.path.startswith("/v1/")
            and (method is None or r.method == method)
            and (path is None or re.fullmatch(path, r.path))
        ]

    def assert_clean(self) -> None:
        """Only loopback, only the page's own files and the public API with valid bodies, no console errors."""
        origin = urlsplit(self.origin)
        for r in self.requests:
            parts = urlsplit(r.url)
            if parts.scheme in ("data", "blob"):
                continue  # in-browser only: downloads and images the page already holds
            assert parts.hostname == "127.0.0.1", f"a request left 127.0.0.1: {r.method} {r.url}"
            assert (parts.scheme, parts.port) == (origin.scheme, origin.port), f"not the gateway: {r.url}"
            if r.path.startswith("/v1/"):
                self._check_api_call(r)
            else:
                assert r.method == "GET", f"{r.method} {r.url} is neither a page file nor the public API"
                file = STATIC_DIR / (r.path.lstrip("/") or "index.html")
                assert file.resolve().is_relative_to(STATIC_DIR) and file.is_file(), f"not a page file: {r.url}"
        assert not self.console, "console errors or warnings:\n" + "\n".join(self.console)
        assert not self.errors, "uncaught page errors:\n" + "\n".join(self.errors)

    @staticmethod
    def _check_api_call(r: Recorded) -> None:
        for method, pattern, model in PUBLIC_API:
            if r.method == method and pattern.fullmatch(r.path):
                if model is None:
                    assert r.body is None, f"{r.method} {r.path} sent a body"
                else:
                    assert isinstance(r.body, dict), f"{r.method} {r.path} body is not a JSON object"
                    model.model_validate(r.body)  # raises with the field at fault
                return
        raise AssertionError(f"{r.method} {r.path} is not a public API route")


@dataclass
class BrowserPage:
    page: Page
    log: PageLog
    screenshot: Callable[[str], Path]


@pytest.fixture
def open_page(browser: Callable[[], Browser], request: pytest.FixtureRequest) -> Iterator[Callable[..., BrowserPage]]:
    """`open_page(url, viewport=...)`: a fresh context and page, recorded; closed after the test."""
    contexts = []

    def _open(url: str, *, viewport: dict[str, int] = LAPTOP) -> BrowserPage:
        context = browser().new_context(viewport=viewport, accept_downloads=True)
        contexts.append(context)
        log = PageLog(origin=url)
        context.on("request", log.on_request)  # the whole context: workers too, not only the page
        page = context.new_page()
        page.on("console", log.on_console)
        page.on("pageerror", lambda error: log.errors.append(str(error)))
        page.set_default_timeout(30_000)

        def screenshot(name: str) -> Path:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            path = ARTIFACTS / f"{request.node.name}-{name}.png"
            page.screenshot(path=str(path), full_page=True)
            return path

        page.goto(url)
        return BrowserPage(page=page, log=log, screenshot=screenshot)

    yield _open
    for context in contexts:
        context.close()
