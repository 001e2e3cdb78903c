"""`replan serve gateway` and `replan up`, registered on the `replan` app by `replan_common.cli.main`.

Light at import (typer only): settings, uvicorn and the app are imported inside the commands.
`replan serve gateway` runs the gateway alone (`REPLAN_GATEWAY_*`, `REPLAN_JOBS_*`, and `REPLAN_WORKER_*`
for the Celery broker). `replan up` runs the whole stack on this machine (see `local_stack`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["serve_gateway", "up"]

EXIT_BAD_INPUT = 2


def serve_gateway(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING...")] = None,
) -> None:
    """Run the gateway (FastAPI + uvicorn); unset options come from REPLAN_GATEWAY_* variables."""
    import functools

    import uvicorn
    from pydantic import ValidationError

    from replan_common.log import configure_logging
    from replan_gateway.app import create_app, quiet_http_client_logs
    from replan_gateway.settings import GatewaySettings

    given: dict[str, Any] = {"host": host, "port": port, "log_level": log_level}
    try:
        settings = GatewaySettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        typer.echo(f"error: invalid_settings: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    configure_logging(settings.log_level, json_lines=settings.log_json)
    quiet_http_client_logs()
    uvicorn.run(
        functools.partial(create_app, settings),
        factory=True,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # the request middleware logs one line per request, with its id
        timeout_graceful_shutdown=10,
    )


def up(
    preset: Annotated[
        str,
        typer.Option(
            help="tiny: random-weight models on CPU (no downloads); default: the models REPLAN_EDITOR_* and "
            "REPLAN_PLANNER_* configure; auto: default when a GPU is visible and REPLAN_EDITOR_MODEL is a local "
            "checkpoint, else tiny."
        ),
    ] = "auto",
    host: Annotated[str, typer.Option(help="Interface for the API; anything but loopback needs --api-key.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port of the API and web page.")] = 8000,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Jobs, broker and logs live here (default: $REPLAN_STATE_DIR or ~/.local/state/replan)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="REPLAN_UP_API_KEY",
            help="Require this key (Authorization: Bearer). Only its SHA-256 reaches the gateway.",
        ),
    ] = None,
    jobs: Annotated[
        str, typer.Option(help="celery: a Celery worker on an embedded SQLite broker; inline: in the gateway.")
    ] = "celery",
    ready_timeout_s: Annotated[float, typer.Option(help="Give up if the API is not ready by then.")] = 600.0,
) -> None:
    """Run planner, editor, gateway and a job worker on this machine: no Docker, no Redis. Ctrl-C stops all."""
    from replan_gateway.local_stack import LocalStack, StackError, StackOptions

    try:
        options = StackOptions.build(
            preset=preset, host=host, port=port, state_dir=state_dir, api_key=api_key, jobs=jobs
        )
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    raise typer.Exit(LocalStack(options).run(ready_timeout_s=ready_timeout_s))
