"""The web editor's errors and its API-key path, against a second gateway in front of the same tiny stack.

That gateway requires a key (so the page must send `Authorization` on every call, and follows job events
with fetch instead of EventSource, which cannot send headers), runs jobs inline, and points at an editor
port where nothing listens, so a job fails upstream. Errors must read as sentences with the API's code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from replan_gateway.settings import hash_api_key
from tests.browser.conftest import BrowserPage, Stack
from tests.browser.editor_page import EditorPage
from tests.support.processes import RunningProcess, free_port, replan_command, start_process

pytestmark = pytest.mark.browser

API_KEY = "browser-test-key-7f3a"


@pytest.fixture(scope="module")
def keyed_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    root: Path = tmp_path_factory.mktemp("keyed-gateway")
    planner_url = stack.info()["pools"]["planner"][0]["url"]
    port = free_port()
    process = start_process(
        "keyed-gateway",
        replan_command("serve", "gateway", "--host", "127.0.0.1", "--port", str(port)),
        log_dir=root,
        env={
            "REPLAN_GATEWAY_PLANNER_URLS": json.dumps([planner_url]),
            "REPLAN_GATEWAY_EDITOR_URLS": json.dumps([f"http://127.0.0.1:{free_port()}"]),  # nobody there
            "REPLAN_GATEWAY_AUTH__KEYS": json.dumps([{"name": "browser", "sha256": hash_api_key(API_KEY)}]),
            "REPLAN_GATEWAY_AUTH_DISABLED": "false",
            "REPLAN_AUTH_DISABLED": "false",
            "REPLAN_GATEWAY_JOBS_EXECUTOR": "inline",
            "REPLAN_JOBS_STORE_URL": f"sqlite:///{root / 'jobs.sqlite'}",
            "REPLAN_GATEWAY_LOG_JSON": "false",
        },
        url=f"http://127.0.0.1:{port}",
        ready_path="/healthz",  # never ready (no editor); alive is enough
        timeout_s=90,
    )
    try:
        yield process
    finally:
        process.stop()


def test_key_errors_and_failed_jobs_read_as_sentences_with_the_api_code(
    keyed_gateway: RunningProcess, open_page
) -> None:
    assert keyed_gateway.url
    bp: BrowserPage = open_page(f"{keyed_gateway.url}/")
    page, editor = bp.page, EditorPage(bp.page)

    # No key: the page asks for one. A wrong key: the API's 401, said as a sentence with its code.
    expect(page.locator("#auth-form")).to_be_visible()
    expect(page.locator("#stack-status")).to_have_text("API key needed")
    page.fill("#api-key", "not-the-key")
    page.click("#auth-form button[type=submit]")
    expect(page.locator("#auth-error")).to_have_text(
        re.compile(r"^Invalid API key\. \(error code: invalid_api_key; request \S+\)$")
    )

    # The right key: info loads (no editor answers, so every backbone is offered with the demo's defaults).
    page.fill("#api-key", API_KEY)
    page.click("#auth-form button[type=submit]")
    expect(page.locator("#auth-form")).to_be_hidden()
    expect(page.locator("#stack-status")).to_contain_text("no editor has answered yet; 0 editors ready")
    expect(page.locator("#backbone option")).to_have_count(2)
    editor.open_advanced()
    page.select_option("#backbone", "qwen-image-edit")
    expect(page.locator("#steps")).to_have_value("50")
    expect(page.locator("#switch-ratio")).to_have_value("0.5")
    expect(page.locator("#expand")).to_have_value("0.05")
    page.select_option("#backbone", "flux-kontext")

    # Client-side checks are sentences too, and put the focus where the fix goes.
    page.click("#run-button")
    expect(page.locator("#run-error")).to_have_text("Pick an image first.")
    editor.pick_example("Desk")
    page.click("#add-box")
    page.click("#run-button")
    expect(page.locator("#run-error")).to_have_text(
        "Region 1 has no hint; say what each region should look like after the edit."
    )
    expect(editor.hint(0)).to_be_focused()
    editor.hint(0).fill("a small potted plant")
    page.fill("#steps", "0")
    page.click("#run-button")
    expect(page.locator("#run-error")).to_have_text(re.compile(r"^Total steps must be a whole number at least 1"))
    expect(page.locator("#steps")).to_be_focused()
    page.fill("#steps", "4")

    # The planner answers through this gateway with the key.
    editor.ai_plan()

    # A job whose editor is unreachable fails; its error comes from the job, with the API's code.
    page.click("#add-box")
    editor.hint(len(editor.region_boxes()) - 1).fill("a green plant")
    page.click("#run-button")
    expect(page.locator("#progress-text")).to_have_text("Failed.")
    expect(page.locator("#run-error")).to_have_text(re.compile(r"^[A-Z].*\. \(error code: [a-z_]+(; [^)]*)?\)$"))
    bp.screenshot("failed-job")

    first, wrong, *keyed = bp.log.api_calls()
    assert (first.path, first.authorization) == ("/v1/info", None)
    assert (wrong.path, wrong.authorization) == ("/v1/info", "Bearer not-the-key")
    assert keyed and all(r.authorization == f"Bearer {API_KEY}" for r in keyed)
    events = [r for r in keyed if r.path.endswith("/events")]
    assert events and all(r.resource_type == "fetch" for r in events)
    assert not any(API_KEY in r.url for r in bp.log.requests), "the key must never be in a URL"
    bp.log.console = [m for m in bp.log.console if "status of 401" not in m]  # Chromium logs the 401 itself
    bp.log.assert_clean()
