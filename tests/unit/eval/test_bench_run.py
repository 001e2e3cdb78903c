"""Benchmark runs in-process: generation per method, resume, failures, scoring, report.

The planner and editor are in-process stand-ins (their HTTP clients are tested in test_stage2.py and the
services' own suites); the judge runs through its real OpenAI-compatible client over httpx.MockTransport.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image

from replan_common.errors import BadRequest, PlanParseError, ServiceUnavailable
from replan_common.plan import Region, RegionPlan
from replan_common.protocol import EditRequest, EditResponse, PlanMode, PlanRequest, PlanResponse
from replan_eval.bench_run import (
    JudgeConfig,
    LocalRunResult,
    Method,
    RunConfig,
    build_judge,
    is_finished,
    read_error,
    run_local,
)
from replan_eval.run_layout import RunLayout

BOX = (4.0, 4.0, 12.0, 10.0)


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(buffer, format="PNG")
    return buffer.getvalue()


def make_dataset(tmp_path: Path, n: int = 4) -> Path:
    tasks = ["Attribute Modification", "Prediction", "Text Content", "Deletion"]
    refs = ["Spatial", "Feature", "Text-Content", "Knowledge"]
    lines = []
    for i in range(n):
        extra = {"image_id": 100 + i, "referring_expression": f"object {i}", "task_type": tasks[i % 4],
                 "referring_type": refs[i % 4]}  # fmt: skip
        image = base64.b64encode(png((10 * i, 50, 90))).decode()
        lines.append(json.dumps({"image": image, "prompt": f"make object {i} red", "extra_info": json.dumps(extra)}))
    path = tmp_path / "ivedit.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


class FakePlanner:
    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.requests: list[PlanRequest] = []
        self.fail_on = fail_on or set()

    def plan(self, request: PlanRequest) -> PlanResponse:
        self.requests.append(request)
        if request.instruction in self.fail_on:
            raise PlanParseError("the model wrote no <region> tag", code="missing_region")
        regions = (Region(bbox=BOX, hint="bright red"),) if request.options.mode is PlanMode.REGIONS else ()
        plan = RegionPlan(reasoning="r", global_prompt="keep the rest", regions=regions)
        return PlanResponse(plan=plan, raw_text=plan.to_tagged_text(), model="fake-planner")


class FakeEditor:
    """Paints the plan's boxes (or the whole image) red, like an editor that obeys the plan exactly."""

    def __init__(self, name: str, fail_for: set[str] | None = None) -> None:
        self.name = name
        self.requests: list[EditRequest] = []
        self.fail_for = fail_for or set()
        self._lock = threading.Lock()

    def edit(self, request: EditRequest) -> EditResponse:
        with self._lock:
            self.requests.append(request)
        if request.instruction in self.fail_for or (request.plan and request.plan.global_prompt in self.fail_for):
            raise ServiceUnavailable(f"{self.name} is restarting", code="editor_unavailable")
        image = Image.open(io.BytesIO(base64.b64decode(request.image))).convert("RGB")
        plan = request.plan or RegionPlan(global_prompt=request.instruction or "")
        for region in plan.regions:
            image.paste((255, 0, 0), tuple(int(v) for v in region.bbox))  # type: ignore[arg-type]
        if not plan.regions:
            image = Image.new("RGB", image.size, (255, 0, 0))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return EditResponse(
            image=base64.b64encode(buffer.getvalue()).decode(),
            width=image.width,
            height=image.height,
            plan=plan,
            settings=request.settings,
            timings_ms={"total": 1.0},
        )


# The judge answers Q=4, T=5, E=3, C=5 for every sample.
JUDGE_SCORES = {"quality": 4, "target": 5, "effect": 3, "consistency": 5}


