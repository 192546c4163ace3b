"""Staying connected: heartbeats for every polling client, and a backend restart under a live client."""

import time

from backend import server as server_module
from protocol import Heartbeat, JobStatus, Welcome
from protocol.states import JobState

from .conftest import FAST, LONG, TIMEOUT, Backend, playblast, welcomed


def poll_for(client, seconds: float) -> list:
    received, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        received += [message for message, _ in client.poll()]
        time.sleep(0.05)
    return received


def test_a_polling_client_is_never_forgotten_and_a_silent_one_is(backend, monkeypatch):
    monkeypatch.setattr(server_module, "CLIENT_FORGOTTEN_AFTER", 1.5)
    polling, silent = backend.client(), backend.client()
    welcomed(polling), welcomed(silent)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        polling.poll()
        time.sleep(0.05)
    assert polling.alive and time.monotonic() - polling.last_seen < 1.5
    assert len(backend.server.clients) == 1


def test_a_restart_under_a_live_client_is_noticed_and_its_jobs_followed_again(pipe, tmp_path):
    live = Backend(pipe, tmp_path / "jobs").start()
    try:
        client = live.client()
        first = welcomed(client)
        # Long enough that the job is still running when the restarted backend answers for it.
        client.submit("walk", playblast(), "a cube", settings=LONG)
        client.wait(lambda m: isinstance(m, JobStatus) and m.state == JobState.RUNNING, TIMEOUT)
        live.restart()
        # Nothing asked: the client sees the new backend's heartbeat, says hello again and asks
        # about its job, which now runs on the restarted backend.
        again = client.wait(lambda m: isinstance(m, Welcome), TIMEOUT)[0]
        assert again.instance != first.instance
        status = client.wait(lambda m: isinstance(m, JobStatus) and m.job_id == "walk", TIMEOUT)[0]
        assert status.state in (JobState.QUEUED, JobState.RUNNING)
        client.cancel("walk")
        cancelled, _ = client.wait(lambda m: isinstance(m, JobStatus) and m.state == JobState.CANCELLED, TIMEOUT)
        assert cancelled.job_id == "walk"
    finally:
        live.stop()


def eventually(condition, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_news_of_an_ended_job_is_not_kept_for_its_watchers(backend):
    client = backend.client()
    client.submit("quick", playblast(), "a ball", settings=FAST)
    client.wait(lambda m: isinstance(m, JobStatus) and m.state == JobState.DONE, TIMEOUT)
    assert eventually(lambda: "quick" not in backend.server.watchers)
    client.status("quick")
    client.wait(lambda m: isinstance(m, JobStatus), TIMEOUT)
    assert "quick" not in backend.server.watchers


def test_heartbeats_name_the_running_job_and_the_queue(backend):
    client = backend.client()
    welcomed(client)
    client.submit("long", playblast(), "slow", settings=LONG)
    client.wait(lambda m: isinstance(m, JobStatus) and m.state == JobState.RUNNING, TIMEOUT)
    beats = []
    original = client._heartbeat
    client._heartbeat = lambda beat: (beats.append(beat), original(beat))
    poll_for(client, 1.5)
    assert beats and all(isinstance(b, Heartbeat) for b in beats)
    assert beats[-1].running == "long" and beats[-1].queue_length == 1 and client.queue_length == 1
    client.cancel("long")
