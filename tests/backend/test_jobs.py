import json
import threading
import time

import pytest

from backend.jobs import Job, JobStore
from protocol.states import JobState

from .conftest import playblast


def new_job(job_id: str) -> Job:
    return Job(job_id=job_id, prompt="a ball", frame_count=2, width=48, height=32)


def test_finished_jobs_expire_and_active_ones_never_do(tmp_path):
    store = JobStore(tmp_path, expire_after=3600)
    for job_id in ("old", "fresh", "waiting"):
        store.add(new_job(job_id), playblast(frames=2))
    store.finish(store.get("old"), "done", frames=playblast(frames=2))
    store.finish(store.get("fresh"), "failed", "reason")
    store.get("old").finished = time.time() - 7200
    assert store.expire() == ["old"]
    assert not (tmp_path / "old").exists() and store.get("fresh") and store.get("waiting")
    assert store.expire(now=time.time() + 10 * 86400) == ["fresh"]
    assert store.get("waiting").state == JobState.QUEUED


def test_a_jobs_state_and_place_are_read_together_while_the_worker_takes_jobs(tmp_path):
    store = JobStore(tmp_path)
    ids = [f"job{n:03d}" for n in range(60)]
    for job_id in ids:
        store.add(new_job(job_id), playblast(frames=1))
    assert store.standing("job001") == (JobState.QUEUED, 2)
    taker = threading.Thread(target=lambda: [store.next_job() for _ in ids])
    taker.start()
    seen = set()
    while taker.is_alive() or not seen:
        for job_id in ids[::7]:
            state, position = store.standing(job_id)
            seen.add((state, position > 0))
    taker.join()
    # Never 'queued' with no place in the queue, never 'running' with one.
    assert seen <= {(JobState.QUEUED, True), (JobState.RUNNING, False)}
    assert store.standing(ids[-1]) == (JobState.RUNNING, 0)


def test_a_restart_requeues_in_submission_order_and_drops_half_written_jobs(tmp_path):
    store = JobStore(tmp_path)
    for job_id in ("first", "second", "third"):
        store.add(new_job(job_id), playblast(frames=2))
    running = store.next_job()
    assert running.job_id == "first" and store.position("second") == 1
    (tmp_path / ".incoming-crashed-1234").mkdir()  # as a release before `flowmotion.durable` left it
    (tmp_path / ".staging-crashed-5678").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{ not json")

    again = JobStore(tmp_path)
    assert again.queue == ["first", "second", "third"]
    assert again.get("first").state == JobState.QUEUED
    assert not (tmp_path / ".incoming-crashed-1234").exists() and not (tmp_path / ".staging-crashed-5678").exists()
    assert again.get("broken") is None and not (tmp_path / "broken").exists()
    assert [p.name[:7] for p in (tmp_path / ".quarantine").iterdir()] == ["broken-"]  # set aside, not deleted


def test_source_and_result_frames_round_trip(tmp_path):
    store = JobStore(tmp_path)
    frames = playblast(frames=3)
    store.add(new_job("j"), frames)
    assert store.source_frames("j") == frames
    store.finish(store.get("j"), "done", frames=frames[::-1], stats={"seconds": 1.0})
    assert JobStore(tmp_path).result_frames("j") == frames[::-1]
    assert JobStore(tmp_path).get("j").stats == {"seconds": 1.0}


def test_a_cancel_asked_while_running_survives_a_restart_as_cancelled(tmp_path):
    store = JobStore(tmp_path)
    store.add(new_job("running"), playblast(frames=2))
    store.add(new_job("waiting"), playblast(frames=2))
    assert store.next_job().job_id == "running"
    assert store.cancel("running") == "running" and store.get("running").cancel_requested
    assert store.cancel("waiting") == "cancelled" and store.queue == []

    again = JobStore(tmp_path)
    assert again.get(JobState.RUNNING).state == JobState.CANCELLED and again.queue == []
    assert again.cancel("running") == "cancelled"  # an ended job stays as it is


def test_an_ended_job_is_in_memory_even_when_its_manifest_cannot_be_written(tmp_path, monkeypatch):
    store = JobStore(tmp_path)
    store.add(new_job("j"), playblast(frames=2))
    job = store.next_job()

    def disk_full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "save", disk_full)
    with pytest.raises(OSError):
        store.finish(job, "failed", "reason")
    assert store.get("j").state == JobState.FAILED and store.running() is None


NOW = time.time()
MANIFEST_BEFORE_THE_ENUM = {
    "job_id": "old",
    "prompt": "a red ball on grass",
    "frame_count": 2,
    "width": 32,
    "height": 32,
    "negative_prompt": "",
    "seed": 3,
    "shot": "shot010",
    "fps": 24.0,
    "settings": {},
    "mask_count": 0,
    "request_digest": "",
    "state": "done",
    "message": "",
    "submitted": NOW,
    "started": NOW,
    "finished": NOW,
    "stats": {},
    "cancel_requested": False,
    "attempts": 1,
    "result_files": None,
    "owner": "",
}


@pytest.mark.parametrize("state", [s.value for s in JobState])
def test_a_manifest_written_before_the_enum_still_loads(tmp_path, state):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({**MANIFEST_BEFORE_THE_ENUM, "state": state}))
    job = JobStore(tmp_path).get("old")
    assert type(job.state) is JobState and not (tmp_path / ".quarantine").exists()
    # An active job is brought back to queued at start-up; an ended one keeps its state.
    assert job.state == (JobState.QUEUED if state in ("queued", "running") else state)


def test_a_saved_manifest_spells_the_state_as_before(tmp_path):
    store = JobStore(tmp_path)
    store.add(Job(job_id="new", prompt="a cube", frame_count=1, width=8, height=8), [b"png"])
    assert json.loads((tmp_path / "new" / "manifest.json").read_text())["state"] == "queued"


def test_a_leftover_that_cannot_be_removed_costs_a_warning_not_the_start(tmp_path, monkeypatch, caplog):
    from flowmotion import durable

    JobStore(tmp_path).add(new_job("kept"), playblast(frames=2))

    def refused(folder):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(durable, "remove_leftovers", refused)
    store = JobStore(tmp_path)
    assert store.queue == ["kept"] and "cannot remove what a killed backend left" in caplog.text
