"""The job store: every job on disk (manifest + PNG frames) and the queue of jobs to run.

Every write goes through `flowmotion.durable`: a job's folder appears whole or not at all (written into a
hidden staging folder, fsynced, renamed), and its manifest is replaced by one rename of a fsynced
file, so a crash, a kill -9 or a power cut never leaves a torn manifest or a half-written job;
start-up removes the staging files a killed backend left. A job's ending with a result is
committed by one rename: its frames and its ending (state, stats, each frame's size and
checksum) are written into a staging folder, which becomes `result/`; a restart that finds
`result/` beside a manifest still saying running finishes the job from it. Jobs still
queued at shutdown are queued again at start-up; a job that was running when the backend stopped
without a clean shutdown runs again at most MAX_ATTEMPTS times in all, then fails.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flowmotion import durable
from protocol.states import ACTIVE, ENDED, JobState

from .errors import BackendError
from .manifest import DamagedManifest, build, read_manifest

log = logging.getLogger("flowmotion.backend")

DEFAULT_EXPIRY = 7 * 24 * 3600
CANCELLED_QUEUED = "cancelled before it started"
CANCELLED_RUNNING = "cancelled by the artist"
MAX_ATTEMPTS = 2
"""Runs a job gets when the backend stops while running it (a crash, kill -9, a power cut): the
first and one more. A job that takes the backend down every time fails instead of crash-looping."""
STOPPED_WHILE_RUNNING = "the backend stopped while running this job"
QUARANTINE = ".quarantine"
ENDING_POINTS = ("frames written", "ending written", "result in place", "manifest saved")
"""The steps of ending a job with a result, in order; `reached` is called after each."""


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
    state: JobState = JobState.QUEUED
    message: str = ""
    submitted: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    stats: dict = field(default_factory=dict)
    cancel_requested: bool = False
    """The artist asked to stop it while it ran; kept on disk, so a restart does not run it again."""
    attempts: int = 0
    """Times the job was started; one that is running at a clean shutdown is put back uncounted."""
    result_files: list | None = None
    """Each result frame's {"size", "sha256"}, recorded as the job ends and checked on every fetch."""
    owner: str = ""
    """The public key (Z85) that submitted it, behind a CurveZMQ allow-list; '' where jobs are shared."""


class DamagedResult(BackendError):
    """A done job's result frames are missing, short or changed on disk; the message says which."""


def reached(point: str) -> None:
    """Called after each step of ending a job (ENDING_POINTS): where the crash tests stop the process."""


def request_digest(fields: dict, frames: list[bytes]) -> str:
    """Identifies a submission: the same id with the same request is a resubmission, not a conflict."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    for frame in frames:
        digest.update(hashlib.sha256(frame).digest())
    return digest.hexdigest()


def frame_record(frame: bytes) -> dict:
    return {"size": len(frame), "sha256": hashlib.sha256(frame).hexdigest()}


PRIVATE_FILE, PRIVATE_FOLDER = 0o600, 0o700
"""A job's prompt and frames are its artist's: only the backend's own user reads them."""
OLD_LEFTOVERS = (".incoming-*", ".manifest.*", ".result")
"""Staging names of releases before `flowmotion.durable`, removed at start like its own."""


def _json(data: dict) -> str:
    return json.dumps(data, indent=1)


def _write_json(path: Path, data: dict) -> None:
    durable.write_text(path, _json(data), mode=PRIVATE_FILE)


def _write_frames(folder: Path, frames: Sequence[bytes]) -> None:
    """Frames into a folder inside a staged folder, which syncs them when it is committed."""
    folder.mkdir(PRIVATE_FOLDER, exist_ok=True)
    for number, frame in enumerate(frames, start=1):
        (folder / f"frame_{number:04d}.png").write_bytes(frame)


def _remove_leftovers(folder: Path) -> None:
    """What a killed backend was writing in `folder`: never committed, so never used, and one that
    cannot be removed costs a warning, never the start."""
    try:
        durable.remove_leftovers(folder)
        for pattern in OLD_LEFTOVERS:
            for left in folder.glob(pattern):
                shutil.rmtree(left, ignore_errors=True) if left.is_dir() else left.unlink(missing_ok=True)
    except OSError as error:
        log.warning("cannot remove what a killed backend left in %s (%s); it is never used", folder, error)


