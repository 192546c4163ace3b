"""What one client can cost the backend: memory for replies it does not read, and its share of the loop."""

import time

import msgpack
import numpy as np
import zmq

from backend.jobs import Job
from flowmotion.video import frames_to_png_bytes
from protocol import Error, JobStatus, Limits, Result, decode
from protocol import errors as codes
from protocol.client import CLIENT_LIMITS
from protocol.messages import PROTOCOL_VERSION, SERVER_MESSAGES
from protocol.states import JobState

from .conftest import TIMEOUT, Backend, playblast

MiB = 2**20


def wait_until(condition, timeout=TIMEOUT):
    """Poll `condition` until it holds; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the backend did not get there in time"
        time.sleep(0.01)


def noise_take(frames=4, size=512) -> list[bytes]:
    """PNG frames of noise: they do not compress, so each is about size*size*3 bytes."""
    return frames_to_png_bytes(np.random.default_rng(0).integers(0, 256, (frames, size, size, 3), np.uint8))


def done_job(store, job_id: str, result: list[bytes]) -> None:
    """A job that ended with `result`, put in the store directly (no need to run the model)."""
    store.add(Job(job_id=job_id, prompt="noise", frame_count=3, width=48, height=32), playblast(frames=3))
    job = store.next_job()
    store.finish(job, "done", frames=result)


def raw_header(kind: str, **fields) -> bytes:
    return msgpack.packb({"type": kind, "v": PROTOCOL_VERSION, **fields})


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_a_client_that_never_reads_cannot_grow_the_backend_past_the_unread_bound(pipe, tmp_path):
    bound = 8 * MiB
    live = Backend(pipe, tmp_path / "jobs", limits=Limits(max_unread_bytes=bound)).start()
    take = noise_take()
    take_bytes = sum(map(len, take))
    assert take_bytes > 2 * MiB
    done_job(live.server.store, "big", take)
    context = zmq.Context()
    greedy = context.socket(zmq.DEALER)
    greedy.setsockopt(zmq.RCVHWM, 1)  # holds at most a message or two on its side, reads nothing
    greedy.setsockopt(zmq.RCVBUF, 4096)
    greedy.setsockopt(zmq.LINGER, 0)
    greedy.setsockopt(zmq.MAXMSGSIZE, -1)
    try:
        greedy.connect(live.address)
        before = resident_bytes()
        for _ in range(60):
            greedy.send(raw_header("fetch", job_id="big"))
        wait_until(lambda: live.server.answered >= 60)
        grown = resident_bytes() - before
        # Unbounded, sixty fetches would hold 60 takes (over 180 MiB) in the backend.
        assert live.server.outbox.peak <= bound
        assert grown < 60 * MiB, f"the process grew by {grown / MiB:.0f} MiB"
        results = refused = 0
        while results + refused < 60:
            assert greedy.poll(TIMEOUT * 1000), "a fetch went unanswered"
            message, frames = decode(greedy.recv_multipart(), SERVER_MESSAGES, CLIENT_LIMITS)
            if isinstance(message, Result):
                results += 1
                assert sum(map(len, frames)) == take_bytes
            elif isinstance(message, Error):
                assert (message.code, message.job_id) == (codes.UNREAD_LIMIT, "big")
                assert "max_unread_bytes" in message.message
                refused += 1
        assert refused > 0 and results >= 1
        # Having read everything, the same connection is served again.
        greedy.send(raw_header("fetch", job_id="big"))
        while True:
            assert greedy.poll(TIMEOUT * 1000)
            message, _ = decode(greedy.recv_multipart(), SERVER_MESSAGES, CLIENT_LIMITS)
            if isinstance(message, (Result, Error)):
                break
        assert isinstance(message, Result)
    finally:
        greedy.close(0)
        context.term()
        live.stop()


def test_a_flooding_client_is_rate_limited_and_the_others_are_served_in_full(pipe, tmp_path):
    limits = Limits(max_messages_per_second=20)
    live = Backend(pipe, tmp_path / "jobs", limits=limits).start()
    done_job(live.server.store, "shot", playblast(frames=3))
    context = zmq.Context()
    flooder = context.socket(zmq.DEALER)
    flooder.setsockopt(zmq.LINGER, 0)
    flood = 3000
    try:
        flooder.connect(live.address)
        others = [live.client() for _ in range(3)]
        for _ in range(flood):
            flooder.send(raw_header("status", job_id="shot"))
        answers = {id(client): 0 for client in others}
        for _ in range(10):  # ten rounds of a status from each artist, while the flood is read
            for client in others:
                client.status("shot")
            for client in others:
                message, _ = client.wait(lambda m: isinstance(m, JobStatus), TIMEOUT)
                assert message.state == JobState.DONE
                answers[id(client)] += 1
        assert set(answers.values()) == {10}
        wait_until(lambda: live.server.answered >= flood + 30)
        # 20 a second and a burst of 40: the loop handled only a small part of the flood.
        assert live.server.rate.dropped > flood // 2
        while True:
            assert flooder.poll(TIMEOUT * 1000), "the flooder was never told it is rate limited"
            message, _ = decode(flooder.recv_multipart(), SERVER_MESSAGES, CLIENT_LIMITS)
            if isinstance(message, Error):
                break
        assert message.code == codes.RATE_LIMITED and "max_messages_per_second" in message.message
    finally:
        flooder.close(0)
        context.term()
        live.stop()
