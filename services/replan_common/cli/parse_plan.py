"""`replan parse-plan`: read planner output (or plan JSON) and print the normalised plan as JSON.

Meant for people debugging a planner and for scripts: the exit status is 0 for a valid plan and 2 for bad
input, and the one stderr line ``error: <code>: <message> (<param>)`` carries the same code as the HTTP
error envelope. Registered on the `replan` app by `replan_common.cli.main`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from replan_common.errors import ReplanError
from replan_common.geometry import Size
from replan_common.plan_parser import parse_planner_output, validate_plan_boxes

__all__ = ["parse_plan", "parse_plan_command"]

#: Exit status for input that is not a valid plan (click uses 2 for usage errors too).
EXIT_BAD_INPUT = 2


def parse_plan(
    source: Annotated[str, typer.Argument(help="File with the planner output, or - for stdin.")] = "-",
    image_size: Annotated[
        tuple[int, int] | None,
        typer.Option(
            "--image-size",
            metavar="W H",
            help="Check the boxes against a W×H image: clip small overhangs, reject boxes outside it.",
        ),
    ] = None,
) -> None:
    """Read planner output (or plan JSON) from a file or stdin and print the normalised plan as JSON."""
    try:
        text = _read_source(source)
        plan = parse_planner_output(text)
        if image_size is not None:
            plan = validate_plan_boxes(plan, _image_size(image_size))
    except _BadInput as exc:
        _fail(exc.code, exc.message, exc.param)
    except ReplanError as exc:
        _fail(exc.code, exc.message, exc.param)
    typer.echo(plan.model_dump_json(indent=2))


#: The name the CLI brief uses; same function.
parse_plan_command = parse_plan


class _BadInput(Exception):
    """A problem with the command's own arguments (not the plan), reported like a plan error."""

    def __init__(self, code: str, message: str, param: str) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def _read_source(source: str) -> str:
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise _BadInput("unreadable_input", f"cannot read {source!r}: {exc.strerror or exc}", "source") from exc
    try:
        # utf-8-sig: files saved by Windows editors start with a BOM.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _BadInput(
            "unreadable_input",
            f"{source!r} is not UTF-8 text (byte {exc.start}); planner output is text",
            "source",
        ) from exc


def _image_size(value: tuple[int, int]) -> Size:
    width, height = value
    if width <= 0 or height <= 0:
        raise _BadInput("bad_image_size", f"image size {width}x{height} must be positive: W H", "--image-size")
    return Size(width, height)


def _fail(code: str, message: str, param: str | None) -> None:
    where = f" ({param})" if param else ""
    typer.echo(f"error: {code}: {message}{where}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)
