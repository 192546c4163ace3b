import time

from backend.jobs import Job, JobStore

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
    assert store.get("waiting").state == "queued"


def test_a_restart_requeues_in_submission_order_and_drops_half_written_jobs(tmp_path):
    store = JobStore(tmp_path)
    for job_id in ("first", "second", "third"):
        store.add(new_job(job_id), playblast(frames=2))
    running = store.next_job()
    assert running.job_id == "first" and store.position("second") == 1
    (tmp_path / ".incoming-crashed-1234").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{ not json")

    again = JobStore(tmp_path)
    assert again.queue == ["first", "second", "third"]
    assert again.get("first").state == "queued"
    assert not (tmp_path / ".incoming-crashed-1234").exists()
    assert again.get("broken") is None and (tmp_path / "broken").exists()  # left for the operator


def test_source_and_result_frames_round_trip(tmp_path):
    store = JobStore(tmp_path)
    frames = playblast(frames=3)
    store.add(new_job("j"), frames)
    assert store.source_frames("j") == frames
    store.finish(store.get("j"), "done", frames=frames[::-1], stats={"seconds": 1.0})
    assert JobStore(tmp_path).result_frames("j") == frames[::-1]
    assert JobStore(tmp_path).get("j").stats == {"seconds": 1.0}
