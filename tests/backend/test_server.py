"""A live backend on loopback with the tiny model: jobs, queue, cancel, persistence, bad input."""

import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowmotion.video import frames_to_png_bytes
from protocol import (
    CLIENT_MESSAGES,
    Accepted,
    Error,
    JobList,
    JobStatus,
    Limits,
    Progress,
    ProtocolError,
    Result,
    Welcome,
    decode,
)
from protocol import errors as codes
from protocol.messages import PROTOCOL_VERSION
from protocol.states import ENDED, JobState
from tests.waiting import WatchedContext, wait_until

from .conftest import FAST, LONG, TIMEOUT, Backend, playblast, welcomed


def until_state(client, job_id, states=tuple(ENDED), timeout=TIMEOUT) -> JobStatus:
    status, _ = client.wait(lambda m: isinstance(m, JobStatus) and m.job_id == job_id and m.state in states, timeout)
    return status


def fetched(client, job_id):
    client.fetch(job_id)
    return client.wait(lambda m: isinstance(m, Result) and m.job_id == job_id, TIMEOUT)


def error_reply(client) -> Error:
    return client.wait(lambda m: isinstance(m, Error), TIMEOUT)[0]


def test_a_full_job(backend):
    client = backend.client()
    welcome = welcomed(client)
    assert welcome.model == "embedded" and welcome.limits["max_frames"] == Limits().max_frames
    client.submit("shot1-take1", playblast(frames=5, height=32, width=48), "a red ball", seed=3, settings=FAST)
    accepted = client.wait(lambda m: isinstance(m, Accepted), TIMEOUT)[0]
    assert (accepted.state, accepted.position) == (JobState.QUEUED, 1)
    progress = []
    while True:
        message, _ = client.wait(lambda m: isinstance(m, (Progress, JobStatus)), TIMEOUT)
        if isinstance(message, Progress):
            progress.append(message)
        elif message.state == JobState.DONE:
            break
    assert {p.phase for p in progress} >= {"guided_step", "sampling", "decode"}
    assert all(p.job_id == "shot1-take1" for p in progress)
    assert progress[-1].eta is not None and progress[-1].forward_passes > 0
    result, frames = fetched(client, "shot1-take1")
    assert (result.frame_count, result.width, result.height, len(frames)) == (5, 48, 32, 5)
    assert result.prompt == "a red ball" and result.seed == 3 and result.settings == FAST
    assert all(frame.startswith(b"\x89PNG") for frame in frames)


def subject_masks(frames: int = 5, height: int = 32, width: int = 48) -> list[bytes]:
    """playblast()'s square, white on black."""
    video = np.zeros((frames, height, width, 3), np.uint8)
    for f in range(frames):
        x = (f * 6) % (width - 8)
        video[f, 8:16, x : x + 8] = 255
    return frames_to_png_bytes(video)


def test_a_job_with_subject_masks_runs_subject_alignment(backend):
    client = backend.client()
    frames = playblast(frames=5)
    client.submit("plain", frames, "a red ball", seed=3, settings=FAST)
    client.submit("masked", frames, "a red ball", masks=subject_masks(), seed=3, settings=FAST)
    assert until_state(client, "plain").state == JobState.DONE
    assert until_state(client, "masked").state == JobState.DONE
    assert len(list((backend.root / "masked" / "subjects").glob("frame_*.png"))) == 5
    assert not (backend.root / "plain" / "subjects").exists()
    (plain_result, plain), (masked_result, masked) = fetched(client, "plain"), fetched(client, "masked")
    assert len(masked) == 5 and masked != plain
    assert masked_result.stats["subject_masks"] is True and plain_result.stats["subject_masks"] is False
    assert masked_result.stats["subject_placements"] >= 1 and plain_result.stats["subject_placements"] == 0
    assert masked_result.stats["camera_placements"] == 0  # masks: the subject is placed, not the camera


def test_bad_subject_masks_are_refused_at_submit_with_the_reason(backend):
    client = backend.client()
    frames = playblast(frames=3)
    client.submit("a", frames, "a ball", masks=subject_masks(frames=3, height=16, width=16))
    error = error_reply(client)
    assert error.code == codes.BAD_FRAMES and "subject masks are 16x16 but frames are 48x32" in error.message
    client.submit("b", frames, "a ball", masks=[*subject_masks(frames=2), b"not a png"])
    assert "subject masks: frame 3 is not a PNG" in error_reply(client).message
    assert not (backend.root / "a").exists() and not (backend.root / "b").exists()