def _check_job(job: Job, folder: Path) -> None:
    """What a manifest's field types cannot say: DamagedManifest naming the first problem."""
    if job.job_id != folder.name:
        raise DamagedManifest(f"its job_id {job.job_id[:80]!r} is not its folder's name")
    if job.frame_count < 1 or job.width < 1 or job.height < 1 or job.attempts < 0:
        raise DamagedManifest("its frame_count, width, height or attempts is out of range")
    if job.state in ENDED and job.finished <= 0:
        raise DamagedManifest(f"it is {job.state} but has no finishing time")
    if not _are_records(job.result_files or []):
        raise DamagedManifest("its result_files are not {size, sha256} records")


def _are_records(records: list) -> bool:
    return all(
        isinstance(r, dict)
        and set(r) == {"size", "sha256"}
        and isinstance(r["size"], int)
        and isinstance(r["sha256"], str)
        for r in records
    )


def _ending_of(result: Path) -> dict | None:
    """The ending committed with a result folder, or None if it has none that can be used."""
    try:
        ending = read_manifest(result / "ending.json")
    except DamagedManifest:
        return None
    kinds: dict[str, type | tuple[type, ...]] = {
        "state": str,
        "message": str,
        "finished": (int, float),
        "stats": dict,
        "result_files": list,
    }
    if set(ending) != set(kinds) or not all(isinstance(ending[k], kind) for k, kind in kinds.items()):
        return None
    return ending if ending["state"] == JobState.DONE and _are_records(ending["result_files"]) else None


