"""Tests wait on the event they need, never for a fixed time: `wait_until` polls a condition, and
the timeout only stops a test that would otherwise hang (it is no speed target)."""

import time

import zmq
from zmq.utils.monitor import recv_monitor_message

POLL_EVERY = 0.02
"""Seconds between two looks at a condition: short enough that a test moves on as soon as it holds."""


def wait_until(condition, timeout: float, what: str):
    """The first true value `condition()` returns; AssertionError naming `what` if there is none
    within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(POLL_EVERY)


HANDSHAKE = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
"""How a ZeroMQ handshake ends: agreed, or refused (by the backend's allow list, or for want of a
common security mechanism)."""


def next_event(monitor: zmq.Socket, timeout: float) -> int:
    """The next zmq.EVENT_* a socket monitor reports."""
    if not monitor.poll(int(timeout * 1000)):
        raise AssertionError(f"the socket reported nothing within {timeout} s")
    return recv_monitor_message(monitor)["event"]


class WatchedContext:
    """Stands in for a client's ZeroMQ context so that the socket it makes is watched from its
    start: ZeroMQ does not try a refused handshake again, so a monitor attached after connect()
    could come too late to see it. Close it after the client."""

    def __init__(self, events: int = HANDSHAKE):
        self.events = events
        self.monitor: zmq.Socket | None = None

    def socket(self, kind: int) -> zmq.Socket:
        socket = zmq.Context.instance().socket(kind)
        self.monitor = socket.get_monitor_socket(self.events)
        return socket

    def next_event(self, timeout: float) -> int:
        assert self.monitor is not None, "no socket was made"
        return next_event(self.monitor, timeout)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close(0)
