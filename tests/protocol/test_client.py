import socket
import time

import pytest

from protocol import ProtocolError
from protocol import errors as codes
from protocol.client import BackendClient


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_backend_is_reported_within_the_timeout_and_poll_never_blocks():
    client = BackendClient(f"tcp://127.0.0.1:{free_port()}", connect_timeout=0.5).connect()
    try:
        started = time.monotonic()
        assert client.poll() == []
        assert time.monotonic() - started < 0.05
        assert not client.alive
        client.check_reachable()  # not yet: the timeout has not passed
        time.sleep(0.6)
        with pytest.raises(ProtocolError) as error:
            client.check_reachable()
        assert error.value.code == codes.UNREACHABLE and "did not answer within 0.5 s" in str(error.value)
        started = time.monotonic()
        with pytest.raises(ProtocolError):
            client.wait(lambda m: True, timeout=0.5)
        assert time.monotonic() - started < 1.5
    finally:
        client.close()


def test_bad_address_is_a_clear_error():
    with pytest.raises(ProtocolError, match="cannot connect to 'not an address'"):
        BackendClient("not an address").connect()


def test_a_secured_backend_needs_the_clients_keys():
    with pytest.raises(ProtocolError, match="needs this client's key pair"):
        BackendClient("tcp://127.0.0.1:1", server_public_key="x" * 40).connect()
