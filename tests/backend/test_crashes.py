"""Crashes and full disks: a backend killed at any step, or refused a write, loses, repeats or strands no job.

The kills are real: a child process works on the job store and SIGKILLs itself at the named point;
this process then opens the store as the next backend start would.
"""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from backend import jobs, worker
from backend.jobs import ENDING_POINTS, MAX_ATTEMPTS, QUARANTINE, STOPPED_WHILE_RUNNING, Job, JobStore
from protocol.messages import PROTOCOL_VERSION
from protocol.states import JobState

from .conftest import FAST, TIMEOUT, Backend, playblast, welcomed
from .test_server import fetched, until_state

REPO = Path(__file__).resolve().parents[2]
CHILD_ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}

END_AND_DIE = """
import os, signal, sys
from backend import jobs
root, point, state = sys.argv[1:4]
store = jobs.JobStore(root)
job = store.next_job()
jobs.reached = lambda at: os.kill(os.getpid(), signal.SIGKILL) if at == point else None
if point == "before the ending":
    os.kill(os.getpid(), signal.SIGKILL)
if state == "done":
    store.finish(job, "done", frames=store.source_frames(job.job_id)[::-1], stats={"seconds": 1.0})
else:
    store.finish(job, state, "the reason")
sys.exit(3)
"""

RUN_AND_DIE = """
import os, queue, signal, sys
import flowmotion
from backend.jobs import JobStore
from backend.worker import Worker
store = JobStore(sys.argv[1])
if not store.queue:
    sys.exit(0)
flowmotion.run_transfer = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)  # as an abort in a job would
Worker(None, store, queue.Queue()).run()
"""


def run_child(script: str, *args) -> int:
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], env=CHILD_ENV, timeout=120, capture_output=True
    ).returncode


def new_job(job_id: str, frames: int = 3) -> Job:
    return Job(job_id=job_id, prompt="a ball", frame_count=frames, width=48, height=32)


def on_disk(root: Path, job_id: str) -> dict:
    return json.loads((root / job_id / "manifest.json").read_text())


def test_the_ending_points_are_the_steps_a_done_ending_passes(tmp_path, monkeypatch):
    passed = []
    monkeypatch.setattr(jobs, "reached", passed.append)
    store = JobStore(tmp_path)
    store.add(new_job("j"), playblast(frames=3))
    store.finish(store.next_job(), "done", frames=playblast(frames=3))
    assert tuple(passed) == ENDING_POINTS


