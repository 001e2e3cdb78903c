"""IV-Edit benchmark runs: the run config, generating one sample, scoring one sample, the report.

A run is a directory (`replan_eval.run_layout`) made from a YAML config. Work is per sample and
idempotent, so the same functions serve the Celery tasks (one sample per task, sharded over editor
workers) and `run_local` (threads in this process, for the CLI without a broker and for tests):

* `generate_sample` plans (RePlan methods) and edits through the planner and editor services over HTTP,
  then writes ``plan.json`` and ``final_result.png`` atomically, in that order; a sample whose image
  exists is skipped. A request the services reject (4xx: an unreadable plan, a bad image) is final and
  recorded in ``error.json`` (the sample scores 0, as a missing image does in the original); a transient
  failure (service down, timeout, out of GPU memory) is raised for the caller to retry later. Each
  attempt is logged to ``attempts.jsonl`` (start, then done or error, with host and pid).
* `score_sample` computes the judge-free metrics and asks the judge for the configured dimensions; the
  per-sample judge cache makes a repeat cost nothing.
* `write_report` aggregates whatever is on disk (missing = 0) into ``scores.json``, ``report.md`` and
  ``report.html``.

Methods: ``replan-flux-kontext`` / ``replan-qwen-image-edit`` (planner → region plan → editor),
``flux-kontext`` / ``qwen-image-edit`` (the instruction straight to the editor), and
``flux-kontext-rephrase`` (the planner rewrites the instruction as one global prompt; no regions).
Every sample uses the config's seed, so results do not depend on how samples were sharded (the original
seeded with 42 + GPU rank).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import httpx
import yaml
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from replan_common.errors import BadRequest, ReplanError, Unprocessable
from replan_common.plan import RegionPlan
from replan_common.protocol import Backbone, EditRequest, EditSettings, PlanMode, PlanOptions, PlanRequest
from replan_eval.aggregate import SampleScores, aggregate
from replan_eval.dataset import Sample, load_samples
from replan_eval.editor_client import EditorClient, FailoverEditor, HttpEditorClient
from replan_eval.image_metrics import RegionMetrics, region_metrics, summarize_region_metrics
from replan_eval.judge import Dimension, Judge, JudgeCache, JudgeImage, JudgeInputs, JudgeProvider, make_judge_client
from replan_eval.planner_client import HttpPlannerClient, PlannerClient
from replan_eval.report import RunSummary, render_html, render_markdown
from replan_eval.run_layout import RunLayout, append_line, atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "Attempt",
    "JudgeConfig",
    "LocalRunResult",
    "Method",
    "RunConfig",
    "SampleRecord",
    "build_judge",
    "collect_scores",
    "generate_sample",
    "is_finished",
    "is_scored",
    "load_run",
    "prepare_run",
    "read_attempts",
    "run_local",
    "score_sample",
    "write_report",
]


class Method(str, Enum):
    REPLAN_FLUX_KONTEXT = "replan-flux-kontext"
    REPLAN_QWEN_IMAGE_EDIT = "replan-qwen-image-edit"
    FLUX_KONTEXT = "flux-kontext"
    QWEN_IMAGE_EDIT = "qwen-image-edit"
    FLUX_KONTEXT_REPHRASE = "flux-kontext-rephrase"

    @property
    def backbone(self) -> Backbone:
        qwen = (Method.REPLAN_QWEN_IMAGE_EDIT, Method.QWEN_IMAGE_EDIT)
        return Backbone.QWEN_IMAGE_EDIT if self in qwen else Backbone.FLUX_KONTEXT

    @property
    def plan_mode(self) -> PlanMode | None:
        """What the planner is asked for, or None when the method uses no planner."""
        if self in (Method.REPLAN_FLUX_KONTEXT, Method.REPLAN_QWEN_IMAGE_EDIT):
            return PlanMode.REGIONS
        if self is Method.FLUX_KONTEXT_REPHRASE:
            return PlanMode.REPHRASE
        return None


class JudgeConfig(BaseModel):
    """The judge of a run. The key is never in the YAML: name the environment variable that holds it."""

    model_config = ConfigDict(extra="forbid")

    provider: JudgeProvider = JudgeProvider.OPENAI
    base_url: str | None = None
    model: str
    api_key_env: str | None = Field(default=None, description="e.g. OPENAI_API_KEY or GEMINI_API_KEY")
    max_tokens: int = Field(default=1024, ge=16)
    timeout_s: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    dimensions: list[Dimension] = Field(default_factory=lambda: list(Dimension), min_length=1)

    def api_key(self) -> SecretStr | None:
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env)
        if not value:
            raise BadRequest(
                f"the judge's API key variable {self.api_key_env} is not set", code="missing_api_key", param="judge"
            )
        return SecretStr(value)


class RunConfig(BaseModel):
    """A benchmark run, as written in YAML. Relative paths are relative to the YAML file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    dataset: Path
    split: str | None = None
    limit: int | None = Field(default=None, ge=1, description="Only the first N samples.")
    method: Method
    planner_url: str | None = None
    editor_urls: list[str] = Field(min_length=1)
    out_dir: Path
    seed: int = Field(default=42, ge=0)
    edit: EditSettings = Field(default_factory=EditSettings, description="Overrides of the editor's defaults.")
    judge: JudgeConfig | None = None
    metrics_boxes_from: Path | None = Field(
        default=None, description="Another run whose plan boxes define 'inside' for the judge-free metrics."
    )
    plan_fallback: bool = Field(
        default=False,
        description="When the planner's output cannot be read, edit with the instruction alone (the original's "
        "behaviour) instead of scoring the sample 0.",
    )

    @field_validator("planner_url")
    @classmethod
    def _planner_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"planner_url must start with http:// or https://, got {url!r}")
        return url

    @field_validator("editor_urls")
    @classmethod
    def _editor_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"editor_urls entries must start with http:// or https://, got {url!r}")
        return urls

    @model_validator(mode="after")
    def _planner_for_planning_methods(self) -> RunConfig:
        if self.method.plan_mode is not None and self.planner_url is None:
            raise ValueError(f"method {self.method.value} needs planner_url")
        return self

    @classmethod
    def from_yaml(cls, path: Path) -> RunConfig:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise BadRequest(f"cannot read run config {path}: {exc}", code="invalid_run_config") from exc
        if not isinstance(data, dict):
            raise BadRequest(f"run config {path} is not a YAML mapping", code="invalid_run_config")
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BadRequest(
                f"run config {path}: {where}: {first['msg']} ({exc.error_count()} problem(s))",
                code="invalid_run_config",
                param=where,
            ) from exc
        return config.resolved(path.parent)

    def resolved(self, base: Path) -> RunConfig:
        """Relative paths made absolute against ``base``."""

        def absolute(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else (base / p).resolve())

        return self.model_copy(
            update={
                "dataset": absolute(self.dataset),
                "out_dir": absolute(self.out_dir),
                "metrics_boxes_from": absolute(self.metrics_boxes_from),
            }
        )

    def to_yaml(self) -> str:
        return str(yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False))


