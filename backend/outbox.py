"""What the backend holds in memory for each client: the bytes of replies it has not read yet.

ZeroMQ's send high-water mark counts messages, not bytes: a client that asks for a large take
sixty times and never reads would make the backend hold sixty takes. So every reply of
TRACKED_FROM bytes or more is handed to ZeroMQ without a copy and with a tracker that says when
ZeroMQ let go of it (written to the network, or dropped with the connection); until then its
bytes count against that client. A reply that would take a client past `max_unread_bytes` is
not sent (the server answers a short `unread_limit` error instead), except when the client has
nothing unread at all, so one take larger than the bound can still be fetched. Smaller replies
(heartbeats, progress, job news) are copied and bounded by the high-water mark instead.

A message a client can go without (a live preview) is `offer`ed instead: it is always tracked,
and dropped, never queued, while the client still holds the previous one unread or it would
take the client past the bound. So a client that reads slowly gets fewer previews, and nothing
in the backend waits for it.
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
        self.offered: dict[bytes, zmq.MessageTracker] = {}
        """The last message offered to each client, until ZeroMQ lets go of it."""
        self.offers: dict[bytes, tuple[int, int]] = {}
        """Per client: messages offered that were sent, and that were dropped."""

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
        if size >= TRACKED_FROM:
            return self._send_tracked(client, parts, size) is not None
        try:
            self.socket.send_multipart([client, *parts], flags=zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def offer(self, client: bytes, parts: list[bytes]) -> bool:
        """Send a message `client` can go without, unless it still holds the last one offered
        unread, or this one would take it past the unread bound: then drop it (False)."""
        size = sum(len(part) for part in parts)
        earlier = self.offered.get(client)
        tracker = None
        if (earlier is None or earlier.done) and self.unread(client) + size <= self.max_unread_bytes:
            tracker = self._send_tracked(client, parts, size)
        sent, dropped = self.offers.get(client, (0, 0))
        if tracker is None:
            self.offers[client] = (sent, dropped + 1)
            return False
        self.offered[client] = tracker
        self.offers[client] = (sent + 1, dropped)
        return True

    def _send_tracked(self, client: bytes, parts: list[bytes], size: int) -> zmq.MessageTracker | None:
        """Send without a copy; the tracker of the message, or None when ZeroMQ refused it."""
        frames = [zmq.Frame(part, copy=False, track=True) for part in parts]
        try:
            self.socket.send_multipart([client, *frames], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        # ZeroMQ writes a client's messages in order, part by part: the last part let go means all were.
        tracker = frames[-1].tracker
        self.held.setdefault(client, deque()).append((tracker, size))
        self.peak = max(self.peak, self.unread(client))
        return tracker

    def forget(self, client: bytes) -> None:
        """A client gone silent: its offers' bookkeeping goes (its tracked bytes count until let go)."""
        self.offered.pop(client, None)
        self.offers.pop(client, None)

    def forget_done(self) -> None:
        """Drop the bookkeeping of clients that have read everything (called now and then)."""
        for client in list(self.held):
            self.unread(client)
        for client, tracker in list(self.offered.items()):
            if tracker.done:
                del self.offered[client]
