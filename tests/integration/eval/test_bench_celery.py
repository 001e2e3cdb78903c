"""IV-Edit benchmark runs end to end: `replan bench run` → Celery on Redis → `replan serve worker` → tiny
editor → judge (recorded replies) → report; and a worker killed with SIGKILL mid-generation.

The dataset is made here (IV-Edit JSONL layout). The method is plain Kontext, so no planner is needed;
planning methods differ only in one more HTTP call, covered by the unit suite.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import yaml

from replan_eval.bench_run import read_attempts
from replan_eval.run_layout import RunLayout
from tests.integration.eval.conftest import OVERALL, WEIGHTED, EvalServices, Launch, make_ivedit_dataset
from tests.support.processes import RunningProcess, replan_command

pytestmark = pytest.mark.integration


def write_config(tmp_path: Path, services: EvalServices, *, n: int, steps: int) -> tuple[Path, Path]:
    dataset = make_ivedit_dataset(tmp_path / "data", n)
    out_dir = tmp_path / "runs" / "kontext"
    config = {
        "name": "it-kontext",
        "dataset": str(dataset),
        "method": "flux-kontext",
        "editor_urls": [services.editor_url],
        "out_dir": str(out_dir),
        "edit": {"steps": steps},
        "judge": {"provider": "openai", "base_url": services.judge_url, "model": "Qwen/Qwen2.5-VL-72B-Instruct"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, out_dir


def wait_exit(process: RunningProcess, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while process.alive():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{process.name} still running after {timeout_s} s:\n{process.log()[-3000:]}")
        time.sleep(0.2)
    return int(process.process.returncode)


def assert_complete_and_unique(out_dir: Path, n: int) -> dict[str, object]:
    """Every sample generated once, judged on every dimension, and in the report exactly once."""
    layout = RunLayout(out_dir)
    ids = [str(500 + i) for i in range(n)]
    for image_id in ids:
        assert layout.final_image(image_id).is_file(), f"sample {image_id} missing"
        done = [a for a in read_attempts(layout, image_id) if a.event == "done"]
        assert len(done) == 1, f"sample {image_id} generated {len(done)} times"
        assert len(list((layout.sample_dir(image_id) / "judge").glob("*.json"))) == 4
    scores = json.loads(layout.scores.read_text())
    assert sorted(s["image_id"] for s in scores["per_sample"]) == sorted(ids)
    assert scores["generated"] == n
    return dict(scores)


def test_a_run_goes_through_celery_and_the_report_renders(
    eval_services: EvalServices, launch: Launch, tmp_path: Path
) -> None:
    n = 4
    config, out_dir = write_config(tmp_path, eval_services, n=n, steps=2)
    edits_before = eval_services.editor_edits_ok()
    eval_services.start_worker(launch, "bench,judge", "bench-worker", broker_db=13)
    cli = launch(
        "bench-run", replan_command("bench", "run", str(config), "--timeout-s", "120"), env=eval_services.worker_env(13)
    )
    assert wait_exit(cli, 150) == 0, cli.log()
    assert "queued run" in cli.log() and "4/4 generated" in cli.log()

    scores = assert_complete_and_unique(out_dir, n)
    overall = scores["aggregate"]["overall"]  # type: ignore[index]
    assert overall["overall"] == pytest.approx(OVERALL) and overall["weighted"] == pytest.approx(WEIGHTED)
    assert eval_services.editor_edits_ok() - edits_before == n
    layout = RunLayout(out_dir)
    html = layout.report_html.read_text()
    assert html.startswith("<!DOCTYPE html>") and "it-kontext" in html and "<svg" in html
    assert f"| All | {n} | 4.00 | 5.00 | 3.00 | 5.00 | 4.25 | 3.35 | 0 |" in layout.report_md.read_text()

    # Resuming a finished run generates nothing and asks the judge nothing.
    judge_before = eval_services.judge_calls()["by_dimension"]
    again = launch("bench-run-again", replan_command("bench", "run", str(config)), env=eval_services.worker_env(13))
    assert wait_exit(again, 60) == 0, again.log()
    assert eval_services.editor_edits_ok() - edits_before == n
    assert eval_services.judge_calls()["by_dimension"] == judge_before


def test_a_worker_killed_mid_run_is_replaced_and_no_sample_is_lost_or_repeated(
    eval_services: EvalServices, launch: Launch, tmp_path: Path
) -> None:
    n = 6
    config, out_dir = write_config(tmp_path, eval_services, n=n, steps=24)
    layout = RunLayout(out_dir)
    ids = [str(500 + i) for i in range(n)]
    edits_before = eval_services.editor_edits_ok()
    judge_before = eval_services.judge_calls()["by_prompt"]
    worker = eval_services.start_worker(launch, "bench,judge", "bench-worker-a", broker_db=14)
    cli = launch(
        "bench-run", replan_command("bench", "run", str(config), "--timeout-s", "170"), env=eval_services.worker_env(14)
    )

    # Kill the worker the moment a generation is in flight, after at least one sample finished.
    in_flight: str | None = None
    deadline = time.monotonic() + 90
    while in_flight is None:
        assert time.monotonic() < deadline, worker.log()[-3000:]
        attempts = {i: [a.event for a in read_attempts(layout, i)] for i in ids}
        if sum("done" in events for events in attempts.values()) >= 1:
            in_flight = next((i for i, e in attempts.items() if e.count("start") > e.count("done")), None)
        if in_flight is None:
            time.sleep(0.01)
    worker.kill(signal.SIGKILL)
    interrupted = not layout.is_generated(in_flight)  # False only if the edit landed between check and kill
    finished_at_kill = sum(layout.is_generated(i) for i in ids)
    assert finished_at_kill < n

    # The same command users run brings a new worker; the broker hands it the killed task after the
    # visibility timeout, and everything else at once.
    eval_services.start_worker(launch, "bench,judge", "bench-worker-b", broker_db=14)
    assert wait_exit(cli, 180) == 0, cli.log()

    assert_complete_and_unique(out_dir, n)
    if interrupted:
        starts = [a for a in read_attempts(layout, in_flight) if a.event == "start"]
        assert len(starts) == 2 and starts[0].pid != starts[1].pid  # tried by the killed worker, then the new one
    # The editor made every image once, plus at most the one whose requester died.
    made = eval_services.editor_edits_ok() - edits_before
    assert n <= made <= n + 1
    # Each sample was judged exactly once per dimension: the kill hit a generation, not a judgement.
    prompts = eval_services.judge_calls()["by_prompt"]
    new = {k: v - judge_before.get(k, 0) for k, v in prompts.items() if v != judge_before.get(k, 0)}
    assert len(new) == 4 * n and set(new.values()) == {1}


def test_a_local_run_needs_no_broker(eval_services: EvalServices, launch: Launch, tmp_path: Path) -> None:
    n = 3
    config, out_dir = write_config(tmp_path, eval_services, n=n, steps=2)
    env = {k: v for k, v in eval_services.env.items() if k != "REPLAN_WORKER_BROKER_URL"}
    cli = launch("bench-local", replan_command("bench", "run", str(config), "--local", "--workers", "2"), env=env)
    assert wait_exit(cli, 120) == 0, cli.log()
    assert f"generated {n}, skipped 0" in cli.log()
    scores = assert_complete_and_unique(out_dir, n)
    assert scores["aggregate"]["overall"]["overall"] == pytest.approx(OVERALL)  # type: ignore[index]