def test_two_clients_queue_positions_and_cancel_queued(backend):
    first, second = backend.client(), backend.client()
    welcomed(first), welcomed(second)
    first.submit("a", playblast(), "one", settings=LONG)  # runs until cancelled, however loaded the machine
    assert first.wait(lambda m: isinstance(m, Accepted), TIMEOUT)[0].position == 1
    until_state(first, "a", (JobState.RUNNING,))
    second.submit("b", playblast(shift=1), "two", settings=FAST)
    second.submit("c", playblast(shift=2), "three", settings=FAST)
    positions = {}
    while len(positions) < 2:
        message = second.wait(lambda m: isinstance(m, Accepted), TIMEOUT)[0]
        positions[message.job_id] = message.position
    assert positions == {"b": 1, "c": 2}
    second.cancel("c")
    assert until_state(second, "c", (JobState.CANCELLED,)).message == "cancelled before it started"
    first.cancel("a")
    assert until_state(first, "a", (JobState.CANCELLED,)).state == JobState.CANCELLED
    assert until_state(second, "b").state == JobState.DONE  # the next job starts after a cancel


def test_cancel_of_a_running_job_takes_effect_promptly(backend):
    client = backend.client()
    client.submit("long", playblast(), "slow", settings=LONG)
    seen = client.wait(lambda m: isinstance(m, Progress) and m.phase == "guided_step", TIMEOUT)[0]
    client.cancel("long")
    later = []
    client.wait(lambda m: later.append(m) or (isinstance(m, JobStatus) and m.state == JobState.CANCELLED), TIMEOUT)
    # Promptly, counted in the job's own steps: a cancel that went unheeded runs all 1000; a heeded one
    # ends the job within the few steps the tiny model takes while the message travels and is read
    # (more on a loaded machine, never hundreds).
    steps = [m.step for m in later if isinstance(m, Progress) and m.phase == seen.phase]
    assert max(steps, default=seen.step) <= seen.step + 50 < seen.total
    client.fetch("long")
    assert error_reply(client).code == codes.NOT_READY


def test_disconnect_then_fetch_from_a_new_client(backend):
    client = backend.client()
    client.submit("walk", playblast(), "a cube", settings=FAST)
    client.wait(lambda m: isinstance(m, Accepted), TIMEOUT)
    client.close()
    later = backend.client()

    def done() -> bool:
        later.status("walk")
        return later.wait(lambda m: isinstance(m, JobStatus), TIMEOUT)[0].state == JobState.DONE

    wait_until(done, TIMEOUT, "the job to be done")
    assert fetched(later, "walk")[0].frame_count == 5


@pytest.mark.slow  # several jobs, a restart, and the jobs again
def test_results_and_queued_jobs_survive_a_restart(pipe, tmp_path):
    live = Backend(pipe, tmp_path / "jobs").start()
    client = live.client()
    client.submit("kept", playblast(), "a cube", settings=FAST)
    until_state(client, "kept")
    client.submit("blocker", playblast(shift=1), "slow", settings=LONG)
    until_state(client, "blocker", (JobState.RUNNING,))
    client.submit("waiting", playblast(shift=2), "queued at shutdown", settings=FAST)
    client.wait(lambda m: isinstance(m, Accepted) and m.job_id == "waiting", TIMEOUT)
    live.stop()

    live.start()
    try:
        client = live.client()
        result, frames = fetched(client, "kept")
        assert result.prompt == "a cube" and len(frames) == 5
        client.cancel("blocker")  # it resumed as the first queued job
        client.status("waiting")  # asking about a job also subscribes to its news
        assert until_state(client, "waiting").state == JobState.DONE
        client.list_jobs()
        listing = client.wait(lambda m: isinstance(m, JobList), TIMEOUT)[0]
        assert [job["job_id"] for job in listing.jobs] == ["kept", "blocker", "waiting"]
    finally:
        live.stop()


