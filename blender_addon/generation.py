"""One press of Generate, from the button to the jobs on the backend, in small steps.

A Generation waits for the backend's Welcome, checks the shot against the limits the backend
announces (before anything is rendered), renders the playblast one image per step and submits
one job per variation. The add-on's timer (`session.tick`) advances every Generation a step at a
time, so Blender stays usable throughout; Esc or Cancel stops one before anything is sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import bpy

from . import playblast
from .protocol import ProtocolError
from .protocol.states import JobState

_running: list[Generation] = []


@dataclass(frozen=True)
class Request:
    """What the artist asked for when pressing Generate, kept as it was then."""

    scene: str
    job_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    prompt: str
    negative_prompt: str
    settings: dict
    max_side: int
    subjects: str
    collection: str
    long_shot: str


MODAL_SILENCE = 1.0
"""Seconds without a step from its modal operator after which the add-on's timer drives a
Generation again (the operator ends without notice when a file is loaded)."""


class Generation:
    def __init__(self, request: Request, link):
        self.request, self.link = request, link
        self.job: playblast.PlayblastRender | None = None
        self.finished = False
        self.modal_step_at: float | None = None  # when Generate's modal operator last advanced it

    def drive_from_modal(self) -> None:
        """Generate runs modal (in a window): it renders in its own events, where Blender gives
        operators their full context, and catches Esc between two images."""
        self.modal_step_at = time.monotonic()

    def advance_from_modal(self) -> None:
        self.modal_step_at = time.monotonic()
        self.advance()
        if self.finished and self in _running:
            _running.remove(self)

    @property
    def driven_by_modal(self) -> bool:
        return self.modal_step_at is not None and time.monotonic() - self.modal_step_at < MODAL_SILENCE

    # The takes it serves -------------------------------------------------------------------------

    def takes(self) -> list:
        scene = bpy.data.scenes.get(self.request.scene)
        if scene is None:
            return []
        return [take for take in scene.flowmotion.takes if take.job_id in self.request.job_ids]

    def _set(self, **values) -> None:
        for take in self.takes():
            for name, value in values.items():
                setattr(take, name, value)

    def _end(self, state: str, message: str) -> None:
        self._set(state=state, message=message)
        self.finished = True
        if self.job is not None:
            self.job.discard()

    # Steps ---------------------------------------------------------------------------------------

    def advance(self) -> None:
        """Do the next small piece of work: one check, or one rendered image, or the submit."""
        if self.finished:
            return
        scene = bpy.data.scenes.get(self.request.scene)
        if scene is None or not self.takes():
            self._end(JobState.CANCELLED, "the scene or its takes were removed before anything was sent")
            return
        try:
            if self.job is None:
                self._preflight(scene)
            elif not self.job.step():
                self._set(state="rendering", step=self.job.done, total=self.job.total)
            else:
                self._submit(scene)
        except playblast.PlayblastError as error:
            self._end(JobState.FAILED, f"not sent: {error}")
        except (ProtocolError, OSError) as error:
            self._end(JobState.FAILED, f"not delivered: {error}")

    def _preflight(self, scene) -> None:
        link = self.link
        if link.welcome is None:
            link.check_reachable()  # raises once the backend has been silent past the connect timeout
            return
        limits = link.welcome.limits
        request = self.request
        shot = playblast.plan(scene, request.max_side, limits, request.long_shot)
        room = int(limits.get("max_queue") or 0) - link.queue_length
        if limits.get("max_queue") and room < len(request.job_ids):
            raise playblast.PlayblastError(
                f"the backend's queue holds {link.queue_length} of at most {limits['max_queue']} jobs: wait for "
                f"some to finish, or ask for fewer variations"
            )
        collection = bpy.data.collections.get(request.collection) if request.collection else None
        self.job = playblast.PlayblastRender(scene, shot, request.subjects, collection)
        self._set(state="rendering", step=0, total=0, frame_start=shot.frames[0], message="")

    def _submit(self, scene) -> None:
        blast = self.job.result()
        frames = [path.read_bytes() for path in blast.frames]
        masks = [path.read_bytes() for path in blast.masks]
        request = self.request
        fps = scene.render.fps / scene.render.fps_base
        for job_id, seed in zip(request.job_ids, request.seeds, strict=True):
            self.link.submit(
                job_id,
                frames,
                request.prompt,
                masks=masks,
                negative_prompt=request.negative_prompt,
                seed=seed,
                shot=scene.name,
                fps=fps,
                settings=request.settings,
            )
        self._set(state="sending", subjects=", ".join(blast.subjects), step=0, total=0, message="")
        self.finished = True
        self.job.discard()

    def abort(self, why: str) -> None:
        """Stop before anything is sent; the takes say why."""
        if not self.finished:
            self._end(JobState.CANCELLED, why)


def start(request: Request, link) -> Generation:
    generation = Generation(request, link)
    _running.append(generation)
    return generation


def advance_all() -> bool:
    """One step of every running Generation; whether any is still running."""
    for generation in list(_running):
        if not generation.driven_by_modal:
            generation.advance()
        if generation.finished:
            _running.remove(generation)
    return bool(_running)


def fail_unanswered(link, why: str) -> None:
    """The backend on `link` never answered: every Generation still waiting for it ends, saying why."""
    for generation in list(_running):
        if generation.link is link and generation.job is None:
            generation._end(JobState.FAILED, f"not delivered: {why}")
            _running.remove(generation)


def serving(job_id: str) -> Generation | None:
    """The running Generation a take belongs to, if it is still being rendered or sent."""
    return next((g for g in _running if job_id in g.request.job_ids), None)


def abort_all(why: str) -> None:
    for generation in list(_running):
        generation.abort(why)
    _running.clear()
