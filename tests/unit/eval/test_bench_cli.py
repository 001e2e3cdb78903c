"""`replan bench run|score|report` in-process (CliRunner), and the per-sample attempt log.

Runs made here use the in-process planner, editor and judge stand-ins of test_bench_run.py; the commands
against real services, Celery and Redis are in tests/integration/eval.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from replan_common.cli.main import app
from replan_eval.bench_run import Method, generate_sample, read_attempts, run_samples
from replan_eval.run_layout import RunLayout
from tests.support.processes import free_port

from .test_bench_run import FakeEditor, FakePlanner, config_for, fresh_editors, run

runner = CliRunner()


def test_bench_is_a_command_group_of_replan() -> None:
    result = runner.invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    for command in ("run", "score", "report"):
        assert command in result.output


def test_report_renders_a_finished_run_and_prints_the_table(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    run(config, planner=FakePlanner(), editors=fresh_editors(), calls=[])
    layout = RunLayout(config.out_dir)
    for path in (layout.scores, layout.report_md, layout.report_html):
        path.unlink()
    result = runner.invoke(app, ["bench", "report", str(config.out_dir)])
    assert result.exit_code == 0, result.output
    assert layout.report_html.read_text().startswith("<!DOCTYPE html>")
    assert "4.25" in result.output and "3.35" in result.output  # Overall, Weighted (test_bench_run.py)
    assert "4/4 generated" in result.output


def test_report_of_a_run_never_generated_counts_every_sample_as_zero(tmp_path: Path) -> None:
    config = config_for(tmp_path, judge=None)
    config_path = tmp_path / "run.yaml"
    config_path.write_text(config.to_yaml())
    out = config.out_dir
    out.mkdir(parents=True)
    (out / "run.yaml").write_text(config.to_yaml())
    result = runner.invoke(app, ["bench", "report", str(out)])
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "scores.json").read_text())
    assert scores["generated"] == 0 and scores["aggregate"]["overall"]["overall"] == 0.0


def test_a_bad_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "dataset": "d.jsonl", "method": "nope", "out_dir": "o"}))
    result = runner.invoke(app, ["bench", "run", str(path), "--local"])
    assert result.exit_code == 2
    assert "invalid_run_config" in result.output and "method" in result.output


def test_a_directory_without_run_yaml_is_not_a_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", "report", str(tmp_path)])
    assert result.exit_code == 2 and "not_a_run" in result.output


def test_celery_mode_with_an_unreachable_broker_fails_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from replan_eval.settings import get_settings

    config = config_for(tmp_path, judge=None)
    path = tmp_path / "run.yaml"
    path.write_text(config.to_yaml())
    closed = free_port()
    monkeypatch.setenv("REPLAN_WORKER_BROKER_URL", f"redis://127.0.0.1:{closed}/0")
    monkeypatch.setenv("REPLAN_WORKER_RESULT_BACKEND", f"redis://127.0.0.1:{closed}/1")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["bench", "run", str(path), "--no-wait"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "broker_unreachable" in result.output and "--local" in result.output


def test_local_score_judges_generated_samples_and_writes_the_report(tmp_path: Path) -> None:
    config = config_for(tmp_path, judge=None)
    run(config, planner=FakePlanner(), editors=fresh_editors(), calls=[])
    layout = RunLayout(config.out_dir)
    for image_id in ("100", "101"):
        layout.metrics(image_id).unlink()
    layout.scores.unlink()
    result = runner.invoke(app, ["bench", "score", str(config.out_dir), "--local"])
    assert result.exit_code == 0, result.output
    assert layout.metrics("100").is_file() and layout.scores.is_file()


def test_each_generation_attempt_is_logged_with_its_outcome(tmp_path: Path) -> None:
    config = config_for(tmp_path, method=Method.FLUX_KONTEXT, planner_url=None)
    layout = RunLayout(config.out_dir)
    sample = run_samples(config)[0]
    down = FakeEditor("e0", fail_for={sample.instruction})
    with pytest.raises(Exception, match="restarting"):
        generate_sample(config, sample, layout, editor=down, planner=None)
    assert generate_sample(config, sample, layout, editor=FakeEditor("e1"), planner=None) is True
    assert generate_sample(config, sample, layout, editor=FakeEditor("e1"), planner=None) is False  # done: no attempt
    attempts = read_attempts(layout, sample.image_id)
    assert [(a.event, a.code) for a in attempts] == [
        ("start", None), ("error", "editor_unavailable"), ("start", None), ("done", None),
    ]  # fmt: skip
    assert all(a.pid > 0 and a.host for a in attempts)
    # A line cut short by a crash mid-write is skipped, not fatal.
    with layout.attempts(sample.image_id).open("a") as handle:
        handle.write('{"event": "sta')
    assert len(read_attempts(layout, sample.image_id)) == 4
