"""The ROUTER socket and its thread: every message in and out of the backend passes here.

Only this thread touches the socket. The worker reports through a queue that the loop drains
between polls. Each message is size-limited by the socket before it is read and validated
before it is acted on; a bad one gets an error reply naming the problem, and the loop carries on.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import cast

import zmq

from flowmotion import __version__
from protocol import (
    CLIENT_MESSAGES,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Accepted,
    Cancel,
    Error,
    Fetch,
    Heartbeat,
    Hello,
    JobList,
    JobState,
    JobStatus,
    Limits,
    ListJobs,
    Ping,
    Preview,
    Progress,
    ProtocolError,
    Reply,
    Result,
    StatusRequest,
    Submit,
    Welcome,
    decode_versioned,
    encode,
)
from protocol import errors as codes
from protocol.frames import check_frames
from protocol.messages import MAX_LISTED, peek

from .errors import BackendError
from .fairness import RateLimit
from .jobs import DamagedResult, Job, JobStore, request_digest
from .outbox import SEND_HWM, Outbox
from .security import AllowList, check_bind, secure_socket
from .settings import check_settings
from .worker import Worker

log = logging.getLogger("flowmotion.backend")

HEARTBEAT_EVERY = 1.0
CLIENT_FORGOTTEN_AFTER = 30.0
"""Seconds of silence after which a client gets no more heartbeats (clients ping every second)."""
EXPIRE_EVERY = 3600.0
ALLOW_LIST_EVERY = 2.0
"""Seconds between looks at the allowed client keys: an artist added there is let in without a restart."""
MESSAGES_PER_TURN = 64
"""Most messages read in one turn of the loop, so a flood never delays heartbeats and progress."""


class Server:
    """One backend: a ROUTER socket, a job store and a worker on one loaded model."""

    def __init__(
        self,
        bind: str,
        store: JobStore,
        worker: Worker,
        *,
        limits: Limits | None = None,
        model_name: str = "",
        device: str = "",
        keys_folder=None,
        insecure: bool = False,
        share_prompts: bool = False,
        context: zmq.Context | None = None,
    ):
        self.bind_address = bind
        self.store = store
        self.worker = worker
        self.limits = limits or Limits()
        self.model_name = model_name
        self.device = device
        self.keys_folder = keys_folder
        self.insecure = insecure
        self.share_prompts = share_prompts
        """With an allow-list: show every artist the prompts of others' jobs too (off: only their own)."""
        self.context = context or zmq.Context()
        self.instance = secrets.token_hex(8)
        self.stopping = threading.Event()
        self.clients: dict[bytes, float] = {}
        self.versions: dict[bytes, int] = {}
        """The protocol version each client spoke last: news and heartbeats go out in it."""
        self.keys: dict[bytes, str] = {}
        """Each client's public key (Z85), where an allow-list admitted it: who owns the jobs it submits."""
        self.preview_clients: set[bytes] = set()
        """Clients whose hello asked for previews."""
        self.request: tuple[bytes, str | None, int] | None = None
        """The message being handled: its client, request id and version, for the replies to it."""
        self.rate = RateLimit(self.limits.max_messages_per_second)
        self.answered = 0
        """Messages handled since the start (answered or refused): lets a test wait for the loop."""
        self.watchers: dict[str, set[bytes]] = {}
        self.allow_list: AllowList | None = None
        self.public_key: str | None = None
        self.socket: zmq.Socket | None = None
        self.outbox: Outbox | None = None
        self.address = bind
        self.thread: threading.Thread | None = None

    # Setup -----------------------------------------------------------------------------------

    def open(self) -> str:
        """Bind the socket (secured where the address needs it); returns the bound address."""
        check_bind(self.bind_address, self.keys_folder, self.insecure)
        socket = self.context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, self.limits.max_message_bytes)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 0)
        socket.setsockopt(zmq.SNDHWM, SEND_HWM)
        if self.keys_folder is not None:
            self.allow_list, self.public_key = secure_socket(socket, self.keys_folder)
        try:
            socket.bind(self.bind_address)
        except zmq.ZMQError as error:
            socket.close(0)
            self.close_allow_list()
            raise BackendError(f"cannot listen on {self.bind_address}: {error}") from None
        self.socket = socket
        self.outbox = Outbox(socket, self.limits.max_unread_bytes)
        self.address = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.address

    def start(self) -> Server:
        """Open the socket if needed and run the loop and the worker in background threads."""
        if self.socket is None:
            self.open()
        self.worker.start()
        self.thread = threading.Thread(target=self.serve, name="flowmotion-server", daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, let the running job notice (it stays queued for the next start), close."""
        self.stopping.set()
        self.worker.stop()
        if self.worker.is_alive():
            self.worker.join(timeout)
        if self.thread is not None:
            self.thread.join(timeout)
        if self.socket is not None:
            self.socket.close(0)
            self.socket = None
        self.close_allow_list()

    def close_allow_list(self) -> None:
        if self.allow_list is not None:
            self.allow_list.stop()
            self.allow_list = None

    # The loop --------------------------------------------------------------------------------

    def serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        last = {"expiry": 0.0, "allow_list": time.monotonic()}
        next_beat = time.monotonic()
        while not self.stopping.is_set():
            # Wake for the next heartbeat even while messages keep coming, so beats stay on time.
            if poller.poll(int(max(0.0, min(0.05, next_beat - time.monotonic())) * 1000)):
                self.receive_some(next_beat)
            # The preview first: one the worker made before a job's ending goes out before that ending.
            self.send_preview()
            self.drain_events()
            now = time.monotonic()
            if now >= next_beat:
                self.heartbeat(now)
                # On a fixed cadence, not a second after the last beat: a late beat does not delay the rest.
                next_beat = max(next_beat + HEARTBEAT_EVERY, now + HEARTBEAT_EVERY / 2)
            if now - last["expiry"] >= EXPIRE_EVERY:
                self.expire()
                last["expiry"] = now
            if self.allow_list is not None and now - last["allow_list"] >= ALLOW_LIST_EVERY:
                self.allow_list.refresh()
                last["allow_list"] = now

    def receive_some(self, next_beat: float) -> None:
        for _ in range(MESSAGES_PER_TURN):
            try:
                parts = self.receive_one()
            except zmq.Again:
                return
            if len(parts) < 2:
                continue  # an empty message: nothing to answer
            client, message_parts = parts[0], parts[1:]
            self.clients[client] = time.monotonic()
            admitted = self.rate.admit(client)
            if admitted == "yes":
                self.answer(client, message_parts)
            elif admitted == "refuse":
                self.refuse(
                    client,
                    message_parts,
                    codes.RATE_LIMITED,
                    (
                        f"this connection sent more than {self.limits.max_messages_per_second} messages a second (the "
                        "limit max_messages_per_second); the backend ignores its messages until it slows down"
                    ),
                )
            self.answered += 1
            if time.monotonic() >= next_beat:
                return

    def receive_one(self) -> list[bytes]:
        """The next message's parts; behind an allow-list, also notes the sender's public key."""
        assert self.socket is not None  # the loop runs only while the socket is open
        if self.allow_list is None:
            return self.socket.recv_multipart(flags=zmq.NOBLOCK, copy=True)
        frames = self.socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        if len(frames) >= 2:
            self.keys[frames[0].bytes] = cast(str, frames[1].get("User-Id"))  # ZeroMQ's text property
        return [frame.bytes for frame in frames]

    def answer(self, client: bytes, parts: list[bytes]) -> None:
        """Decode and handle one message; anything that goes wrong becomes an error reply."""
        try:
            message, frames, version = decode_versioned(parts, CLIENT_MESSAGES, self.limits)
            self.versions[client] = version
            self.request = (client, getattr(message, "request_id", None), version)
            self.handle(client, message, frames)
        except ProtocolError as error:
            self.refuse(client, parts, error.code, error.message, error.field)
        except OSError as error:
            log.error("cannot store or read a job: %s", error)
            self.refuse(
                client,
                parts,
                codes.BACKEND_ERROR,
                f"the backend cannot use its job store ({error}); its operator must free disk space or fix the folder",
            )
        except Exception as error:  # one message must never take down the loop that serves everyone
            log.exception("failed on a message")
            self.refuse(
                client,
                parts,
                codes.BACKEND_ERROR,
                f"the backend failed on this message: {type(error).__name__}: {error}",
            )
        finally:
            self.request = None

    def refuse(self, client: bytes, parts: list[bytes], code: str, message: str, field: str | None = None) -> None:
        seen, handling = peek(parts[0], self.limits), self.request
        self.request = (client, seen["request_id"], seen["v"] or self.versions.get(client, PROTOCOL_VERSION))
        try:
            self.reply(client, Error(code=code, message=message, field=field, job_id=seen["job_id"]))
        finally:
            self.request = handling

    def reply(self, client: bytes, message, frames: Sequence[bytes] = ()) -> None:
        """Send `message` to `client` in its protocol version; an answer to the message being
        handled names that message's request id."""
        version = self.versions.get(client, PROTOCOL_VERSION)
        message = self.as_seen_by(client, message)
        if self.request is not None and self.request[0] == client:
            _, request_id, version = self.request
            if isinstance(message, Reply):
                message = replace(message, request_id=request_id)
        parts = encode(message, list(frames), version)
        assert self.outbox is not None  # replies go out only from the loop, which runs with the socket open
        if not self.outbox.has_room(client, sum(len(part) for part in parts)):
            unread = self.outbox.unread(client)
            log.warning(
                "client %s: refused a %s of %d bytes, it has %d unread",
                client.hex(),
                message.TYPE,
                sum(len(part) for part in parts),
                unread,
            )
            parts = encode(
                Error(
                    code=codes.UNREAD_LIMIT,
                    job_id=getattr(message, "job_id", None),
                    message=(
                        f"this connection has {unread} bytes of replies it has not read, and the backend holds at most "
                        f"{self.limits.max_unread_bytes} (the limit max_unread_bytes): read them, then ask again"
                    ),
                    request_id=getattr(message, "request_id", None),
                ),
                version=version,
            )
        if not self.outbox.send(client, parts):
            log.warning("dropped a %s message to a client that is not reading", message.TYPE)

    # Owners ----------------------------------------------------------------------------------

    def owner_of_request(self, client: bytes) -> str:
        """Who owns a job this client submits: its public key behind an allow-list, else nobody."""
        return self.keys.get(client, "") if self.allow_list is not None else ""

    def may_manage(self, client: bytes, job: Job) -> bool:
        """Behind an allow-list, only a job's owner or an admin key may cancel it; without one (and
        for a job with no owner) every job is everyone's."""
        if self.allow_list is None or not job.owner:
            return True
        key = self.keys.get(client)
        return key == job.owner or key in self.allow_list.admins

    def as_seen_by(self, client: bytes, message):
        """Another artist's job is shown without its prompts, unless the backend shares them."""
        if not isinstance(message, (JobStatus, Result)) or self.share_prompts:
            return message
        job = self.store.get(message.job_id)
        if job is None or self.may_manage(client, job):
            return message
        if isinstance(message, JobStatus):
            return replace(message, prompt="")
        return replace(message, prompt="", negative_prompt="")

    def heartbeat(self, now: float) -> None:
        assert self.outbox is not None  # beats come only from the loop
        self.outbox.forget_done()
        self.rate.forget_idle()
        running = self.store.running()
        beat = Heartbeat(
            time=time.time(),
            queue_length=self.store.active_count(),
            instance=self.instance,
            running=running.job_id if running else None,
        )
        for client, seen in list(self.clients.items()):
            if now - seen > CLIENT_FORGOTTEN_AFTER:
                del self.clients[client]
                self.versions.pop(client, None)
                self.keys.pop(client, None)
                self.preview_clients.discard(client)
                self.outbox.forget(client)
            else:
                self.reply(client, beat)

    def expire(self) -> None:
        for job_id in self.store.expire():
            self.watchers.pop(job_id, None)
            log.info("job %s: expired", job_id)

    def drain_events(self) -> None:
        while True:
            try:
                kind, job_id, payload = self.worker.events.get_nowait()
            except queue.Empty:
                return
            if kind == "progress":
                p = payload
                self.notify(
                    job_id,
                    Progress(
                        job_id=job_id,
                        phase=p.phase,
                        step=p.step,
                        total=p.total,
                        elapsed=p.elapsed,
                        eta=p.eta_seconds,
                        forward_passes=p.forward_passes,
                    ),
                )
                continue
            job = self.store.get(job_id)
            if job is not None:
                self.notify(job_id, self.status_of(job))
            if kind == "ended":
                self.watchers.pop(job_id, None)  # no more news will come; a status or fetch asks afresh

    def send_preview(self) -> None:
        """Offer the worker's newest preview to the job's watchers that may see it; a client still
        holding an earlier one unread goes without (the outbox drops it, nothing waits)."""
        preview = self.worker.previews.take()
        if preview is None:
            return
        assert self.outbox is not None  # previews go out only from the loop, which runs with the socket open
        job = self.store.get(preview.message.job_id)
        if job is None or job.state != JobState.RUNNING:
            return
        for client in self.watchers.get(job.job_id, ()):
            if not self.shows_previews(client, job):
                continue
            try:
                self.outbox.offer(client, encode(preview.message, [preview.pixels], self.versions[client]))
            except Exception:  # a preview is never worth the loop that serves everyone
                log.exception("job %s: a preview could not be sent", job.job_id)

    def shows_previews(self, client: bytes, job: Job) -> bool:
        """A preview shows the take: only to connections that asked for previews, in a version that
        has them, and, behind an allow-list, only to the job's owner (an admin's cancel right
        does not extend to seeing another artist's take)."""
        if client not in self.preview_clients or self.versions.get(client, 0) < Preview.SINCE:
            return False
        return self.allow_list is None or not job.owner or self.keys.get(client) == job.owner

    def notify(self, job_id: str, message) -> None:
        for client in self.watchers.get(job_id, ()):
            self.reply(client, message)

    def watch(self, client: bytes, job: Job) -> None:
        """Send this client the job's news from now on (only a job still queued or running has any)."""
        if job.state.active:
            self.watchers.setdefault(job.job_id, set()).add(client)

    # Messages --------------------------------------------------------------------------------

    def handle(self, client: bytes, message, frames: list[bytes]) -> None:
        if isinstance(message, Ping):
            return  # its work is done: the client is on the heartbeat list again
        if isinstance(message, Hello):
            self.hello(client, message)
        elif isinstance(message, Submit):
            self.submit(client, message, frames)
        elif isinstance(message, Cancel):
            self.cancel(client, message.job_id)
        elif isinstance(message, StatusRequest):
            job = self.known(message.job_id)
            self.watch(client, job)
            self.reply(client, self.status_of(job))
        elif isinstance(message, Fetch):
            self.fetch(client, message.job_id)
        elif isinstance(message, ListJobs):
            jobs = self.store.listing()
            self.reply(client, JobList(jobs=[self.listed(client, job) for job in jobs[-MAX_LISTED:]], total=len(jobs)))

    def hello(self, client: bytes, message: Hello) -> None:
        """Answer in the newest version both sides speak; the client speaks it from now on."""
        assert self.request is not None  # a hello is answered while it is being handled
        spoken = message.versions or [self.request[2]]
        common = set(spoken) & set(SUPPORTED_VERSIONS)
        if not common:
            raise ProtocolError(
                codes.VERSION_MISMATCH,
                f"this backend speaks protocol versions "
                f"{', '.join(map(str, SUPPORTED_VERSIONS))} and the client protocol version "
                f"{', '.join(map(str, spoken[:16]))}; install the same FlowMotion release on both the "
                "backend and the add-on",
                "versions",
            )
        version = max(common)
        self.versions[client] = version
        if message.previews and version >= Preview.SINCE:
            self.preview_clients.add(client)
        else:
            self.preview_clients.discard(client)
        self.request = (client, message.request_id, version)
        log.info("client %s: hello from %r, speaking protocol version %d", client.hex(), message.client, version)
        self.reply(client, self.welcome(version))

    def welcome(self, version: int = PROTOCOL_VERSION) -> Welcome:
        return Welcome(
            server=f"flowmotion-backend {__version__}",
            model=self.model_name,
            device=self.device,
            limits=self.limits.to_dict(),
            queue_length=self.store.active_count(),
            instance=self.instance,
            secure=self.public_key is not None,
            version=version,
        )

    def known(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise ProtocolError(
                codes.UNKNOWN_JOB, f"no job {job_id!r} on this backend (never submitted, or expired)", "job_id"
            )
        return job

    def status_of(self, job: Job) -> JobStatus:
        state, position = self.store.standing(job.job_id)
        return JobStatus(
            job_id=job.job_id,
            state=state,
            position=position,
            message=job.message,
            prompt=job.prompt,
            seed=job.seed,
            shot=job.shot,
            frame_count=job.frame_count,
            submitted=job.submitted,
        )

    def listed(self, client: bytes, job: Job) -> dict:
        """A job's entry in a `jobs` answer: the fields of its `job` message, as this client may see them."""
        entry = asdict(self.as_seen_by(client, self.status_of(job)))
        del entry["request_id"]
        return entry

    def submit(self, client: bytes, message: Submit, frames: list[bytes]) -> None:
        # What the request asks for: neither its id nor the id of the message that carried it.
        fields = {k: v for k, v in asdict(message).items() if k not in ("job_id", "request_id")}
        digest = request_digest(fields, frames)
        existing = self.store.get(message.job_id)
        if existing is not None:
            if existing.request_digest != digest:
                raise ProtocolError(
                    codes.JOB_CONFLICT,
                    f"job id {message.job_id!r} is taken by a different request; choose a new id",
                    "job_id",
                )
            self.watch(client, existing)
            self.reply(
                client,
                Accepted(existing.job_id, *self.store.standing(existing.job_id)),
            )
            return
        if self.store.active_count() >= self.limits.max_queue:
            raise ProtocolError(
                codes.LIMIT_EXCEEDED,
                f"the queue is full ({self.limits.max_queue} jobs, the limit "
                "max_queue); try again when a job has finished",
            )
        check_settings(message.settings)
        frames, masks = frames[: message.frame_count], frames[message.frame_count :]
        width, height = check_frames(frames)
        if masks:
            try:
                mask_size = check_frames(masks)
            except ProtocolError as error:
                raise ProtocolError(error.code, f"subject masks: {error.message}", "masks") from None
            if mask_size != (width, height):
                raise ProtocolError(
                    codes.BAD_FRAMES,
                    f"subject masks are {mask_size[0]}x{mask_size[1]} but frames are "
                    f"{width}x{height}: render both at the same size",
                    "masks",
                )
        if width > self.limits.max_width or height > self.limits.max_height:
            raise ProtocolError(
                codes.LIMIT_EXCEEDED,
                f"frames are {width}x{height}; this backend takes at most "
                f"{self.limits.max_width}x{self.limits.max_height} "
                "(the limits max_width and max_height)",
                "frames",
            )
        job = Job(
            job_id=message.job_id,
            prompt=message.prompt,
            frame_count=message.frame_count,
            width=width,
            height=height,
            negative_prompt=message.negative_prompt,
            seed=message.seed,
            shot=message.shot,
            fps=message.fps,
            settings=message.settings,
            mask_count=message.mask_count,
            request_digest=digest,
            owner=self.owner_of_request(client),
        )
        self.store.add(job, frames, masks)
        self.worker.wake.set()
        self.watch(client, job)
        log.info(
            "job %s: queued at %d (%d frames %dx%d%s)",
            job.job_id,
            self.store.position(job.job_id),
            job.frame_count,
            width,
            height,
            ", with subject masks" if masks else "",
        )
        self.reply(client, Accepted(job.job_id, *self.store.standing(job.job_id)))

    def cancel(self, client: bytes, job_id: str) -> None:
        job = self.known(job_id)
        if not self.may_manage(client, job):
            raise ProtocolError(
                codes.NOT_OWNER,
                f"job {job_id!r} was submitted with another artist's key: only "
                "that artist, or a key marked admin on the backend, can cancel it",
                "job_id",
            )
        self.watch(client, job)
        before, after = job.state, self.store.cancel(job_id)
        if after == JobState.RUNNING:
            log.info("job %s: cancel asked while it runs", job_id)
            self.reply(client, Accepted(job_id=job_id, state=JobState.RUNNING, position=0))
            return  # the worker's ending reports 'cancelled' to every watcher
        if before == JobState.QUEUED:
            log.info("job %s: cancelled while queued", job_id)
            self.notify(job_id, self.status_of(job))
            self.watchers.pop(job_id, None)
            return
        self.reply(client, self.status_of(job))

    def fetch(self, client: bytes, job_id: str) -> None:
        job = self.known(job_id)
        self.watch(client, job)
        if job.state == JobState.FAILED:
            raise ProtocolError(codes.JOB_FAILED, job.message, "job_id")
        if job.state != JobState.DONE:
            raise ProtocolError(codes.NOT_READY, f"job {job_id!r} is {job.state}; fetch it once it is done", "job_id")
        try:
            frames = self.store.result_frames(job_id)
        except DamagedResult as error:
            log.error("job %s: %s", job_id, error)
            raise ProtocolError(codes.DAMAGED_RESULT, str(error), "job_id") from None
        self.reply(
            client,
            Result(
                job_id=job_id,
                frame_count=len(frames),
                width=job.width,
                height=job.height,
                fps=job.fps,
                prompt=job.prompt,
                negative_prompt=job.negative_prompt,
                seed=job.seed,
                shot=job.shot,
                settings=job.settings,
                stats=job.stats,
            ),
            frames,
        )
