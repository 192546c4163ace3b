import socket
import time

import msgpack
import pytest
import zmq

from protocol import (
    CLIENT_MESSAGES,
    Heartbeat,
    Hello,
    Ping,
    ProtocolError,
    Result,
    StatusRequest,
    Welcome,
    decode,
    encode,
)
from protocol import errors as codes
from protocol.client import BackendClient
from protocol.messages import PROTOCOL_VERSION
from tests.waiting import wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unreachable(client: BackendClient) -> ProtocolError | None:
    try:
        client.check_reachable()
    except ProtocolError as error:
        return error
    return None


def test_unreachable_backend_is_reported_within_the_timeout_and_poll_never_blocks():
    client = BackendClient(f"tcp://127.0.0.1:{free_port()}", connect_timeout=0.5).connect()
    try:
        # Nothing will ever arrive: a poll that blocked would never return.
        assert client.poll() == []
        assert not client.alive
        assert unreachable(client) is None  # not yet: the timeout has not passed
        error = wait_until(lambda: unreachable(client), 10, "the connect timeout to pass")
        assert error.code == codes.UNREACHABLE and "did not answer within 0.5 s" in str(error)
        with pytest.raises(ProtocolError) as waited:
            client.wait(lambda m: True, timeout=0.5)
        assert waited.value.code == codes.UNREACHABLE and "did not answer within 0.5 s" in str(waited.value)
    finally:
        client.close()


def test_bad_address_is_a_clear_error():
    with pytest.raises(ProtocolError, match="cannot connect to 'not an address'"):
        BackendClient("not an address").connect()


def test_a_secured_backend_needs_the_clients_keys():
    with pytest.raises(ProtocolError, match="needs this client's key pair"):
        BackendClient("tcp://127.0.0.1:1", server_public_key="x" * 40).connect()


