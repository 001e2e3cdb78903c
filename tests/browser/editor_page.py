"""What the browser tests do on the web editor, by name: a small page object over Playwright.

Reads state the way a user sees it (the region list's coordinates, the matrix cells' marks, the progress
text), so the tests check the page, not its internals. Box geometry is in original-image pixels, as shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from playwright.sync_api import Locator, Page, expect

_COORDS = re.compile(r"\[(-?\d+), (-?\d+), (-?\d+), (-?\d+)\]")


@dataclass
class EditorPage:
    page: Page

    # --------------------------------------------------------------------------------------- image

    def wait_for_gateway(self) -> None:
        expect(self.page.locator("#stack-status")).to_contain_text("editor ready")

    def upload(self, path: str) -> None:
        self.page.set_input_files("#file-input", path)
        expect(self.page.locator("#stage-frame")).to_be_visible()

    def pick_example(self, title: str) -> None:
        self.page.get_by_role("button", name=re.compile(f"^Example: {title}")).click()
        expect(self.page.locator("#stage-frame")).to_be_visible()

    def image_scale(self) -> float:
        """Screen pixels per image pixel."""
        natural = self.page.eval_on_selector("#source-image", "img => img.naturalWidth")
        box = self.page.locator("#overlay").bounding_box()
        assert box is not None
        return float(box["width"]) / float(natural)

    def image_point(self, x: float, y: float) -> tuple[float, float]:
        """Screen position of image pixel (x, y)."""
        box = self.page.locator("#overlay").bounding_box()
        assert box is not None
        scale = self.image_scale()
        return box["x"] + x * scale, box["y"] + y * scale

    # ---------------------------------------------------------------------------------------- plan

    def open_advanced(self) -> None:
        if not self.page.locator("#advanced").evaluate("d => d.open"):
            self.page.click("#advanced summary")

    def ai_plan(self) -> dict[str, Any]:
        """Press AI Plan; returns the PlanResponse the page got."""
        with self.page.expect_response(lambda r: r.url.endswith("/v1/plan")) as response:
            self.page.click("#plan-button")
        expect(self.page.locator("#plan-status")).to_contain_text("Plan ready")
        body: dict[str, Any] = response.value.json()
        return body

    def ai_plan_until_a_box(self, seeds: range = range(1, 16)) -> dict[str, Any]:
        """AI Plan with sampling and successive planner seeds until the random-weight planner proposes a box."""
        self.open_advanced()
        self.page.fill("#plan-temperature", "1")
        for seed in seeds:
            self.page.fill("#plan-seed", str(seed))
            plan = self.ai_plan()
            if plan["plan"]["regions"]:
                return plan
        raise AssertionError(f"the tiny planner proposed no usable box for seeds {seeds}")

    # --------------------------------------------------------------------------------------- boxes

    def boxes(self) -> Locator:
        return self.page.locator("#overlay g.box")

    def region_boxes(self) -> list[list[int]]:
        """Each region's box as the list shows it: [x1, y1, x2, y2] in image pixels."""
        texts = self.page.locator("#region-list .coords").all_text_contents()
        boxes = []
        for text in texts:
            match = _COORDS.search(text)
            assert match, text
            boxes.append([int(v) for v in match.groups()])
        return boxes

    def box_rect(self, index: int) -> dict[str, float]:
        rect = self.boxes().nth(index).locator("rect.box-body").bounding_box()
        assert rect is not None
        return rect

    def drag(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        mouse = self.page.mouse
        mouse.move(*start)
        mouse.down()
        mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=4)
        mouse.move(*end, steps=4)
        mouse.up()

    def move_box(self, index: int, dx: float, dy: float) -> None:
        """Drag box `index` by its middle, (dx, dy) screen pixels."""
        r = self.box_rect(index)
        centre = (r["x"] + r["width"] / 2, r["y"] + r["height"] / 2)
        self.drag(centre, (centre[0] + dx, centre[1] + dy))

    def resize_selected(self, handle: str, dx: float, dy: float) -> None:
        rect = self.page.locator(f"#overlay rect.handle-{handle}").bounding_box()
        assert rect is not None
        start = (rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2)
        self.drag(start, (start[0] + dx, start[1] + dy))

    def draw_box(self, x1: float, y1: float, x2: float, y2: float) -> None:
        """Drag on empty space from image pixel (x1, y1) to (x2, y2)."""
        self.drag(self.image_point(x1, y1), self.image_point(x2, y2))

    def hint(self, index: int) -> Locator:
        return self.page.locator(f"#hint-{index}")

    # -------------------------------------------------------------------------------------- matrix

    def cell(self, query: str, key: str) -> Locator:
        return self.page.locator(f'#matrix button[data-cell="{query}|{key}"]')

    def matrix_cells(self) -> dict[str, bool]:
        """Every cell shown, {"Q|K": allowed}."""
        cells = self.page.locator("#matrix button.cell")
        keys = cells.evaluate_all("cells => cells.map(c => [c.dataset.cell, c.getAttribute('aria-pressed')])")
        return {key: pressed == "true" for key, pressed in keys}

    # ----------------------------------------------------------------------------------------- run

    def record_progress(self) -> None:
        """Start keeping every text the progress line shows (the SSE events arrive faster than polling)."""
        self.page.evaluate(
            """() => {
                window.__progress = [];
                const target = document.getElementById("progress-text");
                new MutationObserver((records) => {
                    for (const r of records) for (const n of r.addedNodes) window.__progress.push(n.textContent);
                }).observe(target, { childList: true });
            }"""
        )

    def progress_seen(self) -> list[str]:
        seen: list[str] = self.page.evaluate("() => window.__progress")
        return seen

    def run_and_wait(self, *, timeout_ms: float = 120_000) -> None:
        self.page.click("#run-button")
        expect(self.page.locator("#progress-text")).to_have_text("Done (100%)", timeout=timeout_ms)
