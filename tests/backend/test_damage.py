"""Damage on the backend's disk: a result that changed since it was written is refused on fetch,
and a manifest that cannot be trusted is set aside at start, never fatal to the other jobs."""

import json
import logging

import pytest

from backend.jobs import QUARANTINE, Job, JobStore
from protocol import errors as codes
from protocol.states import JobState

from .conftest import FAST, Backend, playblast
from .test_server import error_reply, fetched, until_state


def done_job(root, job_id: str) -> list[bytes]:
    """A done job on disk with a 3-frame result; returns the result's frames."""
    store = JobStore(root)
    store.add(Job(job_id=job_id, prompt="a ball", frame_count=3, width=48, height=32), playblast(frames=3))
    frames = playblast(frames=3, shift=4)
    store.finish(store.next_job(), "done", frames=frames, stats={"seconds": 1.0})
    return frames


def test_each_result_frame_is_recorded_with_its_size_and_checksum(tmp_path):
    frames = done_job(tmp_path, "j")
    records = json.loads((tmp_path / "j" / "manifest.json").read_text())["result_files"]
    assert [r["size"] for r in records] == [len(f) for f in frames] and all(len(r["sha256"]) == 64 for r in records)


@pytest.mark.parametrize(
    "damage, says",
    [
        (
            lambda result: (result / "frame_0002.png").write_bytes((result / "frame_0002.png").read_bytes()[:100]),
            "frame 2 is 100 bytes, not",
        ),
        (lambda result: (result / "frame_0003.png").unlink(), "2 of its 3 frames are there"),
        (
            lambda result: (result / "frame_0001.png").write_bytes(
                bytes(len((result / "frame_0001.png").read_bytes()))
            ),
            "frame 1 was changed",
        ),
        (lambda result: (result / "frame_0004.png").write_bytes(b"\x89PNG"), "4 of its 3 frames are there"),
    ],
)
def test_a_damaged_result_is_refused_on_fetch_with_the_frame_named(backend, damage, says):
    client = backend.client()
    for job_id in ("damaged", "intact"):
        client.submit(job_id, playblast(frames=3, shift=len(job_id)), "a ball", settings=FAST)
        assert until_state(client, job_id).state == JobState.DONE
    damage(backend.root / "damaged" / "result")
    client.fetch("damaged")
    error = error_reply(client)
    assert (error.code, error.field, error.job_id) == (codes.DAMAGED_RESULT, "job_id", "damaged")
    assert says in error.message and "damaged on the backend's disk" in error.message
    assert len(fetched(client, "intact")[1]) == 3  # the backend carries on


MANIFEST = {
    "job_id": "bad",
    "prompt": "a ball",
    "frame_count": 3,
    "width": 48,
    "height": 32,
    "state": "done",
    "submitted": 1.0,
    "finished": 2.0,
}
DAMAGED = {
    "text submitted": (json.dumps({**MANIFEST, "submitted": "yesterday"}), "field 'submitted' is \"yesterday\""),
    "null finished on a done job": (json.dumps({**MANIFEST, "finished": None}), "field 'finished' is null"),
    "numeric job_id": (json.dumps({**MANIFEST, "job_id": 7}), "field 'job_id' is 7, not text"),
    "100000-deep nesting": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "invalid JSON": ('{"job_id": "bad", ', "manifest.json cannot be read"),
    "a list": ("[1, 2]", "holds a list, not a map"),
    "boolean frame_count": (json.dumps({**MANIFEST, "frame_count": True}), "field 'frame_count' is true"),
    "unknown state": (
        json.dumps({**MANIFEST, "state": "exploded"}),
        "field 'state' is \"exploded\", not one of queued, running, done, failed, cancelled",
    ),
    "done without a finishing time": (json.dumps({**MANIFEST, "finished": 0}), "done but has no finishing time"),
    "another job's id": (json.dumps({**MANIFEST, "job_id": "other"}), "is not its folder's name"),
    "no manifest": (None, "it has no manifest.json"),
}


@pytest.mark.parametrize("name", DAMAGED)
def test_a_damaged_manifest_is_quarantined_with_its_reason_and_the_rest_load(tmp_path, caplog, name):
    text, reason = DAMAGED[name]
    frames = done_job(tmp_path, "good")
    (tmp_path / "bad" / "source").mkdir(parents=True)
    if text is not None:
        (tmp_path / "bad" / "manifest.json").write_text(text)
    with caplog.at_level(logging.WARNING, logger="flowmotion.backend"):
        store = JobStore(tmp_path)
    assert store.get("bad") is None and not (tmp_path / "bad").exists()
    [aside] = (tmp_path / QUARANTINE).iterdir()
    assert aside.name.startswith("bad-") and reason in (aside / "QUARANTINED.txt").read_text()
    assert text is None or (aside / "manifest.json").read_text() == text  # kept as it was found
    assert reason in caplog.text and "moved to" in caplog.text
    assert store.result_frames("good") == frames
    assert JobStore(tmp_path).get("good").state == JobState.DONE  # a second start finds nothing more to set aside


def test_a_backend_starts_on_a_store_full_of_damaged_manifests_and_serves_the_rest(pipe, tmp_path):
    root = tmp_path / "jobs"
    frames = done_job(root, "good")
    for number, (text, _) in enumerate(DAMAGED.values()):
        (root / f"bad{number}" / "source").mkdir(parents=True)
        if text is not None:
            (root / f"bad{number}" / "manifest.json").write_text(text.replace('"bad"', f'"bad{number}"'))
    live = Backend(pipe, root).start()
    try:
        client = live.client()
        assert fetched(client, "good")[1] == frames
        client.status("bad0")
        assert error_reply(client).code == codes.UNKNOWN_JOB
        assert len(list((root / QUARANTINE).iterdir())) == len(DAMAGED)
    finally:
        live.stop()


def test_a_stored_job_whose_settings_this_release_refuses_fails_with_the_setting_named(pipe, tmp_path):
    root = tmp_path / "jobs"
    store = JobStore(root)
    store.add(
        Job(job_id="old", prompt="a ball", frame_count=5, width=48, height=32, settings={"num_inference_steps": 2.5}),
        playblast(frames=5),
    )
    live = Backend(pipe, root).start()
    try:
        client = live.client()
        client.status("old")
        failed = until_state(client, "old")
        assert failed.state == JobState.FAILED
        assert "num_inference_steps must be an integer from 1 to 1000" in failed.message
        client.submit("new", playblast(), "a ball", settings=FAST)
        assert until_state(client, "new").state == JobState.DONE
    finally:
        live.stop()


def test_a_folder_that_is_no_job_is_left_where_it_is(tmp_path, caplog):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("the operator's")
    with caplog.at_level(logging.WARNING, logger="flowmotion.backend"):
        assert JobStore(tmp_path).listing() == []
    assert (tmp_path / "notes" / "todo.txt").exists() and not (tmp_path / QUARANTINE).exists()
    assert "is not a job folder" in caplog.text
