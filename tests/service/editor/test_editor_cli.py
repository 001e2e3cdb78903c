"""`replan edit` as users run it (a subprocess): in-process with the tiny preset, interactively, and against
a running editor with `--url`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from editor_support import IMAGE_SIZE
from PIL import Image

from replan_common.geometry import Size
from replan_editor.visualize import BOX_COLORS, box_line_width
from tests.support.processes import replan_command

PLANNER_TEXT = (
    "<think>two things to change</think><gen_image>keep remaining part of image unchanged.</gen_image>"
    '<region>[{"bbox_2d": [4, 6, 30, 28], "hint": "a potted plant"},'
    ' {"bbox_2d": [34, 10, 60, 40], "hint": "a blue mug"}]</region>'
)
FILES = {"final_result.png", "plan.json", "visualization.png", "config.json"}


def run_cli(*args: str, stdin: str = "", cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        replan_command(*args), input=stdin, capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def make_inputs(tmp_path: Path) -> tuple[Path, Path]:
    image = tmp_path / "input.png"
    Image.new("RGB", IMAGE_SIZE, (128, 128, 128)).save(image)
    plan = tmp_path / "plan.txt"
    plan.write_text(PLANNER_TEXT, encoding="utf-8")
    return image, plan


def test_replan_edit_tiny_writes_the_four_files_and_draws_the_boxes(tmp_path: Path) -> None:
    image, plan = make_inputs(tmp_path)
    out = tmp_path / "out"
    result = run_cli(
        "edit", "--preset", "tiny", "--image", str(image), "--instruction", "swap the cup", "--plan", str(plan),
        "--steps", "2", "--seed", "5", "--output-dir", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} == FILES
    assert Image.open(out / "final_result.png").size == IMAGE_SIZE
    assert "denoising" in result.stderr and "2/2" in result.stderr  # the rich progress bar

    saved_plan = json.loads((out / "plan.json").read_text())
    assert [r["hint"] for r in saved_plan["regions"]] == ["a potted plant", "a blue mug"]
    config = json.loads((out / "config.json").read_text())
    assert config["backbone"] == "flux-kontext" and config["preset"] == "tiny" and config["plan_source"] == "file"
    assert config["settings"]["steps"] == 2 and config["settings"]["seed"] == 5
    assert config["settings"]["guidance_scale"] == 2.5  # resolved, not null

    visual = Image.open(out / "visualization.png").convert("RGB")
    assert visual.size == IMAGE_SIZE
    width = box_line_width(Size(*IMAGE_SIZE))
    for index, region in enumerate(saved_plan["regions"]):
        x1, y1, x2, y2 = (round(v) for v in region["bbox"])
        mid_y = (y1 + y2) // 2
        assert visual.getpixel((x1, mid_y)) == BOX_COLORS[index]  # left edge
        assert visual.getpixel((x2 - 1, mid_y)) == BOX_COLORS[index]  # right edge
        assert visual.getpixel(((x1 + x2) // 2, y2 - 1)) == BOX_COLORS[index]  # bottom edge
        assert visual.getpixel((x1 + width + 1, y2 - width - 1)) == (128, 128, 128)  # inside, untouched


def test_interactive_session_loads_editor_and_planner_once_and_edits_many_times(tmp_path: Path) -> None:
    image, _ = make_inputs(tmp_path)
    out = tmp_path / "session"
    stdin = f"{image}\nmake it night\n\nmake it snow\n\n\n"  # Enter keeps the last image; then EOF
    result = run_cli(
        "edit", "--preset", "tiny", "--steps", "2", "--output-dir", str(out), stdin=stdin, cwd=tmp_path
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["edit_001", "edit_002"]
    for folder, instruction in zip(sorted(out.iterdir()), ["make it night", "make it snow"], strict=True):
        assert {p.name for p in folder.iterdir()} == FILES
        config = json.loads((folder / "config.json").read_text())
        assert config["instruction"] == instruction and config["image"] == str(image)
        assert config["plan_source"] == "planner" and config["planner_model"] == "tiny"
    assert "2 edit(s) done" in result.stderr
    assert result.stderr.count("random-weight Qwen2.5-VL") == 1  # the planner loaded once


def test_replan_edit_against_a_running_editor(tmp_path: Path, flux_url: str) -> None:
    image, plan = make_inputs(tmp_path)
    out = tmp_path / "remote"
    result = run_cli(
        "edit", "--url", flux_url, "--image", str(image), "--instruction", "swap", "--plan", str(plan),
        "--steps", "2", "--output-dir", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} == FILES
    config = json.loads((out / "config.json").read_text())
    assert config["mode"] == "remote" and config["url"] == flux_url
    assert config["settings"]["backbone"] == "flux-kontext"
    assert "2/2" in result.stderr


def test_replan_edit_only_save_image_against_a_running_editor(tmp_path: Path, flux_url: str) -> None:
    image, _ = make_inputs(tmp_path)
    out = tmp_path / "only"
    result = run_cli(
        "edit", "--url", flux_url, "--image", str(image), "--instruction", "make it night", "--no-regions",
        "--only-save-image", "--steps", "2", "--output-dir", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [p.name for p in out.iterdir()] == ["final_result.png"]


def test_replan_edit_reports_server_errors_with_their_code(tmp_path: Path, flux_url: str) -> None:
    image, _ = make_inputs(tmp_path)
    bad_plan = tmp_path / "bad.json"
    bad_plan.write_text(json.dumps({"global_prompt": "g", "regions": [{"bbox": [500, 500, 600, 600], "hint": "h"}]}))
    result = run_cli(
        "edit", "--url", flux_url, "--image", str(image), "--instruction", "x", "--plan", str(bad_plan),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "error: bbox_outside_image" in result.stderr and "regions[0].bbox" in result.stderr
    no_plan = run_cli("edit", "--url", flux_url, "--image", str(image), "--instruction", "x", cwd=tmp_path)
    assert no_plan.returncode == 2
    assert "plan_required" in no_plan.stderr and "no /v1/replan" in no_plan.stderr
