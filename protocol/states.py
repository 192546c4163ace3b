"""The states of a job, named once for the backend, the protocol and the add-on.

A job is queued, then running, then ends done, failed or cancelled. JobState is a `str` enum:
each member is its own wire and manifest spelling ("queued", ...), so it compares equal to the
string, packs into msgpack and JSON unchanged, and a manifest or message written before the enum
existed reads the same. Pure standard library, like the rest of what the add-on's zip carries.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """Still waiting or running: the backend has news of it to come."""
        return self in ACTIVE

    @property
    def ended(self) -> bool:
        """Done, failed or cancelled: it never changes again."""
        return self in ENDED

    @property
    def label(self) -> str:
        """The state as the artist reads it in a list."""
        return self.value.capitalize()

    @property
    def description(self) -> str:
        """What the state means, for a tooltip."""
        return DESCRIPTIONS[self]


ACTIVE = frozenset({JobState.QUEUED, JobState.RUNNING})
ENDED = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
DESCRIPTIONS = {
    JobState.QUEUED: "Waiting on the backend for its turn on the GPU",
    JobState.RUNNING: "The backend is generating it now",
    JobState.DONE: "Finished: its frames are ready to fetch",
    JobState.FAILED: "The backend could not make it; the message says why",
    JobState.CANCELLED: "Stopped at the artist's request",
}


def enum_items() -> list[tuple[str, str, str]]:
    """Every state as (identifier, label, description), in order: the items of a Blender
    EnumProperty, to which an add-on adds states of its own (a take being sent, imported)."""
    return [(state.value, state.label, state.description) for state in JobState]