class FakeBackend:
    """A bare ROUTER on loopback that plays the backend's part by hand."""

    def __init__(self):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind("tcp://127.0.0.1:*")
        self.address = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def receive(self, timeout: float = 5.0):
        """The next message from a client: (routing id, decoded message)."""
        assert self.socket.poll(int(timeout * 1000)), "the client sent nothing"
        client, *parts = self.socket.recv_multipart()
        return client, decode(parts, CLIENT_MESSAGES)[0]

    def receive_until(self, kind, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            client, message = self.receive(deadline - time.monotonic())
            if isinstance(message, kind):
                return client, message
        raise AssertionError(f"no {kind.__name__} within {timeout} s")

    def send(self, client: bytes, message) -> None:
        self.socket.send_multipart([client, *encode(message)])

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()


def welcome(instance: str, version: int = PROTOCOL_VERSION) -> Welcome:
    return Welcome(
        server="fake", model="m", device="cpu", limits={}, queue_length=0, instance=instance, version=version
    )


def polled_until(client: BackendClient, accept, timeout: float = 5.0):
    return wait_until(lambda: next((m for m, _ in client.poll() if accept(m)), None), timeout, "an accepted message")


def test_polling_pings_the_backend_and_a_restart_is_followed_by_hello_and_status():
    backend = FakeBackend()
    client = BackendClient(backend.address, connect_timeout=5).connect()
    try:
        identity, hello = backend.receive()
        assert isinstance(hello, Hello)
        backend.send(identity, welcome("first"))
        polled_until(client, lambda m: isinstance(m, Welcome))
        client.status("shot1-take1")
        client.fetch("shot1-take2")
        assert backend.receive_until(StatusRequest)[1].job_id == "shot1-take1"
        backend.send(
            identity,
            Result(
                job_id="shot1-take2",
                frame_count=0,
                width=1,
                height=1,
                fps=24.0,
                prompt="",
                negative_prompt="",
                seed=0,
                shot="",
                settings={},
                stats={},
            ),
        )
        polled_until(client, lambda m: isinstance(m, Result))
        assert client.following == {"shot1-take1"}

        heard = []

        def pinged():  # an idle, polling client still speaks every second
            client.poll()
            while backend.socket.poll(0):
                heard.append(backend.receive()[1])
            return any(isinstance(m, Ping) for m in heard)

        wait_until(pinged, 10, "a ping from the idle client")

        backend.send(identity, Heartbeat(time=0.0, queue_length=3, instance="first"))
        deadline = time.monotonic() + 5
        while client.queue_length != 3 and time.monotonic() < deadline:
            assert client.poll() == []  # heartbeats are kept by the client, never handed on
            time.sleep(0.02)
        assert client.queue_length == 3

        backend.send(identity, Heartbeat(time=0.0, queue_length=0, instance="second"))
        asked = []
        deadline = time.monotonic() + 5
        while not any(isinstance(m, StatusRequest) for m in asked) and time.monotonic() < deadline:
            client.poll()
            if backend.socket.poll(20):
                asked.append(backend.receive()[1])
                if isinstance(asked[-1], Hello):
                    backend.send(identity, welcome("second"))  # the statuses wait for the new welcome
        asked = [m for m in asked if not isinstance(m, Ping)]
        assert isinstance(asked[0], Hello) and asked[1].job_id == "shot1-take1"
    finally:
        client.close()
        backend.close()


def test_a_newer_client_falls_back_to_an_older_backends_version():
    """A backend that speaks only version 2 refuses the first hello; the client greets it again in
    version 2, and the request it made meanwhile goes out in version 2, without a request id."""
    backend = FakeBackend()
    client = BackendClient(backend.address, connect_timeout=5).connect()
    request_id = client.status("shot1-take1")
    try:
        headers = []
        deadline = time.monotonic() + 5
        while not any(h["type"] == "status" for h in headers) and time.monotonic() < deadline:
            client.poll()
            if not backend.socket.poll(20):
                continue
            identity, *parts = backend.socket.recv_multipart()
            header = msgpack.unpackb(parts[0])
            headers.append(header)
            if header["v"] != 2:  # what a version 2 backend answers to any other version
                backend.socket.send_multipart(
                    [
                        identity,
                        msgpack.packb(
                            {
                                "type": "error",
                                "v": 2,
                                "code": codes.VERSION_MISMATCH,
                                "field": "v",
                                "job_id": None,
                                "message": "this side speaks protocol version 2",
                            }
                        ),
                    ]
                )
            elif header["type"] == "hello":
                backend.socket.send_multipart([identity, *encode(welcome("old", version=2), version=2)])
        assert [(h["type"], h["v"]) for h in headers if h["type"] != "ping"] == [
            ("hello", PROTOCOL_VERSION),
            ("hello", 2),
            ("status", 2),
        ]
        assert headers[0]["versions"] == [2, 3, 4] and "versions" not in headers[1]
        assert headers[-1] == {"type": "status", "v": 2, "job_id": "shot1-take1"} and request_id
        assert client.version == 2 and client.welcome.instance == "old"
    finally:
        client.close()
        backend.close()


def test_a_fetch_refused_for_unread_replies_is_asked_again_then_passed_on(monkeypatch):
    from protocol import Error, Fetch
    from protocol import client as client_module

    monkeypatch.setattr(client_module, "FETCH_TRIES", 2)
    monkeypatch.setattr(client_module, "FETCH_AGAIN_AFTER", 0.05)
    backend = FakeBackend()
    client = BackendClient(backend.address, connect_timeout=5).connect()
    try:
        identity, _ = backend.receive()
        backend.send(identity, welcome("one"))
        polled_until(client, lambda m: isinstance(m, Welcome))
        client.fetch("take")
        refusal = Error(code=codes.UNREAD_LIMIT, message="read first", job_id="take")

        def next_fetch():
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                assert client.poll() == []  # the refusals so far are the client's own business
                if backend.socket.poll(20):
                    message = backend.receive()[1]
                    if isinstance(message, Fetch):
                        return message
            raise AssertionError("the fetch was not sent again")

        for _ in range(3):  # two refusals are asked again; the third is passed on
            assert next_fetch().job_id == "take"
            backend.send(identity, refusal)
        passed = polled_until(client, lambda m: isinstance(m, Error))
        assert passed.code == codes.UNREAD_LIMIT and passed.job_id == "take"
    finally:
        client.close()
        backend.close()


def test_with_no_version_in_common_the_waiting_requests_fail_with_the_reason(monkeypatch):
    from protocol import Error
    from protocol import client as client_module

    monkeypatch.setattr(client_module, "SUPPORTED_VERSIONS", (2,))
    monkeypatch.setattr(client_module, "PROTOCOL_VERSION", 2)
    backend = FakeBackend()
    client = BackendClient(backend.address, connect_timeout=5).connect()
    request_id = client.submit("take", [b"png"], "a ball")
    try:
        identity, _ = backend.receive()
        backend.send(identity, Error(code=codes.VERSION_MISMATCH, message="install the same release", field="v"))
        errors = []
        deadline = time.monotonic() + 5
        while len(errors) < 2 and time.monotonic() < deadline:
            errors += [m for m, _ in client.poll() if isinstance(m, Error)]
        assert [(e.code, e.job_id) for e in errors] == [
            (codes.VERSION_MISMATCH, None),
            (codes.VERSION_MISMATCH, "take"),
        ]
        assert errors[1].request_id == request_id and errors[1].message == "install the same release"
    finally:
        client.close()
        backend.close()
