"""Size limits: checked before a message is parsed, reported to clients in the welcome."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Limits:
    """What one backend accepts. Every field is configurable on `flowmotion-backend serve`."""

    max_message_bytes: int = 64 * 2**20
    """Largest single message part (one PNG frame or a header); larger ones disconnect the sender."""
    max_header_bytes: int = 64 * 2**10
    """Largest header (the msgpack map in the first part)."""
    max_frames: int = 121
    """Most frames in one job."""
    max_width: int = 1920
    max_height: int = 1080
    max_prompt_chars: int = 2000
    """Longest prompt or negative prompt, in characters."""
    max_queue: int = 32
    """Most jobs waiting or running at once."""
    max_unread_bytes: int = 64 * 2**20
    """Most bytes of replies the backend holds for one client that has not read them; a fetch or
    list beyond it is answered `unread_limit` (one reply larger than this is sent when nothing else
    is unread)."""
    max_messages_per_second: int = 200
    """Messages one client may send per second on average (twice that in a burst); beyond, they are
    dropped unread, the first of a run answered `rate_limited`."""

    def to_dict(self) -> dict:
        return asdict(self)