def test_resubmitting_the_same_id_is_idempotent_and_a_different_request_conflicts(backend):
    client = backend.client()
    frames = playblast()
    client.submit("same", frames, "a ball", settings=FAST)
    until_state(client, "same")
    client.submit("same", frames, "a ball", settings=FAST)
    again = client.wait(lambda m: isinstance(m, Accepted), TIMEOUT)[0]
    assert (again.job_id, again.state) == ("same", JobState.DONE)
    client.submit("same", frames, "another prompt", settings=FAST)
    error = error_reply(client)
    assert (error.code, error.field, error.job_id) == (codes.JOB_CONFLICT, "job_id", "same")
    client.list_jobs()
    assert len(client.wait(lambda m: isinstance(m, JobList), TIMEOUT)[0].jobs) == 1


def test_a_failing_job_is_reported_and_the_backend_carries_on(backend, monkeypatch):
    import flowmotion

    original = flowmotion.run_transfer

    def broken(pipe, request, **kwargs):
        if request.prompt == "explode":
            raise RuntimeError("simulated driver fault")
        return original(pipe, request, **kwargs)

    monkeypatch.setattr(flowmotion, "run_transfer", broken)
    client = backend.client()
    client.submit("bad", playblast(), "explode", settings=FAST)
    failed = until_state(client, "bad")
    assert failed.state == JobState.FAILED and "RuntimeError: simulated driver fault" in failed.message
    client.fetch("bad")
    assert error_reply(client).code == codes.JOB_FAILED
    client.submit("good", playblast(), "a ball", settings=FAST)
    assert until_state(client, "good").state == JobState.DONE


def test_bad_settings_are_refused_at_submit(backend):
    client = backend.client()
    client.submit("x", playblast(), "a ball", settings={"guided_steps": 60})
    error = error_reply(client)
    assert error.code == codes.BAD_FIELD and error.field == "settings" and "guided_steps (60)" in error.message
    client.submit("y", playblast(), "a ball", settings={"warp_factor": 9})
    assert "warp_factor" in error_reply(client).message


def test_bad_frames_are_refused_with_the_frame_named(backend):
    client = backend.client()
    frames = playblast(frames=3)
    client.submit("x", [frames[0], b"GIF89a not a png", frames[2]], "a ball")
    error = error_reply(client)
    assert error.code == codes.BAD_FRAMES and "frame 2 is not a PNG" in error.message
    client.submit("y", [frames[0], playblast(frames=1, height=16, width=16)[0]], "a ball")
    assert "frame 2 is 16x16 but frame 1 is 48x32" in error_reply(client).message


def test_limits_are_enforced_and_named(pipe, tmp_path):
    limits = Limits(max_frames=4, max_width=40, max_height=40, max_prompt_chars=10, max_queue=1)
    live = Backend(pipe, tmp_path / "jobs", limits=limits).start()
    try:
        client = live.client()
        client.submit("many", playblast(frames=5, height=16, width=16), "a ball")
        assert "1 to 4 frames" in error_reply(client).message
        client.submit("wide", playblast(frames=3, height=16, width=48), "a ball")
        assert "at most 40x40" in error_reply(client).message
        client.submit("wordy", playblast(frames=3, height=16, width=16), "a" * 11)
        assert "the limit is 10" in error_reply(client).message
        client.submit("one", playblast(frames=3, height=16, width=16), "slow", settings=LONG)
        client.wait(lambda m: isinstance(m, Accepted), TIMEOUT)
        client.submit("two", playblast(frames=3, height=16, width=16, shift=1), "b")
        assert "the queue is full (1 jobs, the limit max_queue)" in error_reply(client).message
        client.cancel("one")
    finally:
        live.stop()


def raw_dealer(address: str, context=None) -> zmq.Socket:
    dealer = (context or zmq.Context.instance()).socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(address)
    return dealer


def next_reply(dealer: zmq.Socket) -> list[bytes]:
    """The next message to `dealer` that is not a heartbeat."""
    deadline = time.monotonic() + TIMEOUT
    while dealer.poll(max(1, int((deadline - time.monotonic()) * 1000))):
        reply = dealer.recv_multipart()
        if msgpack.unpackb(reply[0]).get("type") != "heartbeat":
            return reply
    raise AssertionError(f"no reply within {TIMEOUT} s")


