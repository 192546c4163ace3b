"""Staying connected: heartbeats for every polling client, and a backend restart under a live client."""

from backend import server as server_module
from protocol import Heartbeat, JobStatus, Welcome
from protocol.states import JobState
from tests.waiting import wait_until

from .conftest import FAST, LONG, TIMEOUT, Backend, playblast, welcomed


def counting_heartbeats(client) -> list[Heartbeat]:
    """The heartbeats `client` takes in from now on (the client keeps them to itself)."""
    beats: list[Heartbeat] = []
    original = client._heartbeat
    client._heartbeat = lambda beat: (beats.append(beat), original(beat))
    return beats


def test_a_polling_client_is_never_forgotten_and_a_silent_one_is(backend, monkeypatch):
    monkeypatch.setattr(server_module, "CLIENT_FORGOTTEN_AFTER", 1.5)
    polling, silent = backend.client(), backend.client()
    welcomed(polling), welcomed(silent)
    beats = counting_heartbeats(polling)
    wait_until(
        lambda: polling.poll() == [] and len(backend.server.clients) == 1, TIMEOUT, "the silent client to be forgotten"
    )
    # Beats come every second: three more span a whole forgetting period, and the polling client
    # is still on the list.
    after = len(beats)
    wait_until(lambda: polling.poll() == [] and len(beats) >= after + 3, TIMEOUT, "three more heartbeats")
    assert polling.alive and len(backend.server.clients) == 1


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


def test_news_of_an_ended_job_is_not_kept_for_its_watchers(backend):
    client = backend.client()
    client.submit("quick", playblast(), "a ball", settings=FAST)
    client.wait(lambda m: isinstance(m, JobStatus) and m.state == JobState.DONE, TIMEOUT)
    wait_until(lambda: "quick" not in backend.server.watchers, TIMEOUT, "the ended job's watchers to be dropped")
    client.status("quick")
    client.wait(lambda m: isinstance(m, JobStatus), TIMEOUT)
    assert "quick" not in backend.server.watchers


def test_heartbeats_name_the_running_job_and_the_queue(backend):
    client = backend.client()
    welcomed(client)
    client.submit("long", playblast(), "slow", settings=LONG)
    client.wait(lambda m: isinstance(m, JobStatus) and m.state == JobState.RUNNING, TIMEOUT)
    beats = counting_heartbeats(client)
    wait_until(lambda: client.poll() is not None and beats, TIMEOUT, "a heartbeat")
    assert all(isinstance(b, Heartbeat) for b in beats)
    assert beats[-1].running == "long" and beats[-1].queue_length == 1 and client.queue_length == 1
    client.cancel("long")