class SampleRecord(BaseModel):
    """``plan.json``: what was asked of the editor for one sample, and what it applied."""

    image_id: str
    method: Method
    instruction: str
    plan: RegionPlan = Field(description="As applied by the editor (boxes in original pixels).")
    planner_raw: str | None = None
    planner_model: str | None = None
    plan_fallback: bool = False
    timings_ms: dict[str, float] = Field(default_factory=dict)


class SampleError(BaseModel):
    """``error.json``: why a sample has no image. ``transient`` errors are retried when the run resumes."""

    code: str
    message: str
    status: int
    transient: bool


# ------------------------------------------------------------------------------------------------ runs


_IDENTITY_FIELDS = ("dataset", "split", "limit", "method", "seed", "edit")


def prepare_run(config: RunConfig) -> RunLayout:
    """Create the run directory and store the config; a resumed run must keep what defines its results."""
    layout = RunLayout(config.out_dir)
    if layout.config.is_file():
        previous = RunConfig.from_yaml(layout.config)
        changed = [f for f in _IDENTITY_FIELDS if getattr(previous, f) != getattr(config, f)]
        if changed:
            raise BadRequest(
                f"run directory {config.out_dir} holds a run with a different {', '.join(changed)}; "
                "use another out_dir, or the same settings to resume",
                code="run_config_changed",
                param=changed[0],
            )
    layout.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.config, config.to_yaml())
    return layout