class JobStore:
    """Jobs under one folder, and the FIFO queue of those waiting. Safe to use from several threads."""

    def __init__(self, root: str | os.PathLike, expire_after: float = DEFAULT_EXPIRY):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.expire_after = expire_after
        self.lock = threading.RLock()
        self.queue: list[str] = []
        self.jobs: dict[str, Job] = {}
        self.unsaved: set[str] = set()
        """Jobs whose manifest on disk is behind the one in memory (the disk was full): see save_pending."""
        self._load()

    def _folder(self, job_id: str) -> Path:
        return self.root / job_id

    # Start-up --------------------------------------------------------------------------------

    def _load(self) -> None:
        _remove_leftovers(self.root)
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue  # the lock file, the source cache, the quarantine
            try:
                self._load_one(folder)
            except OSError as error:  # an unreadable folder costs its own job, never the others
                log.error("job folder %s cannot be read (%s); it is skipped", folder, error)
        waiting = [job for job in self.jobs.values() if job.state == JobState.QUEUED]
        self.queue = [job.job_id for job in sorted(waiting, key=lambda job: job.submitted)]
        self.expire()

    def _load_one(self, folder: Path) -> None:
        if not (folder / "manifest.json").exists() and not (folder / "source").is_dir():
            log.warning("%s is not a job folder (no manifest.json, no source frames); it is left as it is", folder)
            return
        try:
            job = build(Job, read_manifest(folder / "manifest.json"))
            _check_job(job, folder)
        except DamagedManifest as error:
            self._quarantine(folder, str(error))
            return
        self.jobs[job.job_id] = job
        self._resume(job)

    def _quarantine(self, folder: Path, reason: str) -> None:
        """Set a damaged job folder aside, with the reason beside it: never used, never deleted."""
        target = self.root / QUARANTINE / f"{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            target.parent.mkdir(exist_ok=True)
            while target.exists():
                target = target.with_name(target.name + "+")
            os.replace(folder, target)
            (target / "QUARANTINED.txt").write_text(f"{reason}\n", encoding="utf-8")
        except OSError as error:
            log.error(
                "job folder %s is damaged (%s) and cannot be moved aside (%s); it is skipped", folder, reason, error
            )
            return
        log.warning("job folder %s is damaged (%s); moved to %s", folder.name, reason, target)

    def _resume(self, job: Job) -> None:
        """Bring a job found on disk back to a state this run can act on."""
        folder = self._folder(job.job_id)
        _remove_leftovers(folder)
        if job.state not in ACTIVE:
            return
        ending = _ending_of(folder / "result")
        if ending is not None:
            log.info("job %s: its result was complete when the backend stopped; it is done", job.job_id)
            self._end(job, ending)
            return
        shutil.rmtree(folder / "result", ignore_errors=True)
        if job.cancel_requested:
            self._end(job, self._ending(JobState.CANCELLED, CANCELLED_RUNNING))
        elif job.state == JobState.RUNNING and job.attempts >= MAX_ATTEMPTS:
            log.warning("job %s: the backend stopped while running it, %d times; it fails", job.job_id, job.attempts)
            self._end(
                job,
                self._ending(
                    JobState.FAILED,
                    f"{STOPPED_WHILE_RUNNING} ({job.attempts} times, the most it "
                    "is tried): check the backend's log, then submit it again, "
                    "perhaps with fewer frames or steps",
                ),
            )
        else:
            job.state, job.started = JobState.QUEUED, 0.0

    def _end(self, job: Job, ending: dict) -> None:
        """Apply an ending found or decided at start-up; a manifest that cannot be written yet waits."""
        self._apply(job, ending)
        try:
            self.save(job)
        except OSError as error:
            log.error("job %s: cannot save its ending (%s); it is kept in memory and saved later", job.job_id, error)

    # Saving ----------------------------------------------------------------------------------

    def save(self, job: Job) -> None:
        """Write a job's manifest. If the disk refuses, the job is remembered and save_pending
        writes it once there is room, so the disk catches up with what this run reports."""
        with self.lock:
            self.unsaved.add(job.job_id)
            _write_json(self._folder(job.job_id) / "manifest.json", asdict(job))
            self.unsaved.discard(job.job_id)

    def save_pending(self) -> None:
        """Try again to write the manifests the disk refused; quietly wait for another turn if it still does."""
        with self.lock:
            for job_id in sorted(self.unsaved):
                job = self.jobs.get(job_id)
                if job is None:
                    self.unsaved.discard(job_id)
                    continue
                try:
                    self.save(job)
                except OSError:
                    return
                log.info("job %s: its manifest is saved now", job_id)

    # Jobs ------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def add(self, job: Job, frames: Sequence[bytes], masks: Sequence[bytes] = ()) -> None:
        """Store a new job, its source frames and subject masks, then queue it."""
        with self.lock:
            with durable.staged_folder(self._folder(job.job_id), mode=PRIVATE_FOLDER) as staging:
                _write_frames(staging / "source", frames)
                if masks:
                    _write_frames(staging / "subjects", masks)
                job.submitted = time.time()
                (staging / "manifest.json").write_text(_json(asdict(job)), encoding="utf-8")
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
        """A done job's frames, each checked against the size and checksum recorded when it ended;
        DamagedResult names the first frame that is missing, short or changed."""
        job = self.jobs[job_id]
        paths = sorted((self._folder(job_id) / "result").glob("frame_*.png"))
        records = job.result_files
        expected = len(records) if records is not None else job.frame_count
        damaged = f"the result of job {job_id!r} is damaged on the backend's disk"
        if len(paths) != expected:
            raise DamagedResult(
                f"{damaged}: {len(paths)} of its {expected} frames are there; submit the job again under a new id"
            )
        frames = []
        for number, path in enumerate(paths, start=1):
            try:
                frame = path.read_bytes()
            except OSError as error:
                raise DamagedResult(f"{damaged}: frame {number} cannot be read ({error.strerror})") from None
            if records is not None and frame_record(frame) != records[number - 1]:
                size = records[number - 1]["size"]
                change = "was changed" if len(frame) == size else f"is {len(frame)} bytes, not {size}"
                raise DamagedResult(f"{damaged}: frame {number} {change}; submit the job again under a new id")
            frames.append(frame)
        return frames

    def _place(self, job_id: str) -> int:
        """The queue place of `position`; the caller holds the lock."""
        return self.queue.index(job_id) + 1 if job_id in self.queue else 0

    def position(self, job_id: str) -> int:
        """0 for the running job (or one not waiting), 1 for the next to run, and so on."""
        with self.lock:
            return self._place(job_id)

    def standing(self, job_id: str) -> tuple[JobState, int]:
        """A job's state and place in the queue, read together: the worker can take a job between
        two separate reads, and a reply must never say 'queued' at position 0."""
        with self.lock:
            return self.jobs[job_id].state, self._place(job_id)

    def active_count(self) -> int:
        with self.lock:
            return sum(1 for job in self.jobs.values() if job.state in ACTIVE)

    def running(self) -> Job | None:
        with self.lock:
            return next((job for job in self.jobs.values() if job.state == JobState.RUNNING), None)

    def next_job(self) -> Job | None:
        """Take the first queued job and mark it running, on disk first: if its manifest cannot be
        written (the disk is full) the job stays first in the queue and the OSError is raised."""
        with self.lock:
            if not self.queue:
                return None
            job = self.jobs[self.queue[0]]
            job.state, job.started, job.attempts = JobState.RUNNING, time.time(), job.attempts + 1
            try:
                self.save(job)
            except OSError:
                job.state, job.started, job.attempts = JobState.QUEUED, 0.0, job.attempts - 1
                self.unsaved.discard(job.job_id)  # the disk still says queued, as memory does again
                raise
            self.queue.pop(0)
            return job

    def put_back(self, job: Job) -> None:
        """Queue a running job again, first in line, at a clean shutdown: that run does not count."""
        with self.lock:
            job.state, job.started, job.attempts = JobState.QUEUED, 0.0, max(0, job.attempts - 1)
            self.queue.insert(0, job.job_id)
            self.save(job)

    def cancel(self, job_id: str) -> JobState:
        """Cancel a job: a queued one ends now, a running one is marked for the worker to stop
        before its next forward pass, an ended one stays as it is. Returns the job's state after.
        One lock makes this atomic with the worker taking the job, so no cancel is ever lost."""
        with self.lock:
            job = self.jobs[job_id]
            if job_id in self.queue:
                self.queue.remove(job_id)
                self.finish(job, JobState.CANCELLED, CANCELLED_QUEUED)
            elif job.state == JobState.RUNNING and not job.cancel_requested:
                job.cancel_requested = True
                self.save(job)
            return job.state

    @staticmethod
    def _ending(
        state: JobState, message: str = "", stats: dict | None = None, frames: list[bytes] | None = None
    ) -> dict:
        return {
            "state": state,
            "message": message,
            "finished": time.time(),
            "stats": stats or {},
            "result_files": [frame_record(f) for f in frames] if frames is not None else None,
        }

    @staticmethod
    def _apply(job: Job, ending: dict) -> None:
        job.state, job.message, job.finished = JobState(ending["state"]), ending["message"], ending["finished"]
        job.stats, job.result_files = ending["stats"], ending["result_files"]

    def finish(
        self, job: Job, state: JobState, message: str = "", frames: list[bytes] | None = None, stats: dict | None = None
    ) -> None:
        """End a job. With a result, the rename of `.result/` to `result/` is the commit: before
        it nothing has changed, after it the job is done even if the manifest cannot be saved."""
        with self.lock:
            ending = self._ending(state, message, stats, frames)
            if frames is not None:
                self._commit_result(job.job_id, frames, ending)
            # The state changes in memory first, so a manifest that cannot be written still leaves the
            # job ended for this run of the backend, and save_pending writes it later.
            self._apply(job, ending)
            self.save(job)
            reached("manifest saved")

    def _commit_result(self, job_id: str, frames: list[bytes], ending: dict) -> None:
        result = self._folder(job_id) / "result"
        with durable.staged_folder(result, mode=PRIVATE_FOLDER) as staging:
            _write_frames(staging, frames)
            reached("frames written")
            (staging / "ending.json").write_text(_json(ending), encoding="utf-8")
            reached("ending written")
            shutil.rmtree(result, ignore_errors=True)  # only a damaged leftover can be there
        reached("result in place")

    def expire(self, now: float | None = None) -> list[str]:
        """Delete ended jobs older than the expiry; returns their ids."""
        now = time.time() if now is None else now
        with self.lock:
            old = [j.job_id for j in self.jobs.values() if j.state in ENDED and now - j.finished > self.expire_after]
            for job_id in old:
                shutil.rmtree(self._folder(job_id), ignore_errors=True)
                del self.jobs[job_id]
                self.unsaved.discard(job_id)
            return old

    def listing(self) -> list[Job]:
        with self.lock:
            return sorted(self.jobs.values(), key=lambda j: j.submitted)
