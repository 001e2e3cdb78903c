"""``bench`` queue: start a run (queue what is not done), generate one sample, write the report.

Thin: each task resolves ids to the run and sample through the per-process context and calls
`replan_eval.bench_run`. Idempotent per (run, sample): an existing ``final_result.png`` (or a permanent
``error.json``) makes `generate_sample` a no-op, so a redelivered task after a worker crash is harmless.
Transient failures (an editor down, out of GPU memory) are retried with exponential backoff up to
``REPLAN_WORKER_TASK_MAX_RETRIES``; after that the sample stays without an image (0) until the run is
started again. Tasks hand work on by sending the next task by name; none waits on another.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task

from replan_common.errors import ReplanError
from replan_eval import bench_run
from replan_eval.editor_client import FailoverEditor
from replan_eval.tasks import _context

logger = logging.getLogger(__name__)

START_RUN = "replan.bench.start_run"
GENERATE_SAMPLE = "replan.bench.generate_sample"
REPORT_RUN = "replan.bench.report_run"
SCORE_SAMPLE = "replan.judge.score_sample"


@shared_task(bind=True, name=START_RUN)
def start_run(self: Task, run_dir: str) -> dict[str, int]:
    """Queue generation for unfinished samples and scoring for unscored ones; report if nothing is left."""
    config, layout = _context.run(run_dir)
    queued = {"generate": 0, "score": 0}
    for image_id, (index, _) in _context.samples(config).items():
        if not bench_run.is_finished(layout, image_id):
            self.app.send_task(GENERATE_SAMPLE, args=[run_dir, image_id, index])
            queued["generate"] += 1
        elif not bench_run.is_scored(config, layout, image_id):
            self.app.send_task(SCORE_SAMPLE, args=[run_dir, image_id])
            queued["score"] += 1
    if not any(queued.values()):
        self.app.send_task(REPORT_RUN, args=[run_dir])
    logger.info("run %s: queued %s generations and %s scorings", run_dir, queued["generate"], queued["score"])
    return queued


@shared_task(bind=True, name=GENERATE_SAMPLE)
def generate_sample(self: Task, run_dir: str, image_id: str, shard: int) -> bool:
    """Plan and edit one sample on the editor of its shard; then queue its scoring."""
    settings = _context.settings_of(self.app)
    config, layout = _context.run(run_dir)
    _, sample = _context.samples(config)[image_id]
    editors = _context.editors(settings, config.editor_urls)
    planner = _context.planner(settings, config.planner_url) if config.planner_url else None
    try:
        made = bench_run.generate_sample(
            config, sample, layout, editor=FailoverEditor.for_shard(editors, shard), planner=planner
        )
    except ReplanError as exc:
        if self.request.retries < settings.task_max_retries:
            countdown = min(settings.retry_backoff_max_s, 5 * 2**self.request.retries)
            raise self.retry(exc=exc, countdown=countdown, max_retries=settings.task_max_retries) from exc
        logger.error("run %s sample %s: giving up after %s retries: %s", run_dir, image_id, self.request.retries, exc)
        made = False
    self.app.send_task(SCORE_SAMPLE, args=[run_dir, image_id])
    return made


@shared_task(bind=True, name=REPORT_RUN)
def report_run(self: Task, run_dir: str) -> dict[str, float]:
    """Aggregate what is on disk into scores.json, report.md and report.html."""
    config, layout = _context.run(run_dir)
    samples = [sample for _, sample in _context.samples(config).values()]
    summary = bench_run.write_report(config, samples, layout)
    row = summary.aggregate.overall
    logger.info(
        "run %s report: overall %.3f weighted %.3f over %s samples", run_dir, row.overall, row.weighted, row.count
    )
    return {"overall": row.overall, "weighted": row.weighted, "samples": float(row.count)}