def load_run(run_dir: Path) -> tuple[RunConfig, RunLayout]:
    layout = RunLayout(run_dir)
    if not layout.config.is_file():
        raise BadRequest(f"{run_dir} is not a run directory (no run.yaml)", code="not_a_run", param=str(run_dir))
    return RunConfig.from_yaml(layout.config), layout


def run_samples(config: RunConfig) -> list[Sample]:
    samples = load_samples(config.dataset, split=config.split)
    return samples[: config.limit] if config.limit else samples


def _error_path(layout: RunLayout, image_id: str) -> Path:
    return layout.sample_dir(image_id) / "error.json"


def read_error(layout: RunLayout, image_id: str) -> SampleError | None:
    path = _error_path(layout, image_id)
    try:
        return SampleError.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (ValidationError, OSError):
        return None


def is_finished(layout: RunLayout, image_id: str) -> bool:
    """Generated, or failed for good (a rejected request); transient failures are not finished."""
    if layout.is_generated(image_id):
        return True
    error = read_error(layout, image_id)
    return error is not None and not error.transient


def record_error(layout: RunLayout, image_id: str, error: ReplanError, *, transient: bool) -> None:
    body = SampleError(code=error.code, message=error.message, status=error.status, transient=transient)
    atomic_write_text(_error_path(layout, image_id), body.model_dump_json(indent=2))


def is_transient(error: ReplanError) -> bool:
    """Worth retrying later: the service is down, slow, out of memory or busy (5xx, 429)."""
    return error.status >= 500 or error.status == 429


# ------------------------------------------------------------------------------------------- generation


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Attempt(BaseModel):
    """One line of ``attempts.jsonl``: a generation attempt started, finished (``done``) or failed."""

    event: str = Field(description="start, done or error")
    at: float = Field(description="Unix time.")
    host: str
    pid: int
    code: str | None = None


def _log_attempt(layout: RunLayout, image_id: str, event: str, code: str | None = None) -> None:
    entry = Attempt(event=event, at=time.time(), host=socket.gethostname(), pid=os.getpid(), code=code)
    append_line(layout.attempts(image_id), entry.model_dump_json(exclude_none=True))


def read_attempts(layout: RunLayout, image_id: str) -> list[Attempt]:
    """The sample's attempt log (empty when it was never tried); unreadable lines are skipped."""
    path = layout.attempts(image_id)
    if not path.is_file():
        return []
    attempts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            attempts.append(Attempt.model_validate_json(line))
        except ValidationError:
            continue  # a line cut short by a crash mid-write
    return attempts


def generate_sample(
    config: RunConfig,
    sample: Sample,
    layout: RunLayout,
    *,
    editor: EditorClient,
    planner: PlannerClient | None,
) -> bool:
    """Make ``final_result.png`` for one sample. Returns False when it already existed.

    Raises:
        ReplanError: a transient failure (5xx, 429, timeouts), after recording it in ``error.json``;
            permanent failures are recorded and not raised.
    """
    if layout.is_generated(sample.image_id):
        return False
    _log_attempt(layout, sample.image_id, "start")
    image_b64 = _b64(sample.image_data())
    settings = config.edit.model_copy(update={"backbone": config.method.backbone, "seed": config.seed})
    record = SampleRecord(
        image_id=sample.image_id,
        method=config.method,
        instruction=sample.instruction,
        plan=RegionPlan(global_prompt=sample.instruction),
    )
    try:
        request = EditRequest(image=image_b64, instruction=sample.instruction, settings=settings)
        mode = config.method.plan_mode
        if mode is not None:
            assert planner is not None, "RunConfig guarantees a planner for planning methods"
            try:
                planned = planner.plan(
                    PlanRequest(image=image_b64, instruction=sample.instruction, options=PlanOptions(mode=mode))
                )
            except Unprocessable as exc:
                if not config.plan_fallback:
                    raise
                logger.warning("sample %s: unreadable plan (%s); editing with the instruction", sample.image_id, exc)
                record = record.model_copy(update={"plan_fallback": True})
            else:
                plan = (
                    planned.plan if mode is PlanMode.REGIONS else RegionPlan(global_prompt=planned.plan.global_prompt)
                )
                request = EditRequest(image=image_b64, plan=plan, settings=settings)
                record = record.model_copy(
                    update={
                        "planner_raw": planned.raw_text,
                        "planner_model": planned.model,
                        "timings_ms": {f"plan_{k}": v for k, v in planned.timings_ms.items()},
                    }
                )
        edited = editor.edit(request)
        png = base64.b64decode(edited.image.split(",", 1)[-1])
    except ReplanError as exc:
        transient = is_transient(exc)
        _log_attempt(layout, sample.image_id, "error", exc.code)
        record_error(layout, sample.image_id, exc, transient=transient)
        if transient:
            raise
        logger.warning("sample %s failed for good: %s", sample.image_id, exc)
        return True
    record = record.model_copy(
        update={
            "plan": edited.plan,
            "timings_ms": {**record.timings_ms, **{f"edit_{k}": v for k, v in edited.timings_ms.items()}},
        }
    )
    # plan.json first: an existing final_result.png always has its plan beside it.
    atomic_write_text(layout.plan(sample.image_id), record.model_dump_json(indent=2))
    atomic_write_bytes(layout.final_image(sample.image_id), png)
    _error_path(layout, sample.image_id).unlink(missing_ok=True)
    _log_attempt(layout, sample.image_id, "done")
    return True


