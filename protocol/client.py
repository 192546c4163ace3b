"""The client side of the protocol: a non-blocking DEALER socket that a UI timer can poll.

Nothing here blocks unless a method says so (`wait`, for command lines and tests): `poll()`
returns what has arrived and returns at once, so Blender's UI never freezes.

Each request gets a request id (returned by the method that sent it, echoed by the backend in
every answer to it). The first hello offers every protocol version this side speaks; an older
backend that refuses it is greeted again in the older version, and requests made before the
welcome wait in the client until it says which version to speak.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

import zmq

from .errors import BAD_MESSAGE, JOB_CONFLICT, UNKNOWN_JOB, UNREACHABLE, UNREAD_LIMIT, VERSION_MISMATCH, ProtocolError
from .limits import Limits
from .messages import (
    PROTOCOL_VERSION,
    SERVER_MESSAGES,
    SUPPORTED_VERSIONS,
    Cancel,
    Error,
    Fetch,
    Heartbeat,
    Hello,
    JobStatus,
    ListJobs,
    Message,
    Ping,
    Request,
    Result,
    StatusRequest,
    Submit,
    Welcome,
    decode,
    encode,
)
from .states import JobState

HEARTBEAT_TIMEOUT = 4.0
"""Seconds without any message after which the backend counts as gone (it sends one a second)."""
KEEPALIVE_EVERY = 1.0
"""Seconds between pings while the client polls: the backend sends heartbeats to clients it hears from."""
HELLO_AGAIN_AFTER = 1.0
"""Seconds before a hello is repeated when the backend's heartbeats come without a welcome."""
FETCH_AGAIN_AFTER = 0.5
"""Seconds before a fetch refused with `unread_limit` is sent again (the earlier replies are on their way)."""
FETCH_TRIES = 20
"""Fetches of one job refused with `unread_limit` before the refusal is passed on."""

# A result of many full-HD frames is large: the client's own decoding limits are generous.
CLIENT_LIMITS = Limits(max_message_bytes=256 * 2**20, max_header_bytes=16 * 2**20, max_frames=100_000)