def send_raw(address: str, parts: list[bytes]) -> list[bytes]:
    """One message from a fresh DEALER; the first reply that is not a heartbeat."""
    dealer = raw_dealer(address)
    try:
        dealer.send_multipart(parts)
        return next_reply(dealer)
    finally:
        dealer.close(0)


@pytest.mark.parametrize(
    "parts, code",
    [
        ([bytes(range(200))], codes.BAD_MESSAGE),
        ([b"\x85\xa4type\xa6submit"], codes.BAD_MESSAGE),
        ([b"\xdb\x7f\xff\xff\xff" + b"x" * 10], codes.BAD_MESSAGE),
        (
            [
                msgpack.packb({"type": "submit", "v": PROTOCOL_VERSION, "job_id": "a", "prompt": 5, "frame_count": 1}),
                b"x",
            ],
            codes.BAD_FIELD,
        ),
        ([msgpack.packb({"type": "teleport", "v": PROTOCOL_VERSION})], codes.UNKNOWN_TYPE),
        ([msgpack.packb({"type": "hello", "v": 0})], codes.VERSION_MISMATCH),
    ],
)
def test_garbage_gets_an_error_reply_and_the_backend_still_works(backend, parts, code):
    reply = send_raw(backend.address, parts)
    assert msgpack.unpackb(reply[0])["code"] == code
    client = backend.client()
    client.submit("after", playblast(), "a ball", settings=FAST)
    assert until_state(client, "after").state == JobState.DONE


def test_an_oversized_message_disconnects_the_sender_only(pipe, tmp_path):
    live = Backend(pipe, tmp_path / "jobs", limits=Limits(max_message_bytes=4096)).start()
    try:
        header = msgpack.packb(
            {"type": "submit", "v": PROTOCOL_VERSION, "job_id": "big", "prompt": "p", "frame_count": 1}
        )
        watched = WatchedContext(zmq.EVENT_DISCONNECTED)
        dealer = raw_dealer(live.address, watched)
        try:
            dealer.send_multipart([header, b"\x89PNG" + b"\0" * 10_000])
            assert watched.next_event(TIMEOUT) == zmq.EVENT_DISCONNECTED
            assert not dealer.poll(0)  # dropped, not answered
        finally:
            dealer.close(0)
            watched.close()
        client = live.client()
        client.submit("small", playblast(frames=1, height=16, width=16), "a ball", settings=FAST)
        assert until_state(client, "small").state == JobState.DONE
    finally:
        live.stop()


def test_heartbeats_arrive_during_a_long_job(backend):
    client = backend.client()
    client.submit("long", playblast(), "slow", settings=LONG)
    client.wait(lambda m: isinstance(m, Progress), TIMEOUT)
    beats = []
    original = client._heartbeat
    client._heartbeat = lambda beat: (beats.append(beat), original(beat))
    # Two beats a second apart while the worker computes: the server loop is not held up by the job.
    wait_until(lambda: client.poll() is not None and len(beats) >= 2, TIMEOUT, "two heartbeats during the job")
    assert client.alive and beats[-1].running == "long"
    client.cancel("long")


def test_unknown_job(backend):
    client = backend.client()
    client.status("never-submitted")
    error = error_reply(client)
    assert error.code == codes.UNKNOWN_JOB and "never-submitted" in error.message


def test_client_wait_raises_backend_errors(backend):
    client = backend.client()
    client.fetch("missing")
    with pytest.raises(ProtocolError, match="no job 'missing'"):
        client.wait(lambda m: isinstance(m, Result), TIMEOUT)


def test_welcome_comes_back_to_each_client(backend):
    clients = [backend.client() for _ in range(3)]
    assert all(isinstance(welcomed(c), Welcome) for c in clients)


def test_a_job_store_that_cannot_be_written_is_an_error_reply_not_a_crash(backend, monkeypatch):
    def disk_full(job, frames, masks):
        raise OSError(28, "No space left on device")

    client = backend.client()
    with monkeypatch.context() as patch:
        patch.setattr(backend.server.store, "add", disk_full)
        client.submit("full", playblast(), "a ball", settings=FAST)
        error = error_reply(client)
    assert error.code == codes.BACKEND_ERROR and "No space left on device" in error.message
    assert error.job_id == "full"
    client.submit("fine", playblast(), "a ball", settings=FAST)
    assert until_state(client, "fine").state == JobState.DONE


