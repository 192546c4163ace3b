"""Reopening a .blend reattaches to its takes' jobs: the backend kept them, so nothing is lost."""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from . import generation, session
from .protocol import ProtocolError
from .protocol.states import JobState


def reattach() -> int:
    """Ask the backend about every take still in flight (which also subscribes to its news); a
    finished one is fetched when the answer says done. Returns how many takes were asked about.
    A take saved while its playblast rendered was never sent: it says so."""
    for scene in bpy.data.scenes:
        for take in scene.flowmotion.takes:
            if take.state in ("waiting", "rendering") and generation.serving(take.job_id) is None:
                take.state = JobState.FAILED
                take.message = "not sent: the file was saved or closed during its playblast"
    takes = list(session.active_takes())
    if not takes:
        return 0
    try:
        link = session.client()
        for _, take in takes:
            link.status(take.job_id)
    except ProtocolError as error:
        for _, take in takes:
            take.message = str(error)
        return 0
    session.ensure_timer()
    return len(takes)


@persistent
def on_load_post(*_args) -> None:
    reattach()


def register() -> None:
    bpy.app.handlers.load_post.append(on_load_post)


def unregister() -> None:
    if on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(on_load_post)
