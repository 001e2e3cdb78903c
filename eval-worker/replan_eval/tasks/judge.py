"""``judge`` queue: score one generated sample (judge-free metrics + VLM verdicts), or a whole run.

Idempotent per (run, sample): metrics are written once and verdicts are cached per dimension in the run
directory, so a redelivered task asks the judge nothing it has already answered. A judge call that
failed (network, 5xx after its own retries) leaves its dimension uncached and the task retries later.
When the last sample of a run is scored, the report task is queued.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task

from replan_eval import bench_run
from replan_eval.tasks import _context

logger = logging.getLogger(__name__)

SCORE_SAMPLE = "replan.judge.score_sample"
SCORE_RUN = "replan.judge.score_run"
REPORT_RUN = "replan.bench.report_run"


@shared_task(bind=True, name=SCORE_SAMPLE)
def score_sample(self: Task, run_dir: str, image_id: str) -> bool:
    """Returns True when the sample is fully scored."""
    settings = _context.settings_of(self.app)
    config, layout = _context.run(run_dir)
    _, sample = _context.samples(config)[image_id]
    bench_run.score_sample(config, sample, layout, judge=_context.run_judge(run_dir))
    scored = bench_run.is_scored(config, layout, image_id)
    if not scored and layout.is_generated(image_id) and self.request.retries < settings.task_max_retries:
        countdown = min(settings.retry_backoff_max_s, 10 * 2**self.request.retries)
        raise self.retry(countdown=countdown, max_retries=settings.task_max_retries)
    if _run_complete(run_dir):
        self.app.send_task(REPORT_RUN, args=[run_dir])
    return scored


@shared_task(bind=True, name=SCORE_RUN)
def score_run(self: Task, run_dir: str) -> int:
    """Queue scoring for every generated sample not fully scored (e.g. after changing the judge)."""
    config, layout = _context.run(run_dir)
    queued = 0
    for image_id in _context.samples(config):
        if layout.is_generated(image_id) and not bench_run.is_scored(config, layout, image_id):
            self.app.send_task(SCORE_SAMPLE, args=[run_dir, image_id])
            queued += 1
    if queued == 0:
        self.app.send_task(REPORT_RUN, args=[run_dir])
    return queued


def _run_complete(run_dir: str) -> bool:
    config, layout = _context.run(run_dir)
    return all(
        bench_run.is_finished(layout, i) and bench_run.is_scored(config, layout, i) for i in _context.samples(config)
    )
