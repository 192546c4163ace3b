"""What the backend holds in memory for each client: the bytes of replies it has not read yet.

ZeroMQ's send high-water mark counts messages, not bytes: a client that asks for a large take
sixty times and never reads would make the backend hold sixty takes. So every reply of
TRACKED_FROM bytes or more is handed to ZeroMQ without a copy and with a tracker that says when
ZeroMQ let go of it (written to the network, or dropped with the connection); until then its
bytes count against that client. A reply that would take a client past `max_unread_bytes` is
not sent (the server answers a short `unread_limit` error instead), except when the client has
nothing unread at all, so one take larger than the bound can still be fetched. Smaller replies
(heartbeats, progress, job news) are copied and bounded by the high-water mark instead.
"""

from __future__ import annotations

from collections import deque

import zmq

TRACKED_FROM = 4096
"""Replies of this many bytes or more are tracked; smaller ones are bounded in number by SEND_HWM."""
SEND_HWM = 1000
"""Most messages queued to one client (ZeroMQ drops beyond it): small ones are at most
SEND_HWM * TRACKED_FROM bytes (4 MiB) per client."""


class Outbox:
    """The ROUTER socket's sending side, with each client's unread bytes accounted."""

    def __init__(self, socket: zmq.Socket, max_unread_bytes: int):
        self.socket = socket
        self.max_unread_bytes = max_unread_bytes
        self.held: dict[bytes, deque] = {}
        self.peak = 0
        """The most unread tracked bytes any one client has had: never above the bound (or one reply)."""

    def unread(self, client: bytes) -> int:
        """Tracked bytes of replies to `client` that ZeroMQ still holds."""
        pending = self.held.get(client)
        if not pending:
            return 0
        while pending and pending[0][0].done:
            pending.popleft()
        if not pending:
            del self.held[client]
            return 0
        return sum(size for _, size in pending)

    def has_room(self, client: bytes, size: int) -> bool:
        if size < TRACKED_FROM:
            return True
        unread = self.unread(client)
        return unread == 0 or unread + size <= self.max_unread_bytes

    def send(self, client: bytes, parts: list[bytes]) -> bool:
        """Queue one message to `client`; False when ZeroMQ refused it (the client's queue is full)."""
        size = sum(len(part) for part in parts)
        try:
            if size < TRACKED_FROM:
                self.socket.send_multipart([client, *parts], flags=zmq.NOBLOCK)
                return True
            frames = [zmq.Frame(part, copy=False, track=True) for part in parts]
            self.socket.send_multipart([client, *frames], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        # ZeroMQ writes a client's messages in order, part by part: the last part let go means all were.
        self.held.setdefault(client, deque()).append((frames[-1].tracker, size))
        self.peak = max(self.peak, self.unread(client))
        return True

    def forget_done(self) -> None:
        """Drop the bookkeeping of clients that have read everything (called now and then)."""
        for client in list(self.held):
            self.unread(client)