# ---------------------------------------------------------------------------------------------- scoring


def read_record(layout: RunLayout, image_id: str) -> SampleRecord | None:
    path = layout.plan(image_id)
    try:
        return SampleRecord.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (ValidationError, OSError):
        return None


def _metric_boxes(config: RunConfig, layout: RunLayout, image_id: str) -> list[tuple[float, float, float, float]]:
    source = RunLayout(config.metrics_boxes_from) if config.metrics_boxes_from else layout
    record = read_record(source, image_id)
    return [region.bbox for region in record.plan.regions] if record else []


def is_scored(config: RunConfig, layout: RunLayout, image_id: str) -> bool:
    """Metrics written and every configured judge dimension on file (or the sample has no image)."""
    if not layout.is_generated(image_id):
        return is_finished(layout, image_id)
    if not layout.metrics(image_id).is_file():
        return False
    if config.judge is None:
        return True
    cache = JudgeCache(layout.root)
    return all(cache.path(image_id, d).is_file() for d in config.judge.dimensions)


def score_sample(config: RunConfig, sample: Sample, layout: RunLayout, *, judge: Judge | None) -> None:
    """Judge-free metrics and judge verdicts for one generated sample (cached on disk)."""
    if not layout.is_generated(sample.image_id):
        return
    edited_bytes = layout.final_image(sample.image_id).read_bytes()
    if not layout.metrics(sample.image_id).is_file():
        with Image.open(layout.final_image(sample.image_id)) as edited:
            metrics = region_metrics(sample.load_image(), edited, _metric_boxes(config, layout, sample.image_id))
        atomic_write_text(layout.metrics(sample.image_id), json.dumps(asdict(metrics), indent=2))
    if judge is not None and config.judge is not None:
        inputs = JudgeInputs(
            instruction=sample.instruction,
            referring_expression=sample.referring_expression,
            original=JudgeImage.from_bytes(sample.image_data()),
            edited=JudgeImage.from_bytes(edited_bytes),
        )
        judge.evaluate_many(inputs, config.judge.dimensions, sample_key=sample.image_id)


def build_judge(config: RunConfig, layout: RunLayout, *, transport: httpx.BaseTransport | None = None) -> Judge | None:
    """The run's judge with its cache in the run directory; None when the run has no judge."""
    jc = config.judge
    if jc is None or jc.provider is JudgeProvider.NONE:
        return None
    try:
        client = make_judge_client(
            jc.provider,
            model=jc.model,
            base_url=jc.base_url,
            api_key=jc.api_key(),
            max_tokens=jc.max_tokens,
            timeout_s=jc.timeout_s,
            max_attempts=jc.max_attempts,
            transport=transport,
        )
    except ValueError as exc:
        raise BadRequest(f"run config judge: {exc}", code="invalid_run_config", param="judge") from exc
    return Judge(client, cache=JudgeCache(layout.root))