def judge_transport(calls: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        text = "".join(p.get("text", "") for p in body["messages"][0]["content"])
        for dim, score in JUDGE_SCORES.items():
            if f'"{dim}_score"' in text:
                calls.append(dim)
                content = f'```json\n{{"reasoning": "ok", "{dim}_score": {score}}}\n```'
                return httpx.Response(200, json={"choices": [{"index": 0, "message": {"role": "assistant",
                                                 "content": content}, "finish_reason": "stop"}]})  # fmt: skip
        return httpx.Response(400, json={"error": {"message": "unknown prompt"}})

    return httpx.MockTransport(handler)


def config_for(tmp_path: Path, method: Method = Method.REPLAN_FLUX_KONTEXT, **more: object) -> RunConfig:
    data: dict[str, object] = {
        "name": f"test-{method.value}",
        "dataset": str(make_dataset(tmp_path)),
        "method": method,
        "planner_url": "http://planner.test:8100",
        "editor_urls": ["http://e0.test:8200", "http://e1.test:8200"],
        "out_dir": str(tmp_path / "runs" / method.value),
        "judge": JudgeConfig(base_url="http://judge.test/v1", model="judge-model"),
        **more,
    }
    return RunConfig.model_validate(data)


def run(config: RunConfig, *, planner: FakePlanner, editors: dict[str, FakeEditor], calls: list[str]) -> LocalRunResult:
    judge = build_judge(config, RunLayout(config.out_dir), transport=judge_transport(calls))
    return run_local(config, max_workers=2, editor_factory=editors.__getitem__, planner=planner, judge=judge)


def fresh_editors(**fail_for: set[str]) -> dict[str, FakeEditor]:
    return {
        url: FakeEditor(url, fail_for.get(f"e{i}"))
        for i, url in enumerate(["http://e0.test:8200", "http://e1.test:8200"])
    }


def test_replan_run_generates_scores_and_reports(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    planner, editors, calls = FakePlanner(), fresh_editors(), []
    result = run(config, planner=planner, editors=editors, calls=calls)

    assert (result.generated, result.skipped, result.failed) == (4, 0, 0)
    layout = RunLayout(config.out_dir)
    for image_id in ("100", "101", "102", "103"):
        assert layout.final_image(image_id).is_file()
        record = json.loads(layout.plan(image_id).read_text())
        assert record["plan"]["regions"][0]["bbox"] == list(BOX)
        assert record["planner_model"] == "fake-planner"
    # sharded: sample index i goes to editor i % 2
    assert [len(e.requests) for e in editors.values()] == [2, 2]
    request = next(iter(editors.values())).requests[0]
    assert request.plan is not None and request.settings.backbone.value == "flux-kontext"
    assert request.settings.seed == 42
    assert sorted(calls) == sorted(list(JUDGE_SCORES) * 4)

    # per sample: Overall (4+5+3+5)/4 = 4.25; Weighted (5 + 3 + 4·3/5 + 5·3/5)/4 = 13.4/4 = 3.35
    scores = json.loads(layout.scores.read_text())
    assert scores["aggregate"]["overall"]["overall"] == pytest.approx(4.25)
    assert scores["aggregate"]["overall"]["weighted"] == pytest.approx(3.35)
    assert scores["generated"] == 4
    assert [r["label"] for r in scores["aggregate"]["by_task_group"]] == [
        "Common Editing", "Reasoning Editing", "Text Editing",
    ]  # fmt: skip
    # the fake editor painted exactly the box: outside untouched
    assert scores["metrics"]["psnr_outside_db"] == 100.0
    assert scores["metrics"]["ssim_outside"] == pytest.approx(1.0)
    assert "| All | 4 | 4.00 | 5.00 | 3.00 | 5.00 | 4.25 | 3.35 | 0 |" in layout.report_md.read_text()
    assert layout.report_html.read_text().startswith("<!DOCTYPE html>")


def test_resume_skips_finished_samples_and_asks_the_judge_nothing(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    run(config, planner=FakePlanner(), editors=fresh_editors(), calls=[])
    planner, editors, calls = FakePlanner(), fresh_editors(), []
    result = run(config, planner=planner, editors=editors, calls=calls)
    assert (result.generated, result.skipped) == (0, 4)
    assert planner.requests == [] and all(not e.requests for e in editors.values()) and calls == []


def test_transient_failure_is_left_for_resume_then_completed(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    # both editors are down (they refuse every plan, all of which say "keep the rest")
    down = fresh_editors(e0={"keep the rest"}, e1={"keep the rest"})
    result = run(config, planner=FakePlanner(), editors=down, calls=[])
    assert result.failed == 4
    layout = RunLayout(config.out_dir)
    error = read_error(layout, "101")
    assert error is not None and error.transient and error.code == "editor_unavailable"
    assert not is_finished(layout, "101")
    result = run(config, planner=FakePlanner(), editors=fresh_editors(), calls=[])
    assert (result.generated, result.failed) == (4, 0)
    assert read_error(layout, "101") is None


def test_failover_to_the_other_editor(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    editors = fresh_editors(e0={"keep the rest"})  # e0 down, e1 up
    result = run(config, planner=FakePlanner(), editors=editors, calls=[])
    assert (result.generated, result.failed) == (4, 0)
    assert len(editors["http://e1.test:8200"].requests) == 4


def test_unreadable_plan_is_final_and_scores_zero(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    result = run(config, planner=FakePlanner(fail_on={"make object 2 red"}), editors=fresh_editors(), calls=[])
    assert (result.generated, result.failed) == (3, 1)
    layout = RunLayout(config.out_dir)
    error = read_error(layout, "102")
    assert error is not None and not error.transient and error.code == "missing_region"
    assert is_finished(layout, "102")
    scores = json.loads(layout.scores.read_text())
    # three samples at 4.25 and one at 0: (3 · 4.25)/4 = 3.1875; weighted (3 · 3.35)/4 = 2.5125
    assert scores["aggregate"]["overall"]["overall"] == pytest.approx(3.1875)
    assert scores["aggregate"]["overall"]["weighted"] == pytest.approx(2.5125)
    # a resume does not retry a final failure
    planner = FakePlanner()
    run(config, planner=planner, editors=fresh_editors(), calls=[])
    assert planner.requests == []


def test_plan_fallback_edits_with_the_instruction(tmp_path: Path) -> None:
    config = config_for(tmp_path, plan_fallback=True)
    editors = fresh_editors()
    result = run(config, planner=FakePlanner(fail_on={"make object 2 red"}), editors=editors, calls=[])
    assert (result.generated, result.failed) == (4, 0)
    record = json.loads(RunLayout(config.out_dir).plan("102").read_text())
    assert record["plan_fallback"] is True and record["plan"]["regions"] == []


@pytest.mark.parametrize(
    ("method", "backbone", "planner_mode"),
    [
        (Method.QWEN_IMAGE_EDIT, "qwen-image-edit", None),
        (Method.FLUX_KONTEXT, "flux-kontext", None),
        (Method.FLUX_KONTEXT_REPHRASE, "flux-kontext", PlanMode.REPHRASE),
        (Method.REPLAN_QWEN_IMAGE_EDIT, "qwen-image-edit", PlanMode.REGIONS),
    ],
)
def test_methods(tmp_path: Path, method: Method, backbone: str, planner_mode: PlanMode | None) -> None:
    config = config_for(tmp_path, method)
    planner, editors = FakePlanner(), fresh_editors()
    run(config, planner=planner, editors=editors, calls=[])
    requests = [r for e in editors.values() for r in e.requests]
    assert {r.settings.backbone.value for r in requests} == {backbone}  # type: ignore[union-attr]
    if planner_mode is None:
        assert planner.requests == []
        assert all(r.instruction and r.plan is None for r in requests)
    else:
        assert {r.options.mode for r in planner.requests} == {planner_mode}
        assert all(r.plan is not None for r in requests)
        if planner_mode is PlanMode.REPHRASE:
            assert all(not r.plan.regions for r in requests)  # type: ignore[union-attr]


def test_baseline_metrics_can_use_another_runs_boxes(tmp_path: Path) -> None:
    replan = config_for(tmp_path)
    run(replan, planner=FakePlanner(), editors=fresh_editors(), calls=[])
    baseline = config_for(tmp_path, Method.FLUX_KONTEXT, metrics_boxes_from=str(replan.out_dir))
    run(baseline, planner=FakePlanner(), editors=fresh_editors(), calls=[])
    metrics = json.loads((baseline.out_dir / "100" / "metrics.json").read_text())
    # the baseline repainted the whole image, so inside the RePlan boxes it changed too, and outside a lot
    assert metrics["mean_abs_change_inside"] is not None
    assert metrics["psnr_outside_db"] < 20


def test_a_run_directory_refuses_a_different_method(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    run(config, planner=FakePlanner(), editors=fresh_editors(), calls=[])
    other = config.model_copy(update={"method": Method.FLUX_KONTEXT})
    with pytest.raises(BadRequest) as caught:
        run(other, planner=FakePlanner(), editors=fresh_editors(), calls=[])
    assert caught.value.code == "run_config_changed"


def test_yaml_config_resolves_relative_paths_and_reports_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dataset(tmp_path)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "name": "r", "dataset": "ivedit.jsonl", "method": "replan-flux-kontext", "planner_url": "http://p:8100",
        "editor_urls": ["http://e:8200"], "out_dir": "out",
        "judge": {"provider": "gemini", "model": "gemini-2.5-pro", "api_key_env": "TEST_GEMINI_KEY"},
    }))  # fmt: skip
    config = RunConfig.from_yaml(path)
    assert config.dataset == tmp_path / "ivedit.jsonl" and config.out_dir == tmp_path / "out"
    monkeypatch.delenv("TEST_GEMINI_KEY", raising=False)
    with pytest.raises(BadRequest, match="TEST_GEMINI_KEY is not set"):
        build_judge(config, RunLayout(config.out_dir))
    monkeypatch.setenv("TEST_GEMINI_KEY", "k")
    assert build_judge(config, RunLayout(config.out_dir)) is not None

    path.write_text(yaml.safe_dump({"name": "r", "dataset": "d.jsonl", "method": "replan-flux-kontext",
                                    "editor_urls": ["http://e:8200"], "out_dir": "out"}))  # fmt: skip
    with pytest.raises(BadRequest, match="needs planner_url"):
        RunConfig.from_yaml(path)
    path.write_text(yaml.safe_dump({"name": "r", "dataset": "d.jsonl", "method": "flux-kontext",
                                    "editor_urls": ["http://e:8200"], "out_dir": "out", "colour": "red"}))  # fmt: skip
    with pytest.raises(BadRequest) as caught:
        RunConfig.from_yaml(path)
    assert caught.value.param == "colour"
