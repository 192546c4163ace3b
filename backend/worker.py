"""The one worker thread: runs queued jobs through FlowMotion on the loaded model, one at a time."""

from __future__ import annotations

import logging
import queue
import threading
import time

import torch

import flowmotion
from flowmotion import FlowMotionConfig, FlowMotionError, TransferCancelled
from flowmotion.cache import TransferCache
from flowmotion.video import frames_from_png_bytes, frames_to_png_bytes

from .jobs import Job, JobStore

log = logging.getLogger("flowmotion.backend")


def job_config(settings: dict) -> FlowMotionConfig:
    """The backend runs the method with the speed-ups that keep the result; a job's settings override."""
    return FlowMotionConfig.optimized(**settings)


class Worker(threading.Thread):
    """Takes jobs from the store's queue; reports progress and endings as events on `events`."""

    def __init__(self, pipe, store: JobStore, events: queue.Queue, cache: TransferCache | None = None,
                 max_area: int | None = None):
        super().__init__(name="flowmotion-worker", daemon=True)
        self.pipe = pipe
        self.store = store
        self.events = events
        self.cache = cache
        self.max_area = max_area
        self.stopping = threading.Event()
        self.wake = threading.Event()
        # Ids whose cancel was asked for; a set, so a cancel that races the job's start still lands.
        self.cancelled: set[str] = set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop; it ends before its next forward pass."""
        self.cancelled.add(job_id)

    def run(self) -> None:
        while not self.stopping.is_set():
            job = self.store.next_job()
            if job is None:
                self.wake.wait(0.2)
                self.wake.clear()
                continue
            self.events.put(("started", job.job_id, None))
            try:
                self.run_job(job)
            finally:
                self.cancelled.discard(job.job_id)

    def run_job(self, job: Job) -> None:
        log.info("job %s: running (%s frames, %dx%d) %r", job.job_id, job.frame_count, job.width, job.height,
                 job.prompt)

        def on_progress(progress) -> None:
            self.events.put(("progress", job.job_id, progress))

        try:
            frames = frames_from_png_bytes(self.store.source_frames(job.job_id))
            result = flowmotion.transfer(
                self.pipe, frames, job.prompt, negative_prompt=job.negative_prompt, config=job_config(job.settings),
                generator=torch.Generator().manual_seed(job.seed), on_progress=on_progress,
                should_cancel=lambda: self.stopping.is_set() or job.job_id in self.cancelled, cache=self.cache,
                max_area=self.max_area,
            )
            stats = {"seconds": result.stats.seconds, "forward_passes": result.stats.forward_passes,
                     "peak_memory_bytes": result.stats.peak_memory_bytes,
                     "source_cache_hit": result.stats.source_cache_hit}
            self.store.finish(job, "done", frames=frames_to_png_bytes(result.frames), stats=stats)
            log.info("job %s: done in %s", job.job_id, result.stats.summary())
        except TransferCancelled:
            # A shutdown is not the artist's cancel: the job stays queued for the next start.
            if self.stopping.is_set():
                return
            self.store.finish(job, "cancelled", "cancelled by the artist")
            log.info("job %s: cancelled", job.job_id)
        except FlowMotionError as error:
            self.store.finish(job, "failed", str(error))
            log.info("job %s: failed: %s", job.job_id, error)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            self.store.finish(job, "failed", f"the GPU ran out of memory at {job.width}x{job.height}, "
                                             f"{job.frame_count} frames: send fewer or smaller frames")
            log.warning("job %s: out of GPU memory", job.job_id)
        except Exception as error:  # a job's failure must never take the backend down with it
            log.exception("job %s: unexpected failure", job.job_id)
            self.store.finish(job, "failed", f"the backend failed on this job: {type(error).__name__}: {error}")
        self.events.put(("ended", job.job_id, None))


def wait_idle(worker: Worker, timeout: float) -> None:
    """For shutdown: give the running job up to `timeout` seconds to notice the stop."""
    deadline = time.monotonic() + timeout
    while worker.is_alive() and time.monotonic() < deadline:
        worker.join(0.05)
