"""The image door's URL fetching (allow-list, no redirects, size cap) and `replan up`'s option checks."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
from pathlib import Path

import httpx
import pytest
from PIL import Image

from replan_common.errors import BadRequest, ImageTooLarge, UpstreamError
from replan_common.images import ImageLimits
from replan_gateway.image_input import ImageInput
from replan_gateway.local_stack import StackError, StackOptions, child_env, is_loopback, plan_children
from replan_gateway.settings import FetchSettings, hash_api_key


def _png(width: int = 20, height: int = 10) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def _door(handler, **fetch: object) -> ImageInput:  # type: ignore[no-untyped-def]
    settings = FetchSettings(**{"allow_hosts": ["images.example.com", "*.cdn.example.org"], **fetch})
    return ImageInput(
        ImageLimits(max_bytes=50_000, max_pixels=10_000), settings, transport=httpx.MockTransport(handler)
    )


def test_allow_listed_urls_are_fetched_and_checked() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=_png())

    door = _door(handler)
    out = asyncio.run(door.resolve("https://images.example.com/cat.png"))
    assert base64.b64decode(out) == _png()
    asyncio.run(door.resolve("https://a.cdn.example.org/x.png"))
    assert seen == ["https://images.example.com/cat.png", "https://a.cdn.example.org/x.png"]


def test_other_hosts_plain_http_and_redirects_are_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/"})

    door = _door(handler)
    for url in ("https://evil.example.net/x.png", "http://images.example.com/x.png"):
        with pytest.raises(BadRequest) as refused:
            asyncio.run(door.resolve(url))
        assert refused.value.code == "image_url_not_allowed"
    with pytest.raises(UpstreamError) as redirected:
        asyncio.run(door.resolve("https://images.example.com/x.png"))
    assert redirected.value.code == "image_fetch_failed"


def test_fetched_images_obey_the_byte_and_pixel_limits() -> None:
    door = _door(lambda request: httpx.Response(200, content=b"x" * 60_000))
    with pytest.raises(ImageTooLarge):
        asyncio.run(door.resolve("https://images.example.com/huge"))
    door = _door(lambda request: httpx.Response(200, content=_png(200, 100)))
    with pytest.raises(ImageTooLarge) as pixels:
        asyncio.run(door.resolve("https://images.example.com/wide.png"))
    assert pixels.value.code == "too_many_pixels"


def test_up_needs_a_key_beyond_loopback_and_hands_children_only_its_hash(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    with pytest.raises(StackError, match="--api-key"):
        StackOptions.build(preset="tiny", host="0.0.0.0", port=0, state_dir=tmp_path, api_key=None, jobs="celery")
    options = StackOptions.build(
        preset="tiny", host="0.0.0.0", port=0, state_dir=tmp_path, api_key="sk-secret-up", jobs="celery"
    )
    env = child_env(options, planner_url="http://127.0.0.1:1", editor_url="http://127.0.0.1:2")
    assert "sk-secret-up" not in json.dumps(env)
    assert json.loads(env["REPLAN_GATEWAY_AUTH__KEYS"]) == [{"name": "up", "sha256": hash_api_key("sk-secret-up")}]
    assert "REPLAN_AUTH_DISABLED" not in env
    assert env["REPLAN_JOBS_STORE_URL"] == f"sqlite:///{tmp_path.resolve() / 'jobs.sqlite'}"
    assert env["REPLAN_WORKER_BROKER_URL"].startswith("sqla+sqlite:///")
    local = StackOptions.build(preset="tiny", host="127.0.0.1", port=0, state_dir=tmp_path, api_key=None, jobs="inline")
    assert child_env(local, planner_url="http://p", editor_url="http://e")["REPLAN_AUTH_DISABLED"] == "1"
    assert [c.name for c in plan_children(local)] == ["planner", "editor", "gateway"]
    assert [c.name for c in plan_children(options)] == ["planner", "editor", "worker", "gateway"]


def test_up_refuses_a_busy_port_and_unknown_options(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StackError, match="in use"):
            StackOptions.build(
                preset="tiny", host="127.0.0.1", port=port, state_dir=tmp_path, api_key=None, jobs="celery"
            )
    with pytest.raises(StackError, match="preset"):
        StackOptions.build(preset="huge", host="127.0.0.1", port=0, state_dir=tmp_path, api_key=None, jobs="celery")
