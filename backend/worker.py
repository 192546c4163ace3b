"""The one worker thread: runs queued jobs through FlowMotion on the loaded model, one at a time."""

from __future__ import annotations

import logging
import queue
import threading

import torch

import flowmotion
from flowmotion import FlowMotionError, TransferCancelled
from flowmotion.cache import TransferCache
from flowmotion.preview import LatentRGB, latent_rgb_for
from flowmotion.video import frames_from_png_bytes, frames_to_png_bytes
from protocol import JobState, ProtocolError

from .jobs import CANCELLED_RUNNING, Job, JobStore
from .previews import PREVIEW_EVERY, PREVIEW_EVERY_STEPS, PreviewSlot, preview_hook
from .settings import check_settings

log = logging.getLogger("flowmotion.backend")

RETRY_AFTER = 5.0
"""Seconds before the worker tries again to start a job when the job store cannot be written."""


class Worker(threading.Thread):
    """Takes jobs from the store's queue; reports progress and endings as events on `events`."""

    def __init__(
        self,
        pipe,
        store: JobStore,
        events: queue.Queue,
        cache: TransferCache | None = None,
        max_area: int | None = None,
        preview_every: float | None = PREVIEW_EVERY,
        preview_every_steps: int = PREVIEW_EVERY_STEPS,
    ):
        super().__init__(name="flowmotion-worker", daemon=True)
        self.pipe = pipe
        self.preview_every = preview_every
        """Seconds between a job's previews at least; None: no previews."""
        self.preview_every_steps = preview_every_steps
        self.previews = PreviewSlot()
        """The newest preview of the running job, for the server to take."""
        self.preview_map: LatentRGB | None = None
        self.store = store
        self.events = events
        self.cache = cache
        self.max_area = max_area
        self.stopping = threading.Event()
        self.wake = threading.Event()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.store.save_pending()
            try:
                job = self.store.next_job()
            except OSError as error:
                # The job store's disk is full or gone: the job stays first in the queue; say so and
                # try again, never die.
                log.error("cannot start the next job, the job store is not writable: %s", error)
                self.stopping.wait(RETRY_AFTER)
                continue
            if job is None:
                self.wake.wait(0.2)
                self.wake.clear()
                continue
            self.events.put(("started", job.job_id, None))
            ending = self.run_job(job)
            if ending is not None:
                self.end(job, *ending)
            else:
                self.put_back(job)

    def put_back(self, job: Job) -> None:
        """A job interrupted by a shutdown runs first at the next start, and that run is not counted."""
        try:
            self.store.put_back(job)
        except OSError as error:
            log.error("job %s: cannot save it as queued (%s); the next start counts this run", job.job_id, error)

    def run_job(self, job: Job) -> tuple | None:
        """Run one job; returns how it ended (state, message, frames, stats), or None when the
        backend is shutting down and the job stays queued for the next start."""
        log.info(
            "job %s: running (%s frames, %dx%d) %r", job.job_id, job.frame_count, job.width, job.height, job.prompt
        )

        def on_progress(progress) -> None:
            self.events.put(("progress", job.job_id, progress))

        try:
            config = check_settings(job.settings)
            frames = frames_from_png_bytes(self.store.source_frames(job.job_id))
            masks = self.store.subject_masks(job.job_id)
            subject_mask = frames_from_png_bytes(masks, noun="subject mask", alpha_is_mask=True) if masks else None
            request = flowmotion.TransferRequest(
                frames,
                job.prompt,
                negative_prompt=job.negative_prompt,
                subject_mask=subject_mask,
                max_area=self.max_area,
                config=config,
                generator=torch.Generator().manual_seed(job.seed),
                cache=self.cache,
            )
            result = flowmotion.run_transfer(
                self.pipe,
                request,
                on_step=self.step_hook(job),
                on_progress=on_progress,
                should_cancel=lambda: self.stopping.is_set() or job.cancel_requested,
            )
            stats = {
                "seconds": result.stats.seconds,
                "forward_passes": result.stats.forward_passes,
                "peak_memory_bytes": result.stats.peak_memory_bytes,
                "source_cache_hit": result.stats.source_cache_hit,
                "subject_masks": subject_mask is not None,
                "subject_placements": result.stats.subject_placements,
                "camera_placements": result.stats.camera_placements,
            }
            log.info("job %s: done in %s", job.job_id, result.stats.summary())
            return JobState.DONE, "", frames_to_png_bytes(result.frames), stats
        except TransferCancelled:
            if not job.cancel_requested:
                return None  # a shutdown is not the artist's cancel
            log.info("job %s: cancelled", job.job_id)
            return JobState.CANCELLED, CANCELLED_RUNNING, None, None
        except FlowMotionError as error:
            log.info("job %s: failed: %s", job.job_id, error)
            return JobState.FAILED, str(error), None, None
        except ProtocolError as error:  # settings stored by an older release that this one refuses
            log.info("job %s: failed: %s", job.job_id, error.message)
            return JobState.FAILED, error.message, None, None
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            log.warning("job %s: out of GPU memory", job.job_id)
            return (
                JobState.FAILED,
                (
                    f"the GPU ran out of memory at {job.width}x{job.height}, {job.frame_count} "
                    "frames: send fewer or smaller frames, or free the GPU of other work"
                ),
                None,
                None,
            )
        except Exception as error:  # a job's failure must never take the backend down with it
            log.exception("job %s: unexpected failure", job.job_id)
            return JobState.FAILED, f"the backend failed on this job: {type(error).__name__}: {error}", None, None

    def step_hook(self, job: Job):
        """The job's preview hook, or None when previews are off or cannot be made for this model."""
        if self.preview_every is None:
            return None
        if self.preview_map is None:
            try:
                self.preview_map = latent_rgb_for(self.pipe, fallback=True)
            except Exception as error:  # previews are never worth a job: it runs without them
                log.warning("no previews: %s", error)
                self.preview_every = None
                return None
            log.info("previews map latents to RGB by %r", self.preview_map.name)
        return preview_hook(job.job_id, self.preview_map, self.previews, self.preview_every, self.preview_every_steps)

    def end(self, job: Job, state: JobState, message: str, frames: list[bytes] | None, stats: dict | None) -> None:
        """Record a job's ending; a job store that cannot be written fails the job, not the worker."""
        try:
            self.store.finish(job, state, message, frames=frames, stats=stats)
        except OSError as error:
            if job.state == state:
                # The ending (and its result) is committed; only the manifest waits for room.
                log.error(
                    "job %s: %s, but its manifest cannot be saved yet (%s); it is saved once the disk takes writes",
                    job.job_id,
                    state,
                    error,
                )
            else:
                log.error("job %s: cannot write its %s ending to the job store: %s", job.job_id, state, error)
                self.fail_unsaved(job, error)
        self.events.put(("ended", job.job_id, None))

    def fail_unsaved(self, job: Job, error: OSError) -> None:
        try:
            self.store.finish(
                job,
                JobState.FAILED,
                f"the backend could not save this job's result: {error}; "
                "free disk space on the backend and submit it again",
            )
        except OSError as again:
            log.error("job %s: the job store is not writable (%s); its ending is saved once it is", job.job_id, again)
