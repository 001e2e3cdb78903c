"""`replan`: the single entry point for every command.

Command modules are imported here to register them, so they must stay light at import: torch, diffusers
and the services are imported inside the command functions.
"""

from __future__ import annotations

from typing import Annotated

import typer

from replan_common import __version__

app = typer.Typer(
    name="replan",
    help="Reasoning-guided, region-aware image editing: planner, editors, gateway, benchmarks, rewards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"replan-suite {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Reasoning-guided, region-aware image editing."""


serve_app = typer.Typer(help="Run one service in the foreground.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")


def _register() -> None:
    """Attach every command. Each service keeps its commands in its own `cli` module."""
    from replan_common.cli.parse_plan import parse_plan

    app.command("parse-plan", help="Read planner output (or plan JSON) and print the normalised plan.")(parse_plan)

    from replan_editor.cli import edit_command, serve_editor

    serve_app.command("editor")(serve_editor)
    app.command("edit")(edit_command)

    from replan_planner.cli import plan_command, serve_planner

    serve_app.command("planner")(serve_planner)
    app.command("plan")(plan_command)

    from replan_gateway.cli import serve_gateway, up

    serve_app.command("gateway")(serve_gateway)
    app.command("up", help="Run the whole stack on this machine (no Docker, no Redis); Ctrl-C stops it.")(up)

    from replan_eval.worker import serve_worker

    serve_app.command("worker")(serve_worker)

    from replan_eval.cli import bench_app

    app.add_typer(bench_app, name="bench")


_register()


def main() -> None:
    app()
