"""`replan parse-plan`: the whole planner-output corpus through the real CLI, its options and exit codes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from replan_common.cli.main import app

CORPUS = Path(__file__).parent / "data" / "planner_outputs"
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
ERROR_LINE = re.compile(r"^error: (?P<code>[a-z_]+): (?P<message>.+?)(?: \((?P<param>[^()]+)\))?$")

runner = CliRunner()

TWO_REGIONS = (
    "<think>Make the left apple blue.</think>\n<gen_image>keep remaining part of image unchanged.</gen_image>\n"
    '<region>[{"bbox_2d": [-6, 300, 380, 590], "hint": "a blue apple"}, '
    '{"bbox_2d": [420, 300, 700, 590], "point_2d": [560, 440], "hint": "keep this apple unchanged"}]</region>'
)


def parse_plan(*args: str, stdin: str | bytes | None = None) -> Result:
    return runner.invoke(app, ["parse-plan", *args], input=stdin)


def error_of(result: Result) -> dict[str, str | None]:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    match = ERROR_LINE.match(lines[0])
    assert match, lines[0]
    return match.groupdict()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_corpus_output_gives_its_plan_or_its_error_code(name: str) -> None:
    expected = EXPECTED[name]
    result = parse_plan(str(CORPUS / name))
    if "code" in expected:
        assert result.exit_code == 2, result.stdout
        assert result.stdout == ""
        error = error_of(result)
        assert (error["code"], error["param"]) == (expected["code"], expected["param"])
    else:
        assert result.exit_code == 0, result.stderr
        plan = json.loads(result.stdout)
        assert plan["global_prompt"] == expected["global_prompt"]
        assert plan["regions"] == expected["regions"]
        assert plan["reasoning"].startswith(expected["reasoning_prefix"])


def test_dash_and_no_argument_read_stdin() -> None:
    for args in (["-"], []):
        result = parse_plan(*args, stdin=TWO_REGIONS)
        assert result.exit_code == 0, result.stderr
        assert [r["hint"] for r in json.loads(result.stdout)["regions"]] == [
            "a blue apple",
            "keep this apple unchanged",
        ]


def test_printed_plan_parses_back_to_itself() -> None:
    first = parse_plan("-", stdin=TWO_REGIONS)
    second = parse_plan("-", stdin=first.stdout)
    assert second.exit_code == 0, second.stderr
    assert json.loads(second.stdout) == json.loads(first.stdout)


def test_image_size_clips_a_small_overhang() -> None:
    result = parse_plan("--image-size", "640", "600", "-", stdin=TWO_REGIONS)
    assert result.exit_code == 0, result.stderr
    boxes = [r["bbox"] for r in json.loads(result.stdout)["regions"]]
    assert boxes == [[0, 300, 380, 590], [420, 300, 640, 590]]


def test_image_size_rejects_a_box_outside_the_image_naming_the_region() -> None:
    result = parse_plan("--image-size", "400", "600", "-", stdin=TWO_REGIONS)
    assert result.exit_code == 2
    error = error_of(result)
    assert (error["code"], error["param"]) == ("bbox_outside_image", "regions[1].bbox")
    assert "400x600" in (error["message"] or "")


def test_without_image_size_boxes_are_left_as_written() -> None:
    result = parse_plan("-", stdin=TWO_REGIONS)
    assert json.loads(result.stdout)["regions"][0]["bbox"] == [-6, 300, 380, 590]


@pytest.mark.parametrize("size", [("0", "600"), ("640", "-1")])
def test_non_positive_image_size_is_rejected(size: tuple[str, str]) -> None:
    result = parse_plan("--image-size", *size, "-", stdin=TWO_REGIONS)
    assert result.exit_code == 2
    error = error_of(result)
    assert (error["code"], error["param"]) == ("bad_image_size", "--image-size")


def test_missing_file_is_reported_with_a_code(tmp_path: Path) -> None:
    result = parse_plan(str(tmp_path / "nope.txt"))
    assert result.exit_code == 2
    error = error_of(result)
    assert (error["code"], error["param"]) == ("unreadable_input", "source")
    assert "nope.txt" in (error["message"] or "")


def test_non_utf8_input_is_reported_with_a_code() -> None:
    result = parse_plan("-", stdin=b"<gen_image>caf\xe9</gen_image><region>[]</region>")
    assert result.exit_code == 2
    assert error_of(result)["code"] == "unreadable_input"


def test_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "plan.txt"
    path.write_bytes("\ufeff<gen_image>Make it snow.</gen_image><region>[]</region>".encode())
    result = parse_plan(str(path))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["global_prompt"] == "Make it snow."


def test_help_describes_the_command_and_its_option() -> None:
    result = runner.invoke(app, ["parse-plan", "--help"])
    assert result.exit_code == 0
    assert "--image-size" in result.stdout and "stdin" in result.stdout
    assert "parse-plan" in runner.invoke(app, ["--help"]).stdout


def replan_executable() -> str:
    beside_python = Path(sys.executable).with_name("replan")
    found = str(beside_python) if beside_python.exists() else shutil.which("replan")
    if found is None:
        pytest.fail("the `replan` console script is not installed: pip install -e . --no-deps")
    return found


def test_installed_console_script_reads_stdin_and_exits_2_on_bad_input() -> None:
    good = subprocess.run(
        [replan_executable(), "parse-plan", "-"], input=TWO_REGIONS.encode(), capture_output=True, timeout=60
    )
    assert good.returncode == 0, good.stderr.decode()
    assert len(json.loads(good.stdout)["regions"]) == 2

    bad = subprocess.run(
        [replan_executable(), "parse-plan", "-"],
        input=(CORPUS / "bad_bbox_swapped_corners.txt").read_bytes(),
        capture_output=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stdout == b""
    assert bad.stderr.decode().strip().startswith("error: degenerate_bbox: ")
    assert bad.stderr.decode().strip().endswith("(regions[1].bbox)")
