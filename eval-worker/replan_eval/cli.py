"""`replan bench run|score|report`: IV-Edit benchmark runs from the command line, with progress bars.

Registered on the `replan` app as the ``bench`` group by `replan_common.cli.main`. Light at import
(typer only): Celery, rich and the run logic load inside the commands.

Two ways to run: through Celery (``--celery``; the default when ``REPLAN_WORKER_BROKER_URL`` is set) the
command queues the run on the ``bench`` queue and watches the run directory fill up, which therefore
has to be on storage the workers share; in-process (``--local``; the default otherwise) it plans, edits
and judges from threads of this process, calling the same services over HTTP. Both resume: finished
samples are skipped, so running the same command again after a crash, a timeout or Ctrl-C carries on.
Exit status: 0 done, 2 bad input (``error: <code>: <message> (<param>)`` on stderr), 1 anything else.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from replan_eval.bench_run import RunConfig
    from replan_eval.run_layout import RunLayout

__all__ = ["bench_app"]

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1

bench_app = typer.Typer(
    help="IV-Edit benchmark runs: generate edits, judge them, write the report.", no_args_is_help=True
)

LocalOption = Annotated[
    bool | None,
    typer.Option(
        "--local/--celery",
        help="In this process, or queued on Celery workers; default: Celery when REPLAN_WORKER_BROKER_URL is set.",
        show_default=False,
    ),
]
WaitOption = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Celery: watch progress until the report is written.")
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(min=1, help="Celery: stop watching after this many seconds (the run goes on; run again to watch)."),
]


def _console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _fail(console: Console, code: str, message: str, param: str | None = None, *, status: int = 400) -> NoReturn:
    from rich.markup import escape

    where = f" ({param})" if param else ""
    console.print(f"[red]error[/red]: {escape(code)}: {escape(message)}{escape(where)}", soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT if 400 <= status < 500 else EXIT_FAILED)


def _use_local(local: bool | None) -> bool:
    return local if local is not None else "REPLAN_WORKER_BROKER_URL" not in os.environ


@bench_app.command("run")
def run_command(
    config: Annotated[Path, typer.Argument(help="The run's YAML config.", exists=True, dir_okay=False)],
    local: LocalOption = None,
    wait: WaitOption = True,
    timeout_s: TimeoutOption = None,
    workers: Annotated[int, typer.Option(min=1, max=256, help="--local: samples in flight at once.")] = 4,
) -> None:
    """Generate, judge and report a run (resumes one that was started before)."""
    from replan_common.errors import ReplanError
    from replan_common.log import configure_logging
    from replan_eval.bench_run import RunConfig, prepare_run

    configure_logging("WARNING", json_lines=False)
    console = _console()
    try:
        run_config = RunConfig.from_yaml(config)
        if _use_local(local):
            _run_local(console, run_config, workers)
        else:
            layout = prepare_run(run_config)
            since = time.time()
            _send("replan.bench.start_run", str(layout.root))
            console.print(f"queued run [bold]{run_config.name}[/bold] in {layout.root}")
            if wait:
                _watch(console, run_config, layout, since=since, timeout_s=timeout_s, generating=True)
        _print_summary(console, run_config.out_dir)
    except ReplanError as exc:
        _fail(console, exc.code, exc.message, exc.param, status=exc.status)


@bench_app.command("score")
def score_command(
    run: Annotated[Path, typer.Argument(help="The run directory (holds run.yaml).", exists=True, file_okay=False)],
    local: LocalOption = None,
    wait: WaitOption = True,
    timeout_s: TimeoutOption = None,
    workers: Annotated[int, typer.Option(min=1, max=256, help="--local: judge calls in flight at once.")] = 4,
) -> None:
    """Judge every generated sample not judged yet (e.g. after adding a judge), then write the report."""
    from replan_common.errors import ReplanError
    from replan_common.log import configure_logging
    from replan_eval.bench_run import load_run

    configure_logging("WARNING", json_lines=False)
    console = _console()
    try:
        run_config, layout = load_run(run.resolve())
        if _use_local(local):
            _score_local(console, run_config, layout, workers)
        else:
            since = time.time()
            _send("replan.judge.score_run", str(layout.root))
            console.print(f"queued scoring of [bold]{run_config.name}[/bold]")
            if wait:
                _watch(console, run_config, layout, since=since, timeout_s=timeout_s, generating=False)
        _print_summary(console, layout.root)
    except ReplanError as exc:
        _fail(console, exc.code, exc.message, exc.param, status=exc.status)


@bench_app.command("report")
def report_command(
    run: Annotated[Path, typer.Argument(help="The run directory (holds run.yaml).", exists=True, file_okay=False)],
) -> None:
    """Aggregate what is on disk (missing = 0) into scores.json, report.md and report.html."""
    from replan_common.errors import ReplanError
    from replan_eval.bench_run import load_run, run_samples, write_report

    console = _console()
    try:
        run_config, layout = load_run(run.resolve())
        write_report(run_config, run_samples(run_config), layout)
        _print_summary(console, layout.root)
    except ReplanError as exc:
        _fail(console, exc.code, exc.message, exc.param, status=exc.status)


# ---------------------------------------------------------------------------------------------- helpers


def _send(task: str, run_dir: str) -> None:
    """Queue ``task`` for the run on the broker of ``REPLAN_WORKER_*``."""
    from kombu.exceptions import KombuError

    from replan_common.errors import ServiceUnavailable
    from replan_eval.celery_app import create_celery_app
    from replan_eval.settings import get_settings

    app = create_celery_app(get_settings())
    try:
        # Progress is read from the run directory, never from Celery results: keep the result backend out.
        app.send_task(task, args=[run_dir], ignore_result=True)
    except (KombuError, OSError) as exc:
        raise ServiceUnavailable(
            f"cannot queue {task} on {app.conf.broker_url}: {exc}; start the broker, or use --local",
            code="broker_unreachable",
        ) from exc
    finally:
        app.close()


def _progress(console: Console) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _run_local(console: Console, config: RunConfig, workers: int) -> None:
    from replan_eval.bench_run import run_local, run_samples

    total = len(run_samples(config))
    progress = _progress(console)
    with progress:
        bars = {
            "generate": progress.add_task("generate", total=total, note=""),
            "score": progress.add_task("judge", total=total, note=""),
        }

        def advance(stage: str, _image_id: str) -> None:
            progress.advance(bars[stage])

        result = run_local(config, max_workers=workers, on_progress=advance)
    console.print(f"generated {result.generated}, skipped {result.skipped} (done before), failed {result.failed}")
    if result.failed:
        console.print("[yellow]failed samples score 0; run the same command again to retry them[/yellow]")


def _score_local(console: Console, config: RunConfig, layout: RunLayout, workers: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from replan_eval.bench_run import build_judge, run_samples, score_sample, write_report

    samples = [s for s in run_samples(config) if layout.is_generated(s.image_id)]
    judge = build_judge(config, layout)
    progress = _progress(console)
    with progress, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-score") as pool:
        bar = progress.add_task("judge", total=len(samples), note="")
        for _ in pool.map(lambda sample: score_sample(config, sample, layout, judge=judge), samples):
            progress.advance(bar)
    write_report(config, run_samples(config), layout)


def _watch(
    console: Console, config: RunConfig, layout: RunLayout, *, since: float, timeout_s: float | None, generating: bool
) -> None:
    """Follow the run directory until every sample is done and judged and a fresh report is on disk."""
    from replan_common.errors import UpstreamTimeout
    from replan_eval.bench_run import is_finished, is_scored, read_error, run_samples

    ids = [s.image_id for s in run_samples(config)]
    progress = _progress(console)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with progress:
        gen_bar = progress.add_task("generate", total=len(ids), note="", visible=generating)
        score_bar = progress.add_task("judge", total=len(ids), note="")
        while True:
            finished = [i for i in ids if is_finished(layout, i)]
            scored = sum(is_scored(config, layout, i) for i in finished)
            retrying = sum(1 for i in ids if i not in finished and read_error(layout, i) is not None)
            progress.update(gen_bar, completed=len(finished), note=f"{retrying} retrying" if retrying else "")
            progress.update(score_bar, completed=scored)
            if scored == len(ids) and _report_since(layout, since):
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise UpstreamTimeout(
                    f"{len(ids) - scored} of {len(ids)} samples not finished after {timeout_s:g} s; the workers "
                    "carry on: run the same command again to keep watching (finished samples are skipped)",
                    code="run_not_finished",
                )
            time.sleep(0.5)


def _report_since(layout: RunLayout, since: float) -> bool:
    try:
        return layout.report_html.stat().st_mtime >= since - 1.0 and layout.scores.stat().st_mtime >= since - 1.0
    except OSError:
        return False


def _print_summary(console: Console, run_dir: Path) -> None:
    import json

    from rich.table import Table

    from replan_eval.run_layout import RunLayout

    layout = RunLayout(run_dir)
    if not layout.scores.is_file():
        return
    body = json.loads(layout.scores.read_text(encoding="utf-8"))
    aggregate = body["aggregate"]
    table = Table(title=f"{body['name']} ({body['method']}, judge {body['judge']})")
    for column in ("", "n", "Q", "T", "E", "C", "Overall", "Weighted"):
        table.add_column(column, justify="left" if not column else "right")
    rows = [aggregate["overall"], *aggregate["by_task_group"]]
    for row in rows:
        table.add_row(
            row["label"],
            str(row["count"]),
            *(f"{row[k]:.2f}" for k in ("quality", "target", "effect", "consistency", "overall", "weighted")),
        )
    console.print(table)
    console.print(f"{body['generated']}/{body['samples']} generated; report: {layout.report_html}", soft_wrap=True)
