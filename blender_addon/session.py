"""The add-on's one connection to the backend, and the timer that polls it.

Only the main thread touches the socket, from a bpy.app.timers callback that never blocks:
`tick()` reads what has arrived, updates the takes, and fetches and imports finished ones.
"""

from __future__ import annotations

import json
import time

import bpy

from . import generation, previews, sequencer
from .preferences import client_keys, preferences
from .protocol import Accepted, Error, JobStatus, Preview, Progress, ProtocolError, Result
from .protocol.client import BackendClient
from .protocol.errors import UNREACHABLE
from .protocol.states import JobState

TICK_SECONDS = 0.2
RENDER_TICK_SECONDS = 0.01
"""While a playblast renders, one image per tick: the pause between them lets Blender handle input."""
ACTIVE_STATES = ("sending", JobState.QUEUED, JobState.RUNNING, JobState.DONE)
PREVIEW_ENDS = ("imported", JobState.FAILED, JobState.CANCELLED)
"""A take in these states has no preview: its strip, or its ending, has taken its place."""

_client: BackendClient | None = None
_client_settings: tuple | None = None
_last_error = ""
_backend_said = ""  # the last error the backend sent about the connection, not a job


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def is_loopback(address: str) -> bool:
    """Whether the address is on this machine (no network use): loopback TCP, ipc or inproc."""
    scheme, _, rest = address.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0] if rest.count(":") == 1 or rest.startswith("[") else rest
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def online_access_allowed() -> bool:
    """Blender's own switch for network use by add-ons (Blender 4.2 and later)."""
    return getattr(bpy.app, "online_access", True)


def check_online_access(address: str) -> None:
    if not is_loopback(address) and not online_access_allowed():
        raise ProtocolError(
            UNREACHABLE,
            f"Blender's online access is off, so the add-on does not contact the backend "
            f"at {address}: turn on Preferences > System > Network > Allow Online "
            f"Access, or run the backend on this machine (tcp://127.0.0.1:5599)",
        )


def client(context=None) -> BackendClient:
    """The connection for the current preferences; a new one when they changed. A backend off
    this machine is only contacted when Blender allows online access."""
    global _client, _client_settings
    prefs = preferences(context or bpy.context)
    check_online_access(prefs.address)
    public, secret = client_keys(prefs)
    wanted = (prefs.address, prefs.server_public_key, public, secret, prefs.connect_timeout)
    # A connection that never got a welcome may be one the backend refused (a key not yet
    # allowed): ZeroMQ does not try such a one again by itself, so a new request gets a new one.
    unanswered = (
        _client is not None
        and _client.welcome is None
        and time.monotonic() - _client.connected_at > _client.connect_timeout
    )
    if _client is None or _client_settings != wanted or unanswered:
        disconnect()
        _client = BackendClient(
            prefs.address,
            server_public_key=prefs.server_public_key or None,
            client_public_key=public,
            client_secret_key=secret,
            connect_timeout=prefs.connect_timeout,
            name=f"blender-{bpy.app.version_string}",
            previews=True,
        )
        _client.connect()
        _client_settings = wanted
    return _client


def current() -> BackendClient | None:
    return _client


def disconnect() -> None:
    global _client, _client_settings, _backend_said
    if _client is not None:
        _client.close()
    _client, _client_settings, _backend_said = None, None, ""


def last_error() -> str:
    return _last_error


def find_take(job_id: str):
    for scene in bpy.data.scenes:
        for take in scene.flowmotion.takes:
            if take.job_id == job_id:
                return scene, take
    return None, None


def active_takes():
    for scene in bpy.data.scenes:
        for take in scene.flowmotion.takes:
            if take.state in ACTIVE_STATES:
                yield scene, take


def import_result(scene, take, result: Result, frames: list[bytes]) -> None:
    try:
        folder, names = sequencer.write_frames(
            sequencer.take_folder(scene, take.name, take.job_id), frames, take.job_id
        )
    except (sequencer.TakeFolderError, OSError) as error:
        take.state, take.message = JobState.DONE, f"the frames could not be written: {error}"
        return
    sequencer.remove_strip(scene, take.strip_name)
    take.prompt, take.negative_prompt, take.seed = result.prompt, result.negative_prompt, result.seed
    take.settings = json.dumps(result.settings, sort_keys=True)
    strip = sequencer.add_strip(scene, take.name, folder, names, take.strip_properties(), take.frame_start)
    take.folder, take.strip_name, take.frame_count = str(folder), strip.name, len(names)
    take.state, take.message = "imported", ""


def handle(message, frames) -> None:
    scene, take = find_take(getattr(message, "job_id", None) or "")
    if take is None:
        return
    if isinstance(message, Accepted):
        take.state, take.position = message.state, message.position
        if message.state == JobState.DONE:
            current().fetch(take.job_id)
    elif isinstance(message, Progress):
        take.state, take.phase, take.step, take.total = JobState.RUNNING, message.phase, message.step, message.total
        take.eta = -1.0 if message.eta is None else message.eta
    elif isinstance(message, JobStatus):
        take.state, take.position, take.message = message.state, message.position, message.message
        if message.state == JobState.DONE:
            current().fetch(take.job_id)
    elif isinstance(message, Result):
        import_result(scene, take, message, frames)
    elif isinstance(message, Preview):
        # A preview can overtake the news that its job started; a late one, after the take's
        # ending, is not shown.
        if take.state in ("sending", JobState.QUEUED, JobState.RUNNING):
            take.state = JobState.RUNNING
            previews.show(take, message, frames[0])
    elif isinstance(message, Error):
        take.state, take.message = JobState.FAILED, message.message
        if message.code == "not_ready":
            take.state = JobState.QUEUED
    if take.state in PREVIEW_ENDS:
        previews.remove(take)


def tick() -> float | None:
    """One poll of the backend, the timer's callback; never blocks. Returns the next interval."""
    global _last_error, _backend_said
    link = current()
    if link is None:
        return TICK_SECONDS if generation.advance_all() else None
    try:
        for message, frames in link.poll():
            if isinstance(message, Error) and not message.job_id:
                _backend_said = _last_error = message.message
            handle(message, frames)
        # Silence matters while takes wait on the backend, or while it has not yet said welcome.
        waiting = [take for _, take in active_takes() if take.state != JobState.DONE]
        if waiting or link.welcome is None:
            link.check_reachable()
        if link.alive:
            if _last_error:  # it answers again: what the takes said of its silence is over
                for _, take in active_takes():
                    if take.message == _last_error:
                        take.message = ""
            _backend_said = _last_error = ""
    except ProtocolError as error:
        # What the backend said (a version mismatch, say) explains its silence better than the
        # silence does. The jobs live on the backend: the takes keep their state and resume when
        # it answers again.
        _last_error = _backend_said or str(error)
        for _, take in active_takes():
            take.message = _last_error
        generation.fail_unanswered(link, _last_error)
    rendering = generation.advance_all()
    _redraw()
    if rendering:
        return RENDER_TICK_SECONDS
    return TICK_SECONDS if any(True for _ in active_takes()) else TICK_SECONDS * 5


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_SECONDS, persistent=True)


def stop_timer() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)


def _redraw() -> None:
    window_manager = getattr(bpy.context, "window_manager", None)
    if window_manager is None:
        return
    for window in window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "SEQUENCE_EDITOR", "PREFERENCES"):
                area.tag_redraw()
