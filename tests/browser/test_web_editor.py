"""The web editor (issue 7) in headless Chromium against a real `replan up --preset tiny` stack.

Every test ends by checking the page's traffic: only loopback, only the page's own files and the public API
(`/v1/info`, `/v1/plan`, `/v1/jobs`, `/v1/jobs/{id}`, its events, `DELETE`), with bodies that the gateway's
own pydantic models accept, and no console errors. Screenshots go to `artifacts/browser/`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from replan_common.plan import RegionPlan
from replan_common.protocol import EditSettings
from replan_editor.attention.rules import locality_rules
from tests.browser.conftest import BrowserPage, Stack
from tests.browser.editor_page import EditorPage

pytestmark = pytest.mark.browser

UPLOAD_SIZE = (480, 360)


def make_upload(path: Path) -> Path:
    """A JPEG photo stand-in: a room with a lamp, not one of the bundled examples."""
    image = Image.new("RGB", UPLOAD_SIZE, (205, 215, 225))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 260, 480, 360], fill=(120, 90, 60))
    draw.rectangle([300, 120, 330, 260], fill=(60, 60, 60))
    draw.polygon([(270, 120), (360, 120), (335, 70), (295, 70)], fill=(250, 220, 120))
    image.save(path, quality=90)
    return path


def close_to(actual: list[int], expected: list[float], tolerance: float = 1.5) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def test_upload_plan_adjust_boxes_and_run_an_edit(stack: Stack, open_page, tmp_path: Path) -> None:
    bp: BrowserPage = open_page(f"{stack.url}/")
    page, editor = bp.page, EditorPage(bp.page)
    editor.wait_for_gateway()
    expect(page.locator("#tiny-warning")).to_be_visible()

    # Upload, instruction, AI Plan: the global prompt and the boxes appear, in original pixels.
    editor.upload(str(make_upload(tmp_path / "room.jpg")))
    expect(page.locator("#image-size")).to_contain_text("480×360")
    page.fill("#instruction", "replace the lamp with a potted plant")
    planned = editor.ai_plan_until_a_box()
    regions = planned["plan"]["regions"]
    expect(page.locator("#global-prompt")).to_have_value(planned["plan"]["global_prompt"])
    expect(editor.boxes()).to_have_count(len(regions))
    assert editor.region_boxes() == [[round(v) for v in r["bbox"]] for r in regions]
    expect(editor.hint(0)).to_have_value(regions[0]["hint"])
    for extra in range(len(regions) - 1, 0, -1):  # keep one planned box; the rest of the test adds its own
        page.click(f'#region-list button[aria-label="Delete region {extra + 1}"]')
    expect(editor.boxes()).to_have_count(1)
    bp.screenshot("1-planned")

    # Move box 1 by dragging its middle, then resize it by its bottom-right handle.
    scale = editor.image_scale()
    before = editor.region_boxes()[0]
    editor.move_box(0, 60, 40)
    moved = editor.region_boxes()[0]
    dx, dy = 60 / scale, 40 / scale
    assert close_to(moved, [before[0] + dx, before[1] + dy, before[2] + dx, before[3] + dy]), (before, moved)
    editor.resize_selected("se", 50, 30)
    resized = editor.region_boxes()[0]
    assert close_to(resized, [moved[0], moved[1], moved[2] + 50 / scale, moved[3] + 30 / scale]), (moved, resized)
    editor.resize_selected("nw", -20, -10)
    grown = editor.region_boxes()[0]
    assert close_to(grown, [resized[0] - 20 / scale, resized[1] - 10 / scale, resized[2], resized[3]]), grown

    # Draw a box on empty space, delete it with the Delete key; draw it again and keep it.
    editor.draw_box(300, 230, 440, 330)
    expect(editor.boxes()).to_have_count(2)
    assert close_to(editor.region_boxes()[1], [300, 230, 440, 330], tolerance=2)
    page.keyboard.press("Delete")
    expect(editor.boxes()).to_have_count(1)
    editor.draw_box(300, 230, 440, 330)
    expect(editor.boxes()).to_have_count(2)
    # "Add box" adds a third, the "Delete box" button removes the selected one.
    page.click("#add-box")
    expect(editor.boxes()).to_have_count(3)
    page.click("#delete-box")
    expect(editor.boxes()).to_have_count(2)

    # Hints: one edited, one typed for the new box.
    editor.hint(0).fill("a small potted plant")
    editor.hint(1).fill("a wooden floor")
    expect(editor.boxes().nth(0)).to_have_attribute("aria-label", re.compile("a small potted plant"))

    # Matrix: the locality rule for two regions; toggle, reset, toggle one cell for the run.
    editor.open_advanced()
    default = locality_rules(2).to_mapping()
    assert editor.matrix_cells() == default
    editor.cell("Main", "H2").click()
    expect(editor.cell("Main", "H2")).to_have_attribute("aria-pressed", "true")
    page.click("#matrix-reset")
    assert editor.matrix_cells() == default
    editor.cell("N.BG", "I.B1").click()
    expect(editor.cell("N.BG", "I.B1")).to_have_text("✗")
    expect(page.locator("#matrix-status")).to_have_text("1 cell changed from the default.")
    boxes_sent = editor.region_boxes()
    bp.screenshot("2-adjusted")

    # Run: progress from the SSE stream, step by step, to 100%; the result in the before/after slider.
    editor.record_progress()
    editor.run_and_wait()
    expect(page.locator("#progress")).to_have_attribute("value", "100")
    seen = editor.progress_seen()
    steps = [s for s in seen if s.startswith("Step ")]
    assert steps and steps[-1] == "Step 4 of 4 (100%)", seen
    assert seen[-1] == "Done (100%)"
    expect(page.locator("#result-panel")).to_be_visible()
    assert page.eval_on_selector("#compare-after", "img => [img.naturalWidth, img.naturalHeight]") == [480, 360]
    page.locator("#compare-range").focus()
    page.keyboard.press("Home")
    expect(page.locator("#compare-after")).to_have_css("clip-path", "inset(0px 0px 0px 0%)")
    page.keyboard.press("End")
    expect(page.locator("#compare-after")).to_have_css("clip-path", "inset(0px 0px 0px 100%)")
    bp.screenshot("3-result")

    # What the page sent: the plan as edited on the page, the toggled cell, the settings it showed.
    (job,) = bp.log.api_calls("POST", "/v1/jobs")
    body = job.body
    assert body["kind"] == "edit" and body["image"].startswith("data:image/jpeg;base64,")
    assert [r["bbox"] for r in body["plan"]["regions"]] == boxes_sent
    assert [r["hint"] for r in body["plan"]["regions"]] == ["a small potted plant", "a wooden floor"]
    assert body["plan"]["global_prompt"] == planned["plan"]["global_prompt"].strip()
    assert body["settings"]["custom_rules"] == {**default, "N.BG|I.B1": False}
    assert body["settings"] | {"custom_rules": None} == {
        "backbone": "flux-kontext",
        "steps": 4,  # the tiny editor's default, from /v1/info
        "seed": 0,
        "expand_value": 0.15,
        "rule_switch_ratio": 0.0,
        "custom_rules": None,
    }
    events = [r for r in bp.log.requests if r.path.endswith("/events")]
    assert events and all(r.resource_type == "eventsource" for r in events)

    # Downloads: the result PNG, the plan and the settings as applied.
    with page.expect_download() as download:
        page.click("#download-result")
    with Image.open(download.value.path()) as result:
        assert (result.format, result.size) == ("PNG", UPLOAD_SIZE)
    with page.expect_download() as download:
        page.click("#download-plan")
    plan = RegionPlan.model_validate_json(Path(download.value.path()).read_text())
    assert [list(r.bbox) for r in plan.regions] == boxes_sent
    with page.expect_download() as download:
        page.click("#download-settings")
    applied = EditSettings.model_validate_json(Path(download.value.path()).read_text())
    assert applied.custom_rules == {**default, "N.BG|I.B1": False} and applied.steps == 4

    bp.log.assert_clean()


def test_no_boxes_is_a_plain_edit_and_a_running_job_can_be_cancelled(stack: Stack, open_page) -> None:
    bp: BrowserPage = open_page(f"{stack.url}/")
    page, editor = bp.page, EditorPage(bp.page)
    editor.wait_for_gateway()
    editor.pick_example("Street")
    expect(page.locator("#instruction")).to_have_value("make the red car blue")

    # A long run, cancelled once it is stepping: DELETE /v1/jobs/{id}, then the "cancelled" event.
    editor.open_advanced()
    page.fill("#steps", "200")
    editor.record_progress()
    page.click("#run-button")
    expect(page.locator("#progress-text")).to_contain_text("Step ")
    page.click("#cancel-button")
    expect(page.locator("#progress-text")).to_have_text("Cancelled.")
    assert len(bp.log.api_calls("DELETE")) == 1
    expect(page.locator("#run-button")).to_be_enabled()

    # No plan and no boxes: the bare instruction goes to the backbone.
    page.click("#settings-reset")
    expect(page.locator("#steps")).to_have_value("4")
    editor.run_and_wait()
    body = bp.log.api_calls("POST", "/v1/jobs")[-1].body
    assert body["kind"] == "edit" and body["instruction"] == "make the red car blue" and "plan" not in body
    assert "custom_rules" not in body["settings"]
    expect(page.locator("#result-info")).to_contain_text("no regions (plain edit)")
    bp.log.assert_clean()


def test_keyboard_only_box_and_matrix_editing(stack: Stack, open_page) -> None:
    bp: BrowserPage = open_page(f"{stack.url}/")
    page, editor = bp.page, EditorPage(bp.page)
    editor.wait_for_gateway()
    keyboard = page.keyboard

    # Tab order follows the page: upload, the examples, then the instruction and AI Plan.
    page.locator("body").focus()
    order = []
    for _ in range(7):
        keyboard.press("Tab")
        order.append(page.evaluate("() => document.activeElement.id || document.activeElement.className"))
    assert order == ["file-input", "example", "example", "example", "instruction", "plan-button", "global-prompt"]

    # Pick an example with the keyboard; add a box with "Add box"; its hint gets the focus.
    page.get_by_role("button", name=re.compile("^Example: Fruit")).focus()
    keyboard.press("Enter")
    expect(page.locator("#stage-frame")).to_be_visible()
    page.locator("#add-box").focus()
    keyboard.press("Enter")
    expect(editor.hint(0)).to_be_focused()
    keyboard.type("a pear")
    start = editor.region_boxes()[0]

    # Shift+Tab from the instruction reaches the box (it sits before it in the page); arrows nudge it.
    page.locator("#instruction").focus()
    keyboard.press("Shift+Tab")
    box = editor.boxes().nth(0)
    expect(box).to_be_focused()
    expect(box.locator("rect.box-body")).to_have_css("stroke", "rgb(245, 158, 11)")  # the focus ring colour
    bp.screenshot("box-focused")
    keyboard.press("ArrowRight")
    keyboard.press("Shift+ArrowDown")
    keyboard.press("Alt+ArrowRight")
    x1, y1, x2, y2 = start
    assert editor.region_boxes()[0] == [x1 + 1, y1 + 10, x2 + 2, y2 + 10]
    keyboard.press("Delete")
    expect(editor.boxes()).to_have_count(0)
    expect(page.locator("#no-regions")).to_be_visible()

    # The matrix is one tab stop; arrows move within it and Space toggles the focused cell.
    page.locator("#add-box").focus()
    keyboard.press("Enter")
    keyboard.type("a pear")
    page.locator("#advanced summary").focus()
    keyboard.press("Enter")
    page.locator("#matrix-help").click()  # focus nothing in particular, then Tab into the grid
    keyboard.press("Tab")
    expect(editor.cell("Main", "Main")).to_be_focused()
    expect(editor.cell("Main", "Main")).to_have_css("outline-style", "solid")
    for key in ["ArrowDown"] * 4 + ["ArrowRight"] * 2:  # rows Main, H1, N.B1, I.B1, N.BG; columns Main, H1, N.B1
        keyboard.press(key)
    cell = editor.cell("N.BG", "N.B1")
    expect(cell).to_be_focused()
    expect(cell).to_have_attribute("aria-pressed", "false")  # the locality rule: noise background ↛ noise box
    keyboard.press("Space")
    expect(cell).to_have_attribute("aria-pressed", "true")
    expect(cell).to_be_focused()
    keyboard.press("Tab")
    expect(page.locator("#matrix-reset")).to_be_focused()
    keyboard.press("Enter")
    expect(cell).to_have_attribute("aria-pressed", "false")
    bp.log.assert_clean()


def test_matrix_is_the_editors_locality_rule_for_every_layout(stack: Stack, open_page) -> None:
    """The page's default matrix and the editor's `locality_rules` agree cell by cell (Flux and Qwen)."""
    bp: BrowserPage = open_page(f"{stack.url}/")
    layouts = [(0, False), (1, False), (3, False), (1, True), (2, True)]
    computed = bp.page.evaluate(
        """async (layouts) => {
            const { groupsFor, localityAllows } = await import("/js/matrix.js");
            return layouts.map(([n, imgp]) => {
                const groups = groupsFor(n, imgp);
                const cells = {};
                for (const q of groups) for (const k of groups) cells[`${q.label}|${k.label}`] = localityAllows(q, k);
                return cells;
            });
        }""",
        layouts,
    )
    for (regions, image_prompt), cells in zip(layouts, computed, strict=True):
        assert cells == locality_rules(regions, has_image_prompt=image_prompt).to_mapping(), (regions, image_prompt)
    # The demo's published matrix for one box (facts §2): these five cells are blocked, every other allowed.
    editor = EditorPage(bp.page)
    editor.wait_for_gateway()
    editor.pick_example("Desk")
    bp.page.click("#add-box")
    blocked = {key for key, allowed in editor.matrix_cells().items() if not allowed}
    assert blocked == {"Main|H1", "H1|Main", "N.BG|H1", "N.BG|N.B1", "I.BG|H1"}
    bp.log.assert_clean()


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1366, 768), (820, 1000)])
def test_layout_fits_laptop_and_narrow_screens(stack: Stack, open_page, width: int, height: int) -> None:
    bp: BrowserPage = open_page(f"{stack.url}/", viewport={"width": width, "height": height})
    page, editor = bp.page, EditorPage(bp.page)
    editor.wait_for_gateway()
    editor.pick_example("Desk")
    overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{overflow} px of horizontal scrolling at {width}×{height}"
    image = page.locator("#image-heading").bounding_box()
    controls = page.locator("#plan-heading").bounding_box()
    stage = page.locator("#overlay").bounding_box()
    assert image and controls and stage
    if width >= 1280:  # side by side, the whole image on the first screen
        assert controls["x"] > image["x"] + 400 and abs(controls["y"] - image["y"]) < 5
        assert stage["y"] + stage["height"] <= height
    else:  # stacked
        assert controls["y"] > stage["y"] + stage["height"]
    assert stage["width"] <= width
    bp.screenshot(f"{width}x{height}")
    bp.log.assert_clean()
