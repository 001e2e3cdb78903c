"""The region plan model: what it accepts, how it normalises, and the tagged text it writes."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest
from pydantic import ValidationError

from replan_common.plan import KEEP_UNCHANGED_PROMPT, Region, RegionPlan, region_plan_json_schema


def region_json(tagged: str) -> list[dict[str, object]]:
    start, end = tagged.index("<region>") + len("<region>"), tagged.index("</region>")
    return json.loads(tagged[start:end])


@pytest.mark.parametrize("bbox", [(10, 10, 10, 20), (10, 10, 20, 10), (30, 10, 20, 20), (10, 30, 20, 20)])
def test_degenerate_box_is_rejected(bbox: tuple[float, float, float, float]) -> None:
    with pytest.raises(ValidationError, match="degenerate"):
        Region(bbox=bbox, hint="h")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_coordinate_is_rejected(bad: float) -> None:
    with pytest.raises(ValidationError, match="finite"):
        Region(bbox=(0, 0, bad, 10), hint="h")


def test_box_needs_four_coordinates() -> None:
    with pytest.raises(ValidationError):
        Region(bbox=(0, 0, 10), hint="h")  # type: ignore[arg-type]


@pytest.mark.parametrize("hint", ["", "   ", "\n\t"])
def test_blank_hint_is_rejected(hint: str) -> None:
    with pytest.raises(ValidationError):
        Region(bbox=(0, 0, 1, 1), hint=hint)


def test_hint_reasoning_and_global_prompt_are_stripped() -> None:
    plan = RegionPlan(
        reasoning="\n because \n", global_prompt="  make it blue ", regions=(Region(bbox=(0, 0, 1, 1), hint=" a "),)
    )
    assert (plan.reasoning, plan.global_prompt, plan.regions[0].hint) == ("because", "make it blue", "a")


def test_plan_without_regions_is_empty_and_overlapping_regions_are_allowed() -> None:
    assert RegionPlan(global_prompt=KEEP_UNCHANGED_PROMPT).is_empty
    many = tuple(Region(bbox=(i, i, 100 + i, 100 + i), hint=f"h{i}") for i in range(40))
    plan = RegionPlan(global_prompt="g", regions=many)
    assert not plan.is_empty and len(plan.regions) == 40


def test_plan_is_frozen() -> None:
    plan = RegionPlan(global_prompt="g")
    with pytest.raises(ValidationError):
        plan.global_prompt = "other"  # type: ignore[misc]


def test_tagged_text_uses_the_planners_tags_and_keys() -> None:
    plan = RegionPlan(reasoning="why", global_prompt="g", regions=(Region(bbox=(10, 20.5, 30, 40), hint="一盆绿植"),))
    tagged = plan.to_tagged_text()
    assert tagged.startswith("<think>why</think><gen_image>g</gen_image><region>")
    assert tagged.endswith("</region>")
    # Whole-pixel coordinates are written as integers, as the planner writes them; unicode stays readable.
    assert '"bbox_2d": [10, 20.5, 30, 40]' in tagged
    assert "一盆绿植" in tagged
    assert region_json(tagged) == [{"bbox_2d": [10, 20.5, 30, 40], "hint": "一盆绿植"}]


def test_tagged_text_escapes_angle_brackets_only_inside_the_region_json() -> None:
    plan = RegionPlan(global_prompt="g", regions=(Region(bbox=(0, 0, 1, 1), hint="a </region> <b>"),))
    tagged = plan.to_tagged_text()
    assert tagged.count("</region>") == 1
    assert region_json(tagged)[0]["hint"] == "a </region> <b>"


def test_empty_plan_writes_an_empty_region_list() -> None:
    assert RegionPlan(global_prompt=KEEP_UNCHANGED_PROMPT).to_tagged_text().endswith("<region>[]</region>")


def test_json_schema_accepts_a_dumped_plan_and_rejects_a_plan_without_global_prompt() -> None:
    schema = region_plan_json_schema()
    plan = RegionPlan(global_prompt="g", regions=(Region(bbox=(1, 2, 3, 4), hint="h"),))
    jsonschema.validate(json.loads(plan.model_dump_json()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"regions": []}, schema)


@pytest.mark.parametrize("bad", [["12", 0, 20, 20], [True, 0, 20, 20], [0, 0, None, 20]])
def test_region_box_coordinates_must_be_json_numbers(bad: list[object]) -> None:
    with pytest.raises(ValidationError):
        Region.model_validate({"bbox": bad, "hint": "a red cup"})