class BackendClient:
    """One connection to a FlowMotion backend."""

    def __init__(
        self,
        address: str,
        *,
        server_public_key: str | bytes | None = None,
        client_public_key: str | bytes | None = None,
        client_secret_key: str | bytes | None = None,
        connect_timeout: float = 5.0,
        name: str = "flowmotion-client",
        context: zmq.Context | None = None,
        previews: bool = False,
    ):
        self.address = address
        self.previews = previews
        """Ask the backend for `preview` messages of the running jobs this connection follows."""
        self.connect_timeout = connect_timeout
        self.name = name
        self.context = context or zmq.Context.instance()
        self.keys = (server_public_key, client_public_key, client_secret_key)
        self.socket: zmq.Socket | None = None
        self.welcome: Welcome | None = None
        self.connected_at = 0.0
        self.last_seen = 0.0
        self.inbox: deque = deque()  # arrived after the message `wait` returned
        self.queue_length = 0
        self.last_sent = 0.0
        self.last_hello = 0.0
        self.following: set[str] = set()
        """Jobs this client asked about and has not seen the end of: asked about again when the
        backend restarts, since a restarted backend no longer knows who follows what."""
        self.version: int | None = None
        """The protocol version the backend chose in its welcome; None until then."""
        self.hello_version = PROTOCOL_VERSION
        self.waiting: deque = deque()
        """Requests made before the welcome, sent in the chosen version when it comes."""
        self.request_numbers = itertools.count(1)
        self.refetch: dict[str, tuple[float, int]] = {}
        """Jobs whose fetch was refused with `unread_limit`: when to ask again, and how often it was."""

    def connect(self) -> BackendClient:
        """Open the socket and say hello; returns at once (ZeroMQ connects in the background)."""
        self.close()
        socket = self.context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, CLIENT_LIMITS.max_message_bytes)
        server_key, public_key, secret_key = self.keys
        if server_key:
            if not (public_key and secret_key):
                socket.close(0)
                raise ProtocolError(BAD_MESSAGE, "a secured backend needs this client's key pair; create one first")
            socket.curve_serverkey = _key(server_key)
            socket.curve_publickey = _key(public_key)
            socket.curve_secretkey = _key(secret_key)
        try:
            socket.connect(self.address)
        except zmq.ZMQError as error:
            socket.close(0)
            raise ProtocolError(UNREACHABLE, f"cannot connect to {self.address!r}: {error}") from None
        self.socket = socket
        self.welcome = None
        self.waiting.clear()
        self.connected_at = time.monotonic()
        self.hello()
        for job_id in sorted(self.following):
            self.status(job_id)
        return self

    def hello(self, version: int | None = None) -> str:
        """Greet the backend in `version` (the newest by default), offering every version this side
        speaks; returns the request id."""
        self.last_hello = time.monotonic()
        self.version, self.hello_version = None, version or PROTOCOL_VERSION
        return self._ask(Hello(client=self.name, versions=list(SUPPORTED_VERSIONS), previews=self.previews))

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(0)
            self.socket = None

    @property
    def alive(self) -> bool:
        """The backend has answered, and spoke within the last few seconds."""
        return self.welcome is not None and time.monotonic() - self.last_seen < HEARTBEAT_TIMEOUT

    def check_reachable(self) -> None:
        """Raise ProtocolError(UNREACHABLE) once the backend has been silent for too long."""
        now = time.monotonic()
        if self.welcome is None and now - self.connected_at > self.connect_timeout:
            raise self._never_answered(self.connect_timeout)
        if self.welcome is not None and now - self.last_seen > HEARTBEAT_TIMEOUT:
            raise ProtocolError(UNREACHABLE, f"the backend at {self.address} stopped answering")

    def _never_answered(self, seconds: float) -> ProtocolError:
        return ProtocolError(
            UNREACHABLE,
            f"the backend at {self.address} did not answer within {seconds:g} s: is `flowmotion-backend serve` "
            "running there, and are the address and the server key right?",
        )

    def send(self, message: Message, frames: Iterable[bytes] = ()) -> str | None:
        """Send a message (a request gets a request id unless it has one); returns the request id.
        Before the welcome, requests wait in the client and go out when it arrives."""
        if self.socket is None:
            raise ProtocolError(UNREACHABLE, "not connected; call connect() first")
        if isinstance(message, Request) and message.request_id is None:
            message = replace(message, request_id=f"r{next(self.request_numbers)}")
        job_id = getattr(message, "job_id", None)
        if job_id is not None:
            self.following.add(job_id)
        if self.version is None and not isinstance(message, Hello):
            self.waiting.append((message, list(frames)))
        else:
            self._send_now(message, list(frames), self.version or self.hello_version)
        return getattr(message, "request_id", None)

    def _ask(self, request: Request, frames: Iterable[bytes] = ()) -> str:
        """Send a request; its id, which every request gets."""
        request_id = self.send(request, frames)
        assert request_id is not None
        return request_id

    def _send_now(self, message: Message, frames: list[bytes], version: int) -> None:
        assert self.socket is not None  # send() checks, and a welcome only comes to a connected client
        try:
            self.socket.send_multipart(encode(message, frames, version), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise ProtocolError(UNREACHABLE, f"the backend at {self.address} is not accepting messages") from None
        self.last_sent = time.monotonic()

    def submit(self, job_id: str, frames: list[bytes], prompt: str, masks: Sequence[bytes] = (), **fields) -> str:
        """Send a job: PNG bytes per frame, the prompt, optionally a subject mask PNG per frame, and
        Submit's other fields by name. Returns the request id."""
        return self._ask(
            Submit(job_id=job_id, prompt=prompt, frame_count=len(frames), mask_count=len(masks), **fields),
            [*frames, *masks],
        )

    def cancel(self, job_id: str) -> str:
        return self._ask(Cancel(job_id=job_id))

    def status(self, job_id: str) -> str:
        return self._ask(StatusRequest(job_id=job_id))

    def fetch(self, job_id: str) -> str:
        return self._ask(Fetch(job_id=job_id))

    def list_jobs(self) -> str:
        return self._ask(ListJobs())

    def poll(self) -> list[tuple[Message, list[bytes]]]:
        """Every message that has arrived, decoded; never blocks. A message that cannot be decoded
        comes back as a local Error, so one bad message never stops the caller."""
        received, self.inbox = list(self.inbox), deque()
        while self.socket is not None:
            try:
                parts = self.socket.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            self.last_seen = time.monotonic()
            try:
                message, frames = decode(parts, SERVER_MESSAGES, CLIENT_LIMITS)
            except ProtocolError as error:
                message, frames = Error(code=error.code, message=f"from the backend: {error.message}"), []
            if isinstance(message, Heartbeat):
                self._heartbeat(message)
                continue
            if self._handled_here(message):
                continue
            self._note(message)
            received.append((message, frames))
        received.extend(self.inbox)  # requests refused here, in this poll
        self.inbox = deque()
        self._fetch_again()
        self._keep_alive()
        return received

    def _handled_here(self, message: Message) -> bool:
        """Refusals this client deals with itself: an older backend's version mismatch (greet it in
        the older version) and a fetch refused for unread replies (ask again shortly)."""
        if not isinstance(message, Error):
            return False
        if message.code == VERSION_MISMATCH and self.version is None:
            # Only a version 2 backend refuses a hello for its `v` (later ones read a newer hello and
            # answer in the newest version both speak), so such a refusal means: greet it in 2.
            oldest = SUPPORTED_VERSIONS[0]
            if message.field == "v" and self.hello_version != oldest:
                self.hello(oldest)
                return True
            self._refuse_waiting(message)
        if message.code == UNREAD_LIMIT and message.job_id:
            _, tries = self.refetch.get(message.job_id, (0.0, 0))
            if tries < FETCH_TRIES:
                self.refetch[message.job_id] = (time.monotonic() + FETCH_AGAIN_AFTER, tries + 1)
                return True
            self.refetch.pop(message.job_id, None)
        return False

    def _refuse_waiting(self, refusal: Error) -> None:
        """No version in common: the requests waiting for a welcome fail with the backend's reason."""
        waiting, self.waiting = self.waiting, deque()
        for request, _ in waiting:
            self.inbox.append(
                (
                    Error(
                        code=refusal.code,
                        message=refusal.message,
                        field=refusal.field,
                        job_id=getattr(request, "job_id", None),
                        request_id=request.request_id,
                    ),
                    [],
                )
            )

    def _fetch_again(self) -> None:
        now = time.monotonic()
        for job_id, (due, tries) in list(self.refetch.items()):
            if now >= due and self.socket is not None:
                self.refetch[job_id] = (float("inf"), tries)  # until its answer comes
                self.fetch(job_id)

    def _note(self, message: Message) -> None:
        """Keep the connection's own state: the welcome, the queue, the jobs still worth following."""
        if isinstance(message, Welcome):
            self.welcome = message
            self.queue_length = message.queue_length
            self.version = message.version if message.version in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0]
            waiting, self.waiting = self.waiting, deque()
            for request, frames in waiting:
                self._send_now(request, frames, self.version)
        if isinstance(message, (Result, Error)) and message.job_id:
            self.refetch.pop(message.job_id, None)  # answered: a result, or a refusal to pass on
        ended = (
            isinstance(message, Result)
            or (isinstance(message, JobStatus) and message.state in (JobState.FAILED, JobState.CANCELLED))
            or (isinstance(message, Error) and message.code in (UNKNOWN_JOB, JOB_CONFLICT))
        )
        job_id = getattr(message, "job_id", None)
        if ended and job_id:
            self.following.discard(job_id)

    def _heartbeat(self, beat: Heartbeat) -> None:
        self.queue_length = beat.queue_length
        if self.welcome is not None and beat.instance == self.welcome.instance:
            return
        # The backend restarted (or the first hello was lost): say hello again and ask about every
        # followed job, which also subscribes this connection to their news on the new backend.
        if time.monotonic() - self.last_hello < HELLO_AGAIN_AFTER:
            return
        self.hello()
        for job_id in sorted(self.following):
            self.status(job_id)

    def _keep_alive(self) -> None:
        if self.version is None:
            return  # nothing to keep alive before the welcome: the hello put this client on the list
        if self.socket is not None and time.monotonic() - self.last_sent >= KEEPALIVE_EVERY:
            try:
                self.send(Ping())
            except ProtocolError:
                pass  # a full outgoing queue: the backend is gone, which check_reachable reports

    def wait(self, accept: Callable[[Message], bool], timeout: float) -> tuple[Message, list[bytes]]:
        """Block until a message that `accept` takes arrives (for command lines and tests).

        Errors from the backend that are not accepted raise ProtocolError; silence raises UNREACHABLE.
        """
        deadline = time.monotonic() + timeout
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while True:
            self.inbox = deque(self.poll())
            while self.inbox:
                message, frames = self.inbox.popleft()
                if accept(message):
                    return message, frames
                if isinstance(message, Error):
                    raise ProtocolError(message.code, message.message, message.field)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if self.welcome is None:
                    raise self._never_answered(timeout)
                raise ProtocolError(UNREACHABLE, f"no answer from the backend at {self.address} within {timeout:g} s")
            self.check_reachable()
            poller.poll(int(min(remaining, 0.2) * 1000))


def _key(value: str | bytes) -> bytes:
    return value.encode("ascii") if isinstance(value, str) else value
