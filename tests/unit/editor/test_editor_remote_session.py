"""`replan edit --url` reading the gateway's `/v1/replan` answer, built with the gateway's own response model
(so a change of that contract fails here) and served through an httpx transport."""

from __future__ import annotations

import json

import httpx
import pytest
from PIL import Image

from replan_common.images import encode_png_b64
from replan_common.plan import Region, RegionPlan
from replan_common.protocol import EditResponse, EditSettings, PlanResponse
from replan_editor.sessions import NoPlanner, RemoteSession
from replan_gateway.protocol import ReplanResponse

PLAN = RegionPlan(global_prompt="keep", regions=(Region(bbox=(1, 2, 10, 12), hint="a plant"),))


def gateway(request: httpx.Request) -> httpx.Response:
    assert request.url.path == "/v1/replan"
    body = json.loads(request.content)
    assert body["instruction"] == "swap the cup" and body["settings"]["steps"] == 3
    edited = Image.new("RGB", (24, 16), (1, 2, 3))
    edit = EditResponse(
        image=encode_png_b64(edited), width=24, height=16, plan=PLAN, settings=EditSettings(steps=3, seed=0)
    )
    plan = PlanResponse(plan=PLAN, raw_text="<think>…</think>", model="tiny")
    answer = ReplanResponse.from_parts(plan, edit, {"plan_ms": 1.0, "edit_ms": 2.0})
    return httpx.Response(200, json=answer.model_dump(mode="json"))


def test_remote_session_without_a_plan_calls_the_gateways_replan() -> None:
    session = RemoteSession("http://gateway", transport=httpx.MockTransport(gateway))
    result = session.edit(
        Image.new("RGB", (24, 16)), instruction="swap the cup", plan=None, settings=EditSettings(steps=3)
    )
    session.close()
    assert result.plan == PLAN
    assert result.image.size == (24, 16) and result.image.getpixel((0, 0)) == (1, 2, 3)
    assert result.settings.steps == 3 and result.timings_ms == {"plan_ms": 1.0, "edit_ms": 2.0}


def test_remote_session_says_when_the_url_cannot_plan() -> None:
    not_found = httpx.MockTransport(lambda _: httpx.Response(404, json={"detail": "Not Found"}))
    session = RemoteSession("http://editor", transport=not_found)
    with pytest.raises(NoPlanner) as caught:
        session.edit(Image.new("RGB", (8, 8)), instruction="x", plan=None, settings=EditSettings())
    assert caught.value.code == "plan_required" and "--plan" in caught.value.message
