"""Live previews of the running job: made in the worker's thread, sent from the server's.

The worker never waits on a client: its step hook makes a preview now and then (every few steps,
at most one per PREVIEW_EVERY seconds) and leaves it in a one-place slot; a newer preview replaces
one the server has not taken yet. The server offers each taken preview to the job's owners that
asked for previews, and the outbox drops it for a client still holding an earlier one unread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import torch

from flowmotion.preview import LatentRGB, preview_frames
from flowmotion.request import StepHook, StepInfo
from protocol import Preview
from protocol.messages import MAX_PREVIEW_FRAMES, MAX_PREVIEW_SIDE

log = logging.getLogger("flowmotion.backend")

PREVIEW_EVERY = 1.0
"""Seconds between two previews of a job, at least: an artist sees the take change, the network
carries a few hundred kilobytes a minute at most."""
PREVIEW_EVERY_STEPS = 1


@dataclass(frozen=True)
class JobPreview:
    """A preview ready to send: its message and its pixels."""

    message: Preview
    pixels: bytes


class PreviewSlot:
    """The newest preview the server has not taken yet: put by the worker, taken by the server."""

    def __init__(self):
        self.lock = threading.Lock()
        self.waiting: JobPreview | None = None
        self.replaced = 0
        """Previews replaced before the server took them."""

    def put(self, preview: JobPreview) -> None:
        with self.lock:
            if self.waiting is not None:
                self.replaced += 1
            self.waiting = preview

    def take(self) -> JobPreview | None:
        with self.lock:
            preview, self.waiting = self.waiting, None
            return preview


def glimpse(latent_prediction: torch.Tensor) -> torch.Tensor:
    """At most MAX_PREVIEW_FRAMES latent frames, evenly spread over the take, each at most
    MAX_PREVIEW_SIDE positions a side: chosen before the latent leaves the GPU."""
    frames, height, width = latent_prediction.shape[2:]
    count = min(frames, MAX_PREVIEW_FRAMES)
    picked = [round(i * (frames - 1) / max(count - 1, 1)) for i in range(count)]
    stride = math.ceil(max(height, width) / MAX_PREVIEW_SIDE)
    return latent_prediction[:, :, picked, ::stride, ::stride]


def job_preview(job_id: str, info: StepInfo, factors: LatentRGB) -> JobPreview:
    frames = preview_frames(glimpse(info.latent_prediction), factors)
    count, height, width = frames.shape[:3]
    message = Preview(job_id=job_id, step=info.step, total=info.total, frame_count=count, width=width, height=height)
    return JobPreview(message, frames.tobytes())


def preview_hook(
    job_id: str,
    factors: LatentRGB,
    slot: PreviewSlot,
    every: float = PREVIEW_EVERY,
    every_steps: int = PREVIEW_EVERY_STEPS,
    clock=time.monotonic,
) -> StepHook:
    """The worker's step hook for one job: a preview into `slot` every `every_steps` steps, and
    no sooner than `every` seconds after the last. A preview that fails is logged and the job
    goes on without previews: they are never worth a take."""
    last = {"at": -math.inf, "broken": False}

    def hook(info: StepInfo) -> None:
        now = clock()
        if last["broken"] or info.step % every_steps or now - last["at"] < every:
            return
        last["at"] = now
        try:
            slot.put(job_preview(job_id, info, factors))
        except Exception:
            last["broken"] = True
            log.exception("job %s: previews stop, the preview of step %d failed", job_id, info.step)

    return hook
