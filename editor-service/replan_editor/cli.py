"""`replan serve editor` and `replan edit`, registered on the `replan` app by `replan_common.cli.main`.

Light at import (typer only): torch, diffusers, uvicorn and the service are imported inside the commands.
`replan edit` runs one edit (image + instruction given) or, with either missing, an interactive session
that loads the models once and reads image paths and instructions from stdin until an empty instruction or
EOF.
Exit status: 0 done, 2 bad input (the stderr line ``error: <code>: <message> (<param>)`` carries the same
code as the HTTP error envelope), 1 anything else.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from replan_common.protocol import Backbone
from replan_editor.settings import Preset

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from replan_common.plan import RegionPlan
    from replan_common.protocol import EditSettings
    from replan_editor.sessions import EditSession

__all__ = ["edit_command", "serve_editor"]

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def serve_editor(
    preset: Annotated[
        Preset | None, typer.Option(help="default (weights from --model) or tiny (random weights, CPU).")
    ] = None,
    backbone: Annotated[Backbone | None, typer.Option(help="Which editor to serve.")] = None,
    model: Annotated[str | None, typer.Option(help="Local path or hub id of the diffusers checkpoint.")] = None,
    device: Annotated[str | None, typer.Option(help="torch device: cuda:N (one process per GPU) or cpu.")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8200).")] = None,
    max_queue: Annotated[int | None, typer.Option(help="Edits that may wait while one runs.")] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the denoiser.")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING...")] = None,
) -> None:
    """Run one editor worker (FastAPI + uvicorn); unset options come from REPLAN_EDITOR_* variables."""
    import uvicorn
    from pydantic import ValidationError

    from replan_common.log import configure_logging
    from replan_editor.app import create_app
    from replan_editor.settings import EditorSettings

    given = {
        "preset": preset,
        "backbone": backbone,
        "model": model,
        "device": device,
        "host": host,
        "port": port,
        "max_queue": max_queue,
        "compile": compile,
        "log_level": log_level,
    }
    try:
        settings = EditorSettings(**{name: value for name, value in given.items() if value is not None})
    except ValidationError as exc:
        typer.echo(f"error: invalid_settings: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    configure_logging(settings.log_level, json_lines=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # our middleware logs one line per request, with its id
        timeout_graceful_shutdown=10,
    )


def edit_command(
    image: Annotated[Path | None, typer.Option(help="The image to edit; omit for an interactive session.")] = None,
    instruction: Annotated[str | None, typer.Option(help="What to change, in words.")] = None,
    plan: Annotated[
        Path | None, typer.Option(help="Plan file: plan JSON or raw planner output (<think>…<region>…).")
    ] = None,
    no_regions: Annotated[
        bool, typer.Option("--no-regions", help="Edit with the instruction alone (no plan, the plain backbone).")
    ] = False,
    backbone: Annotated[Backbone, typer.Option(help="Which editor runs in-process.")] = Backbone.FLUX_KONTEXT,
    preset: Annotated[
        Preset, typer.Option(help="default (weights from --model) or tiny (random, CPU).")
    ] = Preset.DEFAULT,
    model: Annotated[str | None, typer.Option(help="Local path or hub id of the diffusers checkpoint.")] = None,
    device: Annotated[str | None, typer.Option(help="torch device (default cuda:0, cpu for tiny).")] = None,
    output_dir: Annotated[Path, typer.Option(help="Where the result files go.")] = Path("replan_output"),
    only_save_image: Annotated[bool, typer.Option(help="Write final_result.png only.")] = False,
    url: Annotated[
        str | None, typer.Option(help="Run on a running gateway or editor instead of in this process.")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, max=200, help="Denoising steps (default: the backbone's).")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Noise seed.")] = 0,
) -> None:
    """Edit an image: writes final_result.png, plan.json, visualization.png and config.json."""
    from rich.console import Console

    from replan_common.errors import ReplanError
    from replan_common.log import configure_logging
    from replan_common.protocol import EditSettings

    configure_logging("WARNING", json_lines=False)
    console = Console(stderr=True)
    settings = EditSettings(steps=steps, seed=seed)
    if plan is not None and no_regions:
        _fail(console, "conflicting_options", "give --plan or --no-regions, not both", "--plan")
    try:
        fixed_plan = _read_plan(plan) if plan is not None else None
        session = _open_session(console, url=url, backbone=backbone, preset=preset, model=model, device=device)
    except ReplanError as exc:
        _fail(console, exc.code, exc.message, exc.param, status=exc.status)
    except _BadInput as exc:
        _fail(console, exc.code, exc.message, exc.param)
    try:
        if image is not None and instruction is not None:
            _edit_once(
                console,
                session,
                image_path=image,
                instruction=instruction,
                plan=fixed_plan,
                no_regions=no_regions,
                settings=settings,
                output_dir=output_dir,
                only_image=only_save_image,
            )
        else:
            _interactive(
                console,
                session,
                image=image,
                plan=fixed_plan,
                no_regions=no_regions,
                settings=settings,
                output_dir=output_dir,
                only_image=only_save_image,
            )
    except ReplanError as exc:
        _fail(console, exc.code, exc.message, exc.param, status=exc.status)
    except _BadInput as exc:
        _fail(console, exc.code, exc.message, exc.param)
    finally:
        session.close()


class _BadInput(Exception):
    """A problem with the command's own arguments, reported like an API error."""

    def __init__(self, code: str, message: str, param: str) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def _open_session(
    console: Console, *, url: str | None, backbone: Backbone, preset: Preset, model: str | None, device: str | None
) -> EditSession:
    from pydantic import ValidationError
    from rich.markup import escape

    from replan_editor.sessions import LocalSession, RemoteSession
    from replan_editor.settings import EditorSettings

    if url is not None:
        return RemoteSession(url)
    try:
        settings = EditorSettings(backbone=backbone, preset=preset, model=model, device=device)
    except ValidationError as exc:
        raise _BadInput("invalid_settings", str(exc).splitlines()[-1].strip(), "--preset/--device") from exc
    with console.status(escape(f"loading {settings.resolved_model} on {settings.resolved_device}…")):
        return LocalSession(settings)


