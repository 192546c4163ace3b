"""Request ids and protocol versions, against a live backend."""

import msgpack
import zmq

from protocol import Accepted, Error, JobStatus, Progress
from protocol import errors as codes
from protocol.messages import PROTOCOL_VERSION

from .conftest import FAST, TIMEOUT, playblast, welcomed


def test_every_answer_names_the_request_it_answers(backend):
    client = backend.client()
    assert welcomed(client).version == PROTOCOL_VERSION and client.version == PROTOCOL_VERSION
    submitted = client.submit("take", playblast(), "a ball", settings=FAST)
    asked = [client.status("take"), client.status("nothing-here"), client.fetch("take")]
    assert len({submitted, *asked}) == 4  # ids are unique per connection
    answers = {}
    while len(answers) < 4:
        message, _ = client.wait(lambda m: True, TIMEOUT)
        if isinstance(message, Progress):
            continue  # news answers no request
        if isinstance(message, JobStatus) and message.request_id is None:
            continue  # the job's news: it started, or ended
        answers[message.request_id] = message
    assert isinstance(answers[submitted], Accepted)
    assert isinstance(answers[asked[0]], JobStatus) and answers[asked[0]].job_id == "take"
    assert (answers[asked[1]].code, answers[asked[1]].job_id) == (codes.UNKNOWN_JOB, "nothing-here")
    assert isinstance(answers[asked[2]], Error) and answers[asked[2]].code == codes.NOT_READY


def raw_client(address):
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(address)
    return context, socket


def answer(socket, kinds=("welcome", "job", "error", "jobs")) -> dict:
    while True:
        assert socket.poll(TIMEOUT * 1000), "the backend did not answer"
        header = msgpack.unpackb(socket.recv_multipart()[0])
        if header["type"] in kinds:
            return header


def test_a_version_2_client_is_answered_in_version_2(backend):
    context, socket = raw_client(backend.address)
    try:
        socket.send(msgpack.packb({"type": "hello", "v": 2, "client": "an older add-on"}))
        welcome = answer(socket)
        assert welcome["type"] == "welcome" and welcome["v"] == 2
        assert "version" not in welcome and "request_id" not in welcome
        socket.send(msgpack.packb({"type": "status", "v": 2, "job_id": "unknown"}))
        error = answer(socket)
        assert (error["v"], error["code"], error["job_id"]) == (2, codes.UNKNOWN_JOB, "unknown")
        assert "request_id" not in error
        socket.send(msgpack.packb({"type": "list", "v": 2}))
        listing = answer(socket)
        assert listing["type"] == "jobs" and listing["v"] == 2 and "request_id" not in listing
    finally:
        socket.close(0)
        context.term()


def test_hello_chooses_the_newest_common_version_or_says_none_is_shared(backend):
    context, socket = raw_client(backend.address)
    try:
        socket.send(msgpack.packb({"type": "hello", "v": 9, "versions": [2, 3, 4, 9], "request_id": "h1", "new": 1}))
        welcome = answer(socket)
        assert (welcome["v"], welcome["version"], welcome["request_id"]) == (4, 4, "h1")
        socket.send(msgpack.packb({"type": "hello", "v": 9, "versions": [7, 9], "request_id": "h2"}))
        error = answer(socket)
        assert (error["code"], error["field"], error["request_id"]) == (codes.VERSION_MISMATCH, "versions", "h2")
        assert "versions 2, 3, 4" in error["message"]
        socket.send(msgpack.packb({"type": "status", "v": 1, "job_id": "a"}))
        error = answer(socket)
        assert error["code"] == codes.VERSION_MISMATCH and "versions 2 to 4" in error["message"]
    finally:
        socket.close(0)
        context.term()


def test_the_rate_limit_refusal_names_the_refused_request(pipe, tmp_path):
    from protocol import Limits

    from .conftest import Backend

    live = Backend(pipe, tmp_path / "jobs", limits=Limits(max_messages_per_second=1)).start()
    context, socket = raw_client(live.address)
    try:
        for number in range(4):  # a burst of two, then the third is refused and the fourth dropped
            socket.send(msgpack.packb({"type": "status", "v": 3, "job_id": "a", "request_id": f"q{number}"}))
        named = [answer(socket, ("error",))["request_id"] for _ in range(3)]
        assert named == ["q0", "q1", "q2"]
        beat = answer(socket, ("heartbeat",))
        assert beat["v"] == 3 and "request_id" not in beat
    finally:
        socket.close(0)
        context.term()
        live.stop()
