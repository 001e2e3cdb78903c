"""Both job stores against one contract: state machine, result, ordered event log, TTL, and races.

Redis runs as the private test server (`redis_url`); SQLite is a file shared with other processes.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from replan_common.errors import BadRequest
from replan_common.jobs import InvalidTransition, JobConflict, JobKind, JobRecord, JobSpec, JobStatus, new_job_id
from replan_common.jobs.redis_store import RedisJobStore
from replan_common.jobs.settings import open_job_store
from replan_common.jobs.sqlite_store import SqliteJobStore
from replan_common.jobs.store import JobStore
from replan_common.plan import RegionPlan
from replan_common.protocol import EditResponse, EditSettings, PlanResponse, ProgressEvent, ProgressStage

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        made: JobStore = RedisJobStore(url, prefix=f"test:{uuid.uuid4().hex[:8]}:")
    else:
        made = SqliteJobStore(tmp_path / "jobs.sqlite")
    yield made
    made.close()


def _record(kind: JobKind = JobKind.REPLAN) -> JobRecord:
    spec = JobSpec(kind=kind, image="aGVsbG8=", instruction="make the sky pink")
    return JobRecord(id=new_job_id(), kind=kind, spec=spec, owner="key-1", request_id="req-1")


def _plan() -> PlanResponse:
    plan = RegionPlan(global_prompt="pink sky")
    return PlanResponse(plan=plan, raw_text="<gen_image>pink sky</gen_image>", model="m")


def _result() -> EditResponse:
    return EditResponse(
        image="aGVsbG8=", width=8, height=8, plan=RegionPlan(global_prompt="pink sky"), settings=EditSettings()
    )


def test_a_new_job_is_queued_with_its_first_event(store: JobStore) -> None:
    record = store.create(_record())
    got = store.require(record.id)
    assert got.status is JobStatus.QUEUED
    assert got.owner == "key-1" and got.request_id == "req-1"
    assert got.spec.instruction == "make the sky pink"
    assert [e.stage for e in store.events(record.id)] == [ProgressStage.QUEUED]
    assert store.get("job_missing") is None


def test_a_job_walks_the_state_machine_and_keeps_its_plan_and_result(store: JobStore) -> None:
    job_id = store.create(_record()).id
    assert store.start_attempt(job_id) == 1
    store.transition(job_id, JobStatus.PLANNING, message="planning")
    store.save_plan(job_id, _plan())
    for step in (1, 2):
        store.record_progress(job_id, ProgressEvent(job_id="x", stage=ProgressStage.STEP, step=step, total=2))
    store.finish(job_id, _result())
    record = store.require(job_id)
    assert record.status is JobStatus.DONE
    assert record.plan is not None and record.plan.plan.global_prompt == "pink sky"
    assert record.result is not None and record.result.width == 8
    events = store.events(job_id)
    assert [(e.stage.value, e.step) for e in events] == [
        ("queued", None),
        ("planning", None),
        ("editing", None),
        ("step", 1),
        ("step", 2),
        ("done", None),
    ]
    assert all(e.job_id == job_id for e in events)
    assert [e.status.value for e in events][-1] == "done"


def test_a_finished_job_cannot_finish_again_or_be_cancelled(store: JobStore) -> None:
    job_id = store.create(_record(JobKind.EDIT)).id
    store.transition(job_id, JobStatus.EDITING)
    store.finish(job_id, _result())
    with pytest.raises(InvalidTransition) as raised:
        store.finish(job_id, _result())
    assert raised.value.current is JobStatus.DONE
    with pytest.raises(JobConflict) as conflict:
        store.cancel(job_id)
    assert conflict.value.status == 409 and conflict.value.code == "job_already_finished"
    assert [e.stage for e in store.events(job_id)].count(ProgressStage.DONE) == 1


def test_cancelling_stops_progress_and_is_idempotent(store: JobStore) -> None:
    job_id = store.create(_record()).id
    store.transition(job_id, JobStatus.EDITING)
    assert store.cancel(job_id).status is JobStatus.CANCELLED
    assert store.cancel(job_id).status is JobStatus.CANCELLED
    with pytest.raises(InvalidTransition):
        store.record_progress(job_id, ProgressEvent(job_id=job_id, stage=ProgressStage.STEP, step=1, total=2))
    with pytest.raises(InvalidTransition):
        store.finish(job_id, _result())
    with pytest.raises(InvalidTransition):
        store.start_attempt(job_id)


def test_a_second_attempt_is_counted_and_logged(store: JobStore) -> None:
    job_id = store.create(_record()).id
    assert store.start_attempt(job_id) == 1
    store.transition(job_id, JobStatus.PLANNING)
    assert store.start_attempt(job_id) == 2
    assert store.require(job_id).attempts == 2
    last = store.events(job_id)[-1]
    assert last.stage is ProgressStage.PLANNING and "attempt 2" in (last.message or "")


def test_events_replay_from_any_id(store: JobStore) -> None:
    job_id = store.create(_record()).id
    store.transition(job_id, JobStatus.PLANNING)
    store.save_plan(job_id, _plan())
    events = store.events(job_id)
    assert [e.id for e in store.events(job_id, after=events[0].id)] == [e.id for e in events[1:]]
    assert store.events(job_id, after=events[-1].id) == []
    with pytest.raises(BadRequest):
        store.events(job_id, after="not-an-id")


def test_jobs_expire_after_their_ttl(store: JobStore) -> None:
    store.ttl_s = 1
    job_id = store.create(_record()).id
    assert store.get(job_id) is not None
    time.sleep(2.1)
    assert store.get(job_id) is None


def test_only_one_of_many_racing_finishers_wins(store: JobStore) -> None:
    job_id = store.create(_record()).id
    store.transition(job_id, JobStatus.EDITING)
    wins: list[int] = []

    def finisher(n: int) -> None:
        try:
            store.finish(job_id, _result())
            wins.append(n)
        except InvalidTransition:
            pass

    threads = [threading.Thread(target=finisher, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1
    assert [e.stage for e in store.events(job_id)].count(ProgressStage.DONE) == 1


def _finish_in_another_process(url: str, job_id: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    other = open_job_store(url)
    try:
        other.finish(job_id, _result())
        out.put("won")
    except InvalidTransition:
        out.put("lost")


def test_sqlite_store_is_safe_across_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    store = open_job_store(url)
    job_id = store.create(_record()).id
    store.transition(job_id, JobStatus.EDITING)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    processes = [context.Process(target=_finish_in_another_process, args=(url, job_id, out)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    outcomes = sorted(out.get(timeout=5) for _ in processes)
    assert outcomes == ["lost", "lost", "won"]
    assert store.require(job_id).status is JobStatus.DONE


def test_active_jobs_are_listed_until_they_finish(store: JobStore) -> None:
    first, second, third = (store.create(_record()).id for _ in range(3))
    store.transition(second, JobStatus.PLANNING)
    assert store.active_job_ids() == [first, second, third]
    store.transition(first, JobStatus.EDITING)
    store.finish(first, _result())
    store.cancel(third)
    assert store.active_job_ids() == [second]
