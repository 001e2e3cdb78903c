"""`replan serve planner` and `replan plan`, registered on the `replan` app by `replan_common.cli.main`.

Light at import on purpose (every `replan` invocation imports it): settings, uvicorn, the app and torch are
imported inside the commands. Both commands build `PlannerSettings` from `REPLAN_PLANNER_*` and let their
options override it, so `--preset tiny` and the environment compose.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from replan_common.protocol import PlanMode
from replan_planner.settings import BackendKind, Preset

if TYPE_CHECKING:
    from replan_common.protocol import PlanResponse
    from replan_planner.planner import PlanInput
    from replan_planner.settings import PlannerSettings

__all__ = ["plan_command", "serve_planner"]

#: Exit status for a request the planner refused (4xx); anything else that failed exits 1.
EXIT_BAD_INPUT = 2

BackendOpt = Annotated[BackendKind | None, typer.Option(help="Where the model runs.")]
PresetOpt = Annotated[Preset | None, typer.Option(help="tiny: random-weight Qwen2.5-VL in-process on CPU.")]
ModelOpt = Annotated[str | None, typer.Option(help="openai: served model name; transformers: directory or hub id.")]
BaseUrlOpt = Annotated[
    str | None, typer.Option("--openai-base-url", help="OpenAI-compatible endpoint, e.g. http://vllm:8000/v1.")
]


def _settings(**overrides: Any) -> PlannerSettings:
    from replan_planner.settings import PlannerSettings

    base_url = overrides.pop("openai_base_url", None)
    values = {k: v for k, v in overrides.items() if v is not None}
    if base_url is not None:
        values["openai"] = {"base_url": base_url}
    return PlannerSettings(**values)


def serve_planner(
    backend: BackendOpt = None,
    preset: PresetOpt = None,
    model: ModelOpt = None,
    openai_base_url: BaseUrlOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8100).")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING…")] = None,
) -> None:
    """Run the planner service (uvicorn, app factory) in the foreground."""
    import functools

    import uvicorn

    from replan_common.log import configure_logging
    from replan_planner.app import create_app

    settings = _settings(
        backend=backend, preset=preset, model=model, openai_base_url=openai_base_url, host=host, port=port,
        log_level=log_level,
    )  # fmt: skip
    configure_logging(settings.log_level, json_lines=settings.log_json)
    uvicorn.run(
        functools.partial(create_app, settings),
        factory=True,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # the request middleware logs one line per request
        timeout_graceful_shutdown=10,
    )


def plan_command(
    image: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="PNG, JPEG or WebP file.")],
    instruction: Annotated[str, typer.Option(help="The edit instruction.")],
    url: Annotated[
        str | None, typer.Option(help="A running planner service (http://host:8100); default: run in-process.")
    ] = None,
    mode: Annotated[
        PlanMode, typer.Option(help="regions: a full plan; rephrase: a global prompt only.")
    ] = PlanMode.REGIONS,
    max_new_tokens: Annotated[int | None, typer.Option(help="Default 2048.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Default: the model's own.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    backend: BackendOpt = None,
    preset: PresetOpt = None,
    model: ModelOpt = None,
    openai_base_url: BaseUrlOpt = None,
    timeout_s: Annotated[float, typer.Option(help="HTTP timeout with --url.")] = 600.0,
) -> None:
    """Plan one edit and print the PlanResponse JSON (boxes in original-image pixels)."""
    from replan_common.errors import ReplanError
    from replan_common.protocol import PlanOptions
    from replan_planner.planner import PlanInput

    options = PlanOptions.model_validate(
        {
            "mode": mode,
            **{
                k: v
                for k, v in {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed}.items()
                if v is not None
            },
        }
    )
    request = PlanInput(image=image.read_bytes(), instruction=instruction, options=options)
    try:
        if url is not None:
            response = _plan_remote(url, request, timeout_s)
        else:
            settings = _settings(backend=backend, preset=preset, model=model, openai_base_url=openai_base_url)
            response = asyncio.run(_plan_in_process(settings, request))
    except ReplanError as exc:
        where = f" ({exc.param})" if exc.param else ""
        typer.echo(f"error: {exc.code}: {exc.message}{where}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT if exc.status < 500 else 1) from None
    sys.stdout.write(response.model_dump_json(indent=2) + "\n")


def _plan_remote(url: str, request: PlanInput, timeout_s: float) -> PlanResponse:
    import base64

    from replan_common.http.client import ServiceClient
    from replan_common.protocol import PlanRequest, PlanResponse

    assert isinstance(request.image, bytes)
    body = PlanRequest(
        image=base64.b64encode(request.image).decode("ascii"), instruction=request.instruction, options=request.options
    )
    client = ServiceClient(url, service="planner", timeout_s=timeout_s)
    try:
        answer = client.request("POST", "/v1/plan", json=body.model_dump(mode="json"))
    finally:
        client.close()
    return PlanResponse.model_validate(answer.json())


async def _plan_in_process(settings: PlannerSettings, request: PlanInput) -> PlanResponse:
    from prometheus_client import CollectorRegistry

    from replan_common.errors import ServiceUnavailable
    from replan_planner.metrics import PlannerMetrics
    from replan_planner.services import start_services

    services = await start_services(settings, metrics=PlannerMetrics(CollectorRegistry()))
    try:
        state = await services.backend.state()
        while state.status == "loading":
            await asyncio.sleep(0.1)
            state = await services.backend.state()
        if state.status == "failed":
            raise ServiceUnavailable(state.detail or "the planner model failed to load", code="planner_load_failed")
        return await services.planner.plan(request)
    finally:
        await services.aclose()