@pytest.mark.parametrize("point", ["before the ending", *ENDING_POINTS])
def test_a_kill_at_any_point_of_a_done_ending_leaves_the_job_queued_or_done(tmp_path, point):
    source = playblast(frames=3)
    JobStore(tmp_path).add(new_job("j"), source)
    assert run_child(END_AND_DIE, tmp_path, point, "done") == -signal.SIGKILL

    store = JobStore(tmp_path)
    job = store.get("j")
    # The result was in place: the restart finishes the job from it.
    if point in ENDING_POINTS[ENDING_POINTS.index("result in place") :]:
        assert job.state == JobState.DONE and on_disk(tmp_path, "j")["state"] == JobState.DONE
        assert job.stats == {"seconds": 1.0} and job.attempts == 1
    else:  # nothing was committed: the job runs again, as its second attempt
        assert (job.state, job.attempts, store.queue) == (JobState.QUEUED, 1, ["j"])
        assert not (tmp_path / "j" / "result").exists() and not list((tmp_path / "j").glob(".staging-*"))
        store.finish(store.next_job(), "done", frames=source[::-1], stats={"seconds": 1.0})
    assert store.result_frames("j") == source[::-1]
    assert JobStore(tmp_path).result_frames("j") == source[::-1]
    assert not [p.name for p in (tmp_path / "j").iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.parametrize("state", [JobState.FAILED, JobState.CANCELLED])
def test_a_kill_after_a_failed_or_cancelled_ending_keeps_it(tmp_path, state):
    JobStore(tmp_path).add(new_job("j"), playblast(frames=3))
    assert run_child(END_AND_DIE, tmp_path, "manifest saved", state) == -signal.SIGKILL
    job = JobStore(tmp_path).get("j")
    assert (job.state, job.message) == (state, "the reason")


def test_a_job_that_kills_the_backend_runs_twice_then_fails_and_never_loops(pipe, tmp_path):
    root = tmp_path / "jobs"
    JobStore(root).add(new_job("poison", frames=5), playblast(frames=5))
    exits = []
    while len(exits) < MAX_ATTEMPTS + 3 and (not exits or exits[-1] == -signal.SIGKILL):
        exits.append(run_child(RUN_AND_DIE, root))
    # It took the backend down twice; the third start fails it instead of running it again.
    assert exits == [-signal.SIGKILL] * MAX_ATTEMPTS + [0]
    poison = JobStore(root).get("poison")
    assert poison.state == JobState.FAILED and poison.message.startswith(STOPPED_WHILE_RUNNING)
    assert f"({MAX_ATTEMPTS} times" in poison.message and poison.attempts == MAX_ATTEMPTS

    live = Backend(pipe, root).start()
    try:
        client = live.client()
        client.status("poison")
        assert until_state(client, "poison").message.startswith(STOPPED_WHILE_RUNNING)
        client.submit("after", playblast(), "a ball", settings=FAST)
        assert until_state(client, "after").state == JobState.DONE
    finally:
        live.stop()


def test_a_clean_shutdown_puts_the_running_job_back_without_counting_it(tmp_path):
    store = JobStore(tmp_path)
    store.add(new_job("a"), playblast(frames=3))
    store.add(new_job("b"), playblast(frames=3))
    job = store.next_job()
    store.put_back(job)
    assert (store.queue, job.state, job.attempts) == (["a", "b"], JobState.QUEUED, 0)
    assert JobStore(tmp_path).get("a").attempts == 0


class FullDisk:
    """Makes every manifest write of an existing job fail as a full disk would, while `full` is set."""

    def __init__(self, monkeypatch, only_for=lambda manifest: True):
        self.full = threading.Event()
        self.refusals = 0
        self.refused = threading.Condition()
        original = jobs._write_json

        def write(path: Path, data: dict) -> None:
            if (
                self.full.is_set()
                and path.name == "manifest.json"
                and not path.parent.name.startswith(".")
                and only_for(data)
            ):
                with self.refused:
                    self.refusals += 1
                    self.refused.notify_all()
                raise OSError(errno.ENOSPC, "No space left on device")
            original(path, data)

        monkeypatch.setattr(jobs, "_write_json", write)

    def wait_for_refusals(self, count: int) -> None:
        with self.refused:
            assert self.refused.wait_for(lambda: self.refusals >= count, TIMEOUT)


def test_a_job_taken_while_the_disk_is_full_stays_first_in_the_queue(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch)
    store = JobStore(tmp_path)
    store.add(new_job("a"), playblast(frames=3))
    store.add(new_job("b"), playblast(frames=3))
    disk.full.set()
    with pytest.raises(OSError):
        store.next_job()
    assert (store.queue, store.get("a").state, store.get("a").attempts, store.running()) == (
        ["a", "b"],
        JobState.QUEUED,
        0,
        None,
    )
    assert JobStore(tmp_path).get("a").state == JobState.QUEUED
    disk.full.clear()
    assert store.next_job().job_id == "a" and on_disk(tmp_path, "a")["state"] == JobState.RUNNING


def test_an_ending_the_disk_refused_is_saved_once_there_is_room(tmp_path, monkeypatch):
    disk = FullDisk(monkeypatch)
    store = JobStore(tmp_path)
    store.add(new_job("j"), playblast(frames=3))
    job = store.next_job()
    disk.full.set()
    with pytest.raises(OSError):
        store.finish(job, "failed", "the reason")
    store.save_pending()  # still full: nothing changes, nothing raises
    assert store.get("j").state == JobState.FAILED and on_disk(tmp_path, "j")["state"] == JobState.RUNNING
    disk.full.clear()
    store.save_pending()
    assert on_disk(tmp_path, "j")["state"] == JobState.FAILED and not store.unsaved
    assert JobStore(tmp_path).get("j").message == "the reason"


def heartbeat_from(address: str) -> dict:
    """The next heartbeat a fresh connection gets (a ping puts it on the backend's list)."""
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(address)
    try:
        dealer.send_multipart([msgpack.packb({"type": "ping", "v": PROTOCOL_VERSION})])
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if dealer.poll(100):
                header = msgpack.unpackb(dealer.recv_multipart()[0])
                if header["type"] == "heartbeat":
                    return header
        raise AssertionError("no heartbeat")
    finally:
        dealer.close(0)


def test_a_live_backend_whose_disk_is_full_keeps_the_job_queued_and_says_so(backend, monkeypatch):
    disk = FullDisk(monkeypatch)
    monkeypatch.setattr(worker, "RETRY_AFTER", 0.05)
    client = backend.client()
    welcomed(client)  # the client holds requests until the backend has greeted it
    disk.full.set()
    client.submit("waiting", playblast(), "a ball", settings=FAST)
    disk.wait_for_refusals(2)  # the worker tried, put the job back, and tried again
    beat = heartbeat_from(backend.address)
    assert beat["running"] is None and beat["queue_length"] == 1
    client.status("waiting")
    assert until_state(client, "waiting", (JobState.QUEUED,)).position == 1
    disk.full.clear()
    assert until_state(client, "waiting").state == JobState.DONE
    assert len(fetched(client, "waiting")[1]) == 5


def test_a_result_committed_as_the_disk_fills_is_served_and_its_manifest_saved_later(backend, monkeypatch):
    disk = FullDisk(monkeypatch, only_for=lambda manifest: manifest["state"] == JobState.DONE)
    disk.full.set()
    client = backend.client()
    client.submit("j", playblast(), "a ball", settings=FAST)
    assert until_state(client, "j").state == JobState.DONE
    assert len(fetched(client, "j")[1]) == 5
    assert on_disk(backend.root, "j")["state"] == JobState.RUNNING
    assert JobStore(backend.root).get("j").state == JobState.DONE
    disk.full.clear()
    deadline = time.monotonic() + TIMEOUT
    while on_disk(backend.root, "j")["state"] != JobState.DONE and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker writes refused manifests again between jobs
    assert on_disk(backend.root, "j")["state"] == JobState.DONE


@pytest.mark.parametrize(
    "ending",
    [
        '{"state": "done"',
        json.dumps({"state": "done", "message": "", "finished": 1.0, "stats": {}, "result_files": [{"size": "big"}]}),
    ],
)
def test_a_result_whose_ending_record_is_damaged_is_not_trusted_and_the_job_runs_again(tmp_path, ending):
    source = playblast(frames=3)
    JobStore(tmp_path).add(new_job("j"), source)
    assert run_child(END_AND_DIE, tmp_path, "result in place", "done") == -signal.SIGKILL
    (tmp_path / "j" / "result" / "ending.json").write_text(ending)
    store = JobStore(tmp_path)
    assert (store.get("j").state, store.queue) == (JobState.QUEUED, ["j"]) and not (tmp_path / "j" / "result").exists()
    store.finish(store.next_job(), "done", frames=source)
    assert JobStore(tmp_path).result_frames("j") == source


SAVE_FOREVER = """
import sys
from backend.jobs import JobStore
store = JobStore(sys.argv[1])
job = store.get("j")
for number in range(1, 10**9):
    job.message = f"save {number} " + "x" * (number * 7919 % 300_000)  # sizes vary: a torn write would show
    store.save(job)
    print(number, flush=True)
"""

KILLED_BEFORE_THE_RENAME = """
import os, signal, sys
from backend.jobs import JobStore
store = JobStore(sys.argv[1])
job = store.get("j")
job.message = "never committed"
os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
store.save(job)
"""


def message_of(number: int) -> str:
    return f"save {number} " + "x" * (number * 7919 % 300_000)


def test_a_backend_killed_at_random_moments_of_manifest_writes_never_tears_one(tmp_path):
    JobStore(tmp_path).add(new_job("j"), playblast(frames=2))
    chance = random.Random(2026)
    for _ in range(8):
        child = subprocess.Popen(
            [sys.executable, "-c", SAVE_FOREVER, str(tmp_path)],
            env=CHILD_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # The child goes on saving while this reads, so the kill lands at whatever step it is at.
            for _ in range(chance.randint(1, 30)):
                line = child.stdout.readline()
                assert line, f"the saving child died: {child.stderr.read()}"
            saved = int(line)
        finally:
            child.kill()
            child.communicate(timeout=TIMEOUT)
        store = JobStore(tmp_path)  # the next start
        job = store.get("j")
        assert job is not None, (tmp_path / QUARANTINE).glob("*/QUARANTINED.txt")  # torn, and set aside
        number = int(job.message.split()[1])
        assert number >= saved and job.message == message_of(number)  # a whole manifest, the last or a later one
        assert on_disk(tmp_path, "j")["message"] == job.message and not (tmp_path / QUARANTINE).exists()
        assert not [p.name for p in (tmp_path / "j").iterdir() if p.name.startswith(".")]


def test_a_kill_between_the_write_and_the_rename_leaves_the_last_manifest(tmp_path):
    store = JobStore(tmp_path)
    store.add(new_job("j"), playblast(frames=2))
    assert run_child(KILLED_BEFORE_THE_RENAME, tmp_path) == -signal.SIGKILL
    left = [p.name for p in (tmp_path / "j").glob(".staging-*")]
    assert len(left) == 1 and "never committed" in (tmp_path / "j" / left[0]).read_text()
    job = JobStore(tmp_path).get("j")
    assert (job.state, job.message) == (JobState.QUEUED, "") and not list((tmp_path / "j").glob(".staging-*"))


def test_a_manifest_write_that_fails_midway_leaves_no_staging_file(tmp_path, monkeypatch):
    store = JobStore(tmp_path)
    store.add(new_job("j"), playblast(frames=2))
    job = store.get("j")
    job.message = "not saved"

    def full_disk(handle):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full_disk)
        with pytest.raises(OSError, match="No space"):
            store.save(job)
    assert store.unsaved == {"j"} and on_disk(tmp_path, "j")["message"] == ""
    assert not [p.name for p in (tmp_path / "j").iterdir() if p.name.startswith(".")]
    store.save_pending()
    assert not store.unsaved and on_disk(tmp_path, "j")["message"] == "not saved"


def test_a_submit_that_fails_midway_leaves_no_job_and_no_staging(tmp_path, monkeypatch):
    store = JobStore(tmp_path)

    def full_disk(handle):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        store.add(new_job("j"), playblast(frames=2))
    assert store.get("j") is None and store.queue == [] and list(tmp_path.iterdir()) == []