def _read_plan(path: Path) -> RegionPlan:
    from replan_common.plan_parser import parse_planner_output

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _BadInput("unreadable_plan", f"cannot read {str(path)!r}: {exc}", "--plan") from exc
    return parse_planner_output(text)


def _load_image(path: Path) -> Any:
    from replan_common.images import ImageLimits, decode_image

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _BadInput("unreadable_image", f"cannot read {str(path)!r}: {exc.strerror or exc}", "--image") from exc
    return decode_image(raw, limits=ImageLimits(), param="--image")


def _edit_once(
    console: Console,
    session: EditSession,
    *,
    image_path: Path,
    instruction: str,
    plan: RegionPlan | None,
    no_regions: bool,
    settings: EditSettings,
    output_dir: Path,
    only_image: bool,
) -> list[Path]:
    from replan_common.plan import RegionPlan
    from replan_editor.outputs import write_outputs

    source = _load_image(image_path)
    plan_source = "file" if plan is not None else "instruction" if no_regions else "planner"
    if no_regions:
        plan = RegionPlan(global_prompt=instruction)
    with _step_progress(console) as (_progress, on_step):
        result = session.edit(source, instruction=instruction, plan=plan, settings=settings, on_step=on_step)
    run = {
        **session.description,
        "image": str(image_path),
        "instruction": instruction,
        "plan_source": plan_source,
    }
    written = write_outputs(output_dir, source=source, edit=result, run=run, only_image=only_image)
    for path in written:
        console.print(f"wrote {path}", markup=False, highlight=False)
    return written


class _step_progress:
    """A rich progress bar over denoising steps; yields (progress, on_step)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress: Progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("denoising", total=None)

    def on_step(self, step: int, total: int) -> None:
        self.progress.update(self.task, completed=step, total=total or None)

    def __enter__(self) -> tuple[Progress, Any]:
        self.progress.start()
        return self.progress, self.on_step

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def _interactive(
    console: Console,
    session: EditSession,
    *,
    image: Path | None,
    plan: RegionPlan | None,
    no_regions: bool,
    settings: EditSettings,
    output_dir: Path,
    only_image: bool,
) -> None:
    """Edit until an empty instruction or EOF: image path (Enter keeps the last one), then the instruction."""
    from replan_common.errors import ReplanError

    console.print(
        "[bold]interactive session[/]: models stay loaded; Enter at the image prompt keeps the last image, "
        "an empty instruction or Ctrl-D ends the session."
    )
    count = 0
    last_image = image
    while True:
        hint = f" [{last_image}]" if last_image else ""
        answer = _ask(console, f"image{hint}> ")
        if answer is None or (not answer and last_image is None):
            break
        image_path = Path(answer) if answer else last_image
        assert image_path is not None
        instruction = _ask(console, "instruction> ")
        if not instruction:
            break
        count += 1
        target = output_dir / f"edit_{count:03d}"
        try:
            _edit_once(
                console,
                session,
                image_path=image_path,
                instruction=instruction,
                plan=plan,
                no_regions=no_regions,
                settings=settings,
                output_dir=target,
                only_image=only_image,
            )
            last_image = image_path
        except ReplanError as exc:
            where = f" ({exc.param})" if exc.param else ""
            console.print(f"error: {exc.code}: {exc.message}{where}", markup=False, highlight=False)
        except _BadInput as exc:
            console.print(f"error: {exc.code}: {exc.message} ({exc.param})", markup=False, highlight=False)
    console.print(f"{count} edit(s) done.")


def _ask(console: Console, prompt: str) -> str | None:
    """One line from stdin (None at EOF); the prompt goes to stderr so stdout stays clean."""
    console.print(prompt, end="", markup=False, highlight=False)
    line = sys.stdin.readline()
    if not line:
        return None
    return line.strip()


def _fail(console: Console, code: str, message: str, param: str | None, *, status: int = 400) -> None:
    where = f" ({param})" if param else ""
    typer.echo(f"error: {code}: {message}{where}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT if 400 <= status < 500 else EXIT_FAILED)