def test_a_result_that_cannot_be_saved_fails_the_job_and_the_worker_carries_on(backend, monkeypatch):
    store = backend.server.store
    original = store.finish

    def no_room_for_results(job, state, message="", frames=None, stats=None):
        if frames is not None and job.job_id == "lost":
            raise OSError(28, "No space left on device")
        return original(job, state, message, frames=frames, stats=stats)

    monkeypatch.setattr(store, "finish", no_room_for_results)
    client = backend.client()
    client.submit("lost", playblast(), "a ball", settings=FAST)
    failed = until_state(client, "lost")
    assert failed.state == JobState.FAILED and "could not save this job's result" in failed.message
    client.submit("next", playblast(shift=3), "a ball", settings=FAST)
    assert until_state(client, "next").state == JobState.DONE


def test_the_job_list_is_bounded_and_says_how_many_there_are(backend, monkeypatch):
    from backend import server as server_module

    monkeypatch.setattr(server_module, "MAX_LISTED", 2)
    client = backend.client()
    for number in range(3):
        client.submit(f"j{number}", playblast(shift=number), "a ball", settings=FAST)
    until_state(client, "j2")
    client.list_jobs()
    listing = client.wait(lambda m: isinstance(m, JobList), TIMEOUT)[0]
    assert [job["job_id"] for job in listing.jobs] == ["j1", "j2"] and listing.total == 3


def test_a_ping_is_never_answered(backend):
    dealer = raw_dealer(backend.address)
    try:
        dealer.send_multipart([msgpack.packb({"type": "ping", "v": PROTOCOL_VERSION})])
        # Messages on one connection are handled in order: the first answer is the status's.
        dealer.send_multipart(
            [
                msgpack.packb(
                    {"type": "status", "v": PROTOCOL_VERSION, "job_id": "after-the-ping", "request_id": "after"}
                )
            ]
        )
        assert msgpack.unpackb(next_reply(dealer)[0])["request_id"] == "after"
    finally:
        dealer.close(0)


PACKABLE_INTS = st.integers(-(2**63), 2**63 - 1)
HEADER_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=40),
    st.binary(max_size=8),
    st.lists(PACKABLE_INTS, max_size=2),
    st.dictionaries(st.text(max_size=6), PACKABLE_INTS, max_size=2),
)
HEADER_NAMES = st.sampled_from(["job_id", "prompt", "frame_count", "seed", "fps", "settings", "shot", "client", "zz"])


def test_fuzzed_messages_to_a_live_backend_get_the_reply_the_protocol_predicts(backend):
    """Whatever the fields, the backend answers as the protocol's own decoder says it must, and
    keeps serving: a message the decoder refuses gets an error with the same code."""
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(backend.address)

    def next_reply() -> dict:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if dealer.poll(100):
                header = msgpack.unpackb(dealer.recv_multipart()[0])
                if header["type"] != "heartbeat":
                    return header
        raise AssertionError("the backend did not answer")

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        kind=st.sampled_from(sorted(CLIENT_MESSAGES)),
        fields=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=5),
        frames=st.integers(0, 2),
    )
    def one_message(kind, fields, frames):
        parts = [
            msgpack.packb({"type": kind, "v": PROTOCOL_VERSION, **fields}, use_bin_type=True),
            *[b"\x89PNG"] * frames,
        ]
        dealer.send_multipart(parts)
        try:
            decode(parts, CLIENT_MESSAGES, backend.limits)
        except ProtocolError as error:
            assert next_reply()["code"] == error.code
            return
        if kind == "ping":
            return
        reply = next_reply()
        expected = {"hello": {"welcome"}, "list": {"jobs"}, "submit": {"error"}}.get(kind, {"error"})
        assert reply["type"] in expected  # no such job, or frames that are not PNGs
        if reply["type"] == "error":
            assert reply["code"] in (codes.UNKNOWN_JOB, codes.BAD_FRAMES, codes.BAD_FIELD, codes.LIMIT_EXCEEDED)

    try:
        one_message()
    finally:
        dealer.close(0)
    client = backend.client()
    client.submit("after-fuzz", playblast(), "a ball", settings=FAST)
    assert until_state(client, "after-fuzz").state == JobState.DONE
