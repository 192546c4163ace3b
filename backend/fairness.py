"""Each client's share of the message loop: a token bucket per client.

ZeroMQ's ROUTER socket already reads its clients' messages in turn (fair queuing), but every
message read still costs the loop its handling and its reply. A client may send
`max_messages_per_second` on average and twice that in a burst (an add-on reopening a file asks
about all of its takes at once); beyond that its messages are dropped unread, the first of a run
answered with a `rate_limited` error, so one flooding client cannot slow the others or delay
their heartbeats.
"""

from __future__ import annotations

import time

BURST_SECONDS = 2.0
"""A client's bucket holds this many seconds of its rate."""


class Bucket:
    __slots__ = ("tokens", "updated", "limited")

    def __init__(self, tokens: float, now: float):
        self.tokens, self.updated, self.limited = tokens, now, False


class RateLimit:
    """Token buckets of clients seen lately; `admit` says whether a client's message is handled."""

    def __init__(self, per_second: int, clock=time.monotonic):
        self.per_second = per_second
        self.capacity = per_second * BURST_SECONDS
        self.clock = clock
        self.buckets: dict[bytes, Bucket] = {}
        self.dropped = 0

    def admit(self, client: bytes) -> str:
        """'yes' to handle the message, 'refuse' for the first one over the rate (answer it with
        an error), 'drop' for the rest of that run (no answer: answering costs as much as serving)."""
        now = self.clock()
        bucket = self.buckets.get(client)
        if bucket is None:
            bucket = self.buckets[client] = Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.per_second)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.limited = False
            return "yes"
        self.dropped += 1
        if bucket.limited:
            return "drop"
        bucket.limited = True
        return "refuse"

    def forget_idle(self) -> None:
        """Drop the buckets that have filled up again: those clients are as good as new."""
        now = self.clock()
        for client, bucket in list(self.buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.per_second >= self.capacity:
                del self.buckets[client]
