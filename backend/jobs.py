"""The job store: every job on disk (manifest + PNG frames) and the queue of jobs to run.

A job's folder appears whole or not at all (it is written under a temporary name and renamed),
its result likewise, and its manifest is replaced atomically, so a crash never leaves a
half-written job. Jobs still queued or running at shutdown are queued again at start-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ACTIVE = ("queued", "running")
ENDED = ("done", "failed", "cancelled")
DEFAULT_EXPIRY = 7 * 24 * 3600
CANCELLED_QUEUED = "cancelled before it started"
CANCELLED_RUNNING = "cancelled by the artist"


@dataclass
class Job:
    """What the backend knows of one job; its manifest.json."""

    job_id: str
    prompt: str
    frame_count: int
    width: int
    height: int
    negative_prompt: str = ""
    seed: int = 0
    shot: str = ""
    fps: float = 24.0
    settings: dict = field(default_factory=dict)
    mask_count: int = 0
    """Subject masks sent with the frames: none, or one per frame."""
    request_digest: str = ""
    state: str = "queued"
    message: str = ""
    submitted: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    stats: dict = field(default_factory=dict)
    cancel_requested: bool = False
    """The artist asked to stop it while it ran; kept on disk, so a restart does not run it again."""
    owner: str = ""
    """The public key (Z85) that submitted it, behind a CurveZMQ allow-list; '' where jobs are shared."""


def request_digest(fields: dict, frames: list[bytes]) -> str:
    """Identifies a submission: the same id with the same request is a resubmission, not a conflict."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    for frame in frames:
        digest.update(hashlib.sha256(frame).digest())
    return digest.hexdigest()


def _write_json(path: Path, data: dict) -> None:
    handle, staged = tempfile.mkstemp(prefix=".manifest.", dir=path.parent)
    with os.fdopen(handle, "w") as stream:
        json.dump(data, stream, indent=1)
    os.replace(staged, path)


def _write_frames(folder: Path, frames: list[bytes]) -> None:
    folder.mkdir(parents=True)
    for number, frame in enumerate(frames, start=1):
        (folder / f"frame_{number:04d}.png").write_bytes(frame)


class JobStore:
    """Jobs under one folder, and the FIFO queue of those waiting. Safe to use from several threads."""

    def __init__(self, root: str | os.PathLike, expire_after: float = DEFAULT_EXPIRY):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.expire_after = expire_after
        self.lock = threading.RLock()
        self.queue: list[str] = []
        self.jobs: dict[str, Job] = {}
        self._load()

    def _folder(self, job_id: str) -> Path:
        return self.root / job_id

    def _load(self) -> None:
        for leftover in self.root.glob(".incoming-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for manifest in self.root.glob("*/manifest.json"):
            try:
                job = Job(**json.loads(manifest.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # an unreadable job is left on disk for the operator, never half-used
            self.jobs[job.job_id] = job
            if job.state in ACTIVE:
                shutil.rmtree(self._folder(job.job_id) / ".result", ignore_errors=True)
                if job.cancel_requested:
                    self.finish(job, "cancelled", CANCELLED_RUNNING)
                else:
                    job.state, job.started = "queued", 0.0
        self.queue = [j.job_id for j in sorted(self.jobs.values(), key=lambda j: j.submitted) if j.state == "queued"]
        self.expire()

    def save(self, job: Job) -> None:
        with self.lock:
            _write_json(self._folder(job.job_id) / "manifest.json", asdict(job))

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def add(self, job: Job, frames: list[bytes], masks: list[bytes] = ()) -> None:
        """Store a new job, its source frames and subject masks, then queue it."""
        with self.lock:
            staging = Path(tempfile.mkdtemp(prefix=f".incoming-{job.job_id}-", dir=self.root))
            try:
                _write_frames(staging / "source", frames)
                if masks:
                    _write_frames(staging / "subjects", masks)
                job.submitted = time.time()
                _write_json(staging / "manifest.json", asdict(job))
                os.replace(staging, self._folder(job.job_id))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            self.jobs[job.job_id] = job
            self.queue.append(job.job_id)

    def _read_frames(self, job_id: str, part: str) -> list[bytes]:
        """The PNGs of one part of a job's folder (source, subjects or result), in order; none if it has none."""
        return [p.read_bytes() for p in sorted((self._folder(job_id) / part).glob("frame_*.png"))]

    def source_frames(self, job_id: str) -> list[bytes]:
        return self._read_frames(job_id, "source")

    def subject_masks(self, job_id: str) -> list[bytes]:
        return self._read_frames(job_id, "subjects")

    def result_frames(self, job_id: str) -> list[bytes]:
        return self._read_frames(job_id, "result")

    def position(self, job_id: str) -> int:
        """0 for the running job (or one not waiting), 1 for the next to run, and so on."""
        with self.lock:
            return self.queue.index(job_id) + 1 if job_id in self.queue else 0

    def active_count(self) -> int:
        with self.lock:
            return sum(1 for job in self.jobs.values() if job.state in ACTIVE)

    def running(self) -> Job | None:
        with self.lock:
            return next((job for job in self.jobs.values() if job.state == "running"), None)

    def next_job(self) -> Job | None:
        """Take the first queued job and mark it running."""
        with self.lock:
            if not self.queue:
                return None
            job = self.jobs[self.queue.pop(0)]
            job.state, job.started = "running", time.time()
            self.save(job)
            return job

    def cancel(self, job_id: str) -> str:
        """Cancel a job: a queued one ends now, a running one is marked for the worker to stop
        before its next forward pass, an ended one stays as it is. Returns the job's state after.
        One lock makes this atomic with the worker taking the job, so no cancel is ever lost."""
        with self.lock:
            job = self.jobs[job_id]
            if job_id in self.queue:
                self.queue.remove(job_id)
                self.finish(job, "cancelled", CANCELLED_QUEUED)
            elif job.state == "running" and not job.cancel_requested:
                job.cancel_requested = True
                self.save(job)
            return job.state

    def finish(self, job: Job, state: str, message: str = "", frames: list[bytes] | None = None,
               stats: dict | None = None) -> None:
        """End a job; a result's frames are in place before the manifest says done."""
        with self.lock:
            if frames is not None:
                staging = self._folder(job.job_id) / ".result"
                shutil.rmtree(staging, ignore_errors=True)
                _write_frames(staging, frames)
                os.replace(staging, self._folder(job.job_id) / "result")
            # The state changes in memory first, so a manifest that cannot be written still leaves the
            # job ended for this run of the backend.
            job.state, job.message, job.finished = state, message, time.time()
            job.stats = stats or {}
            self.save(job)

    def expire(self, now: float | None = None) -> list[str]:
        """Delete ended jobs older than the expiry; returns their ids."""
        now = time.time() if now is None else now
        with self.lock:
            old = [j.job_id for j in self.jobs.values() if j.state in ENDED and now - j.finished > self.expire_after]
            for job_id in old:
                shutil.rmtree(self._folder(job_id), ignore_errors=True)
                del self.jobs[job_id]
            return old

    def listing(self) -> list[Job]:
        with self.lock:
            return sorted(self.jobs.values(), key=lambda j: j.submitted)