# ----------------------------------------------------------------------------------------------- report


def collect_scores(config: RunConfig, samples: Sequence[Sample], layout: RunLayout) -> list[SampleScores]:
    """Every sample's verdicts as on disk; missing images and verdicts count as 0 downstream."""
    cache = JudgeCache(layout.root)
    scores = []
    for sample in samples:
        verdicts = {d: v for d in Dimension if (v := cache.read(sample.image_id, d)) is not None}
        scores.append(
            SampleScores.from_verdicts(
                sample.image_id, verdicts, task_type=sample.task_type, referring_type=sample.referring_type
            )
        )
    return scores


def _read_metrics(layout: RunLayout, samples: Sequence[Sample]) -> list[RegionMetrics]:
    out = []
    for sample in samples:
        path = layout.metrics(sample.image_id)
        if path.is_file():
            out.append(RegionMetrics(**json.loads(path.read_text(encoding="utf-8"))))
    return out


def write_report(config: RunConfig, samples: Sequence[Sample], layout: RunLayout) -> RunSummary:
    """Aggregate what is on disk into ``scores.json``, ``report.md`` and ``report.html``."""
    scores = collect_scores(config, samples, layout)
    metrics = _read_metrics(layout, samples)
    judge_name = f"{config.judge.provider.value}:{config.judge.model}" if config.judge else "none"
    summary = RunSummary(
        name=config.name,
        method=config.method.value,
        judge=judge_name,
        aggregate=aggregate(scores),
        metrics=summarize_region_metrics(metrics) if metrics else None,
    )
    body = {
        "name": config.name,
        "method": config.method.value,
        "judge": judge_name,
        "samples": len(samples),
        "generated": sum(layout.is_generated(s.image_id) for s in samples),
        "aggregate": asdict(summary.aggregate),
        "metrics": asdict(summary.metrics) if summary.metrics else None,
        "per_sample": [{**asdict(s), "overall": s.overall, "weighted": s.weighted} for s in scores],
    }
    atomic_write_text(layout.scores, json.dumps(body, indent=2))
    atomic_write_text(layout.report_md, render_markdown([summary]))
    atomic_write_text(layout.report_html, render_html([summary]))
    return summary


# -------------------------------------------------------------------------------------------- local run


@dataclass(frozen=True)
class LocalRunResult:
    generated: int
    skipped: int
    failed: int
    summary: RunSummary


def run_local(
    config: RunConfig,
    *,
    max_workers: int = 4,
    editor_factory: Callable[[str], EditorClient] | None = None,
    planner: PlannerClient | None = None,
    judge: Judge | None = None,
    on_progress: Callable[[str, str], None] | None = None,
) -> LocalRunResult:
    """The whole run in this process: generate (sharded over the editors), score, report. Resumable."""
    layout = prepare_run(config)
    samples = run_samples(config)
    make_editor = editor_factory or (lambda url: HttpEditorClient(url))
    editors = [make_editor(url) for url in config.editor_urls]
    if planner is None and config.planner_url is not None:
        planner = HttpPlannerClient(config.planner_url)
    if judge is None:
        judge = build_judge(config, layout)
    notify = on_progress or (lambda _stage, _id: None)
    counts = {"generated": 0, "skipped": 0, "failed": 0}
    lock = threading.Lock()

    def count(key: str) -> None:
        with lock:
            counts[key] += 1

    def generate(index_sample: tuple[int, Sample]) -> None:
        index, sample = index_sample
        if is_finished(layout, sample.image_id):
            count("skipped")
        else:
            try:
                made = generate_sample(
                    config, sample, layout, editor=FailoverEditor.for_shard(editors, index), planner=planner
                )
                count("generated" if made and layout.is_generated(sample.image_id) else "failed")
            except ReplanError as exc:
                logger.warning("sample %s: transient failure, left for the next resume: %s", sample.image_id, exc)
                count("failed")
        notify("generate", sample.image_id)
        score_sample(config, sample, layout, judge=judge)
        notify("score", sample.image_id)

    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="bench") as pool:
        list(pool.map(generate, enumerate(samples)))
    summary = write_report(config, samples, layout)
    return LocalRunResult(counts["generated"], counts["skipped"], counts["failed"], summary)
