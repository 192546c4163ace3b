"""Every message of the FlowMotion protocol, and its encoding on the wire.

A message is a ZeroMQ multipart message: first a small msgpack map (the header), then, for the
messages that carry frames (submit, result), one PNG image per part (a submit's subject masks
follow its frames). The header always holds
`type` and `v` (the protocol version) and the fields of its type, nothing else.

Versions: each side speaks every version in SUPPORTED_VERSIONS. A message is read by the rules of
the version it names, so an older client is answered in its own version; a field added in a later
version carries `since` in its metadata and is left out when encoding for an older one. `hello`
names the versions a client speaks and `welcome` the one the backend chose; a `hello` of a version
newer than this side's is still read (its unknown fields ignored), so a newer client learns which
older version to speak.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import msgpack

from .errors import BAD_FIELD, BAD_MESSAGE, LIMIT_EXCEEDED, UNKNOWN_TYPE, VERSION_MISMATCH, ProtocolError
from .limits import Limits
from .states import JobState

PROTOCOL_VERSION = 4
SUPPORTED_VERSIONS = (2, 3, 4)
"""Version 2: subject masks. Version 3: request ids, version negotiation in hello/welcome.
Version 4: live previews of a running take (a version 3 backend reads a version 4 hello and leaves
its `previews` out, so a newer add-on still works with it, without previews)."""
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,64}")
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SETTING_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
MAX_SEED = 2**63 - 1
MAX_SETTINGS = 64
MAX_TEXT = 4096
MAX_LISTED = 500
"""Most jobs one `jobs` answer lists: the newest; `total` says how many there are."""
MAX_PREVIEW_FRAMES = 4
MAX_PREVIEW_SIDE = 128
MAX_PREVIEW_BYTES = MAX_PREVIEW_FRAMES * MAX_PREVIEW_SIDE * MAX_PREVIEW_SIDE * 3
"""A preview's pixels are at most 192 KiB: a glimpse of the take, never a second result."""


def _job_id(value: str, limits: Limits) -> None:
    if not JOB_ID.fullmatch(value):
        raise ValueError("must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")


def _prompt(value: str, limits: Limits) -> None:
    if len(value) > limits.max_prompt_chars:
        raise ProtocolError(LIMIT_EXCEEDED, f"is {len(value)} characters; the limit is {limits.max_prompt_chars}")


def _frame_count(value: int, limits: Limits) -> None:
    if not 1 <= value <= limits.max_frames:
        raise ProtocolError(LIMIT_EXCEEDED, f"is {value}; a job takes 1 to {limits.max_frames} frames")


def _seed(value: int, limits: Limits) -> None:
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"must be between 0 and {MAX_SEED}")


def _fps(value: float, limits: Limits) -> None:
    if not (math.isfinite(value) and 0 < value <= 1000):
        raise ValueError("must be a frame rate above 0 and at most 1000")


def _settings(value: dict, limits: Limits) -> None:
    if len(value) > MAX_SETTINGS:
        raise ValueError(f"has {len(value)} entries; at most {MAX_SETTINGS}")
    for name, setting in value.items():
        if not isinstance(name, str) or not SETTING_NAME.fullmatch(name):
            raise ValueError(f"has a bad setting name {name!r}")
        if not isinstance(setting, (bool, int, float, str)) or (isinstance(setting, str) and len(setting) > MAX_TEXT):
            raise ValueError(f"setting {name!r} must be a number, a boolean or a short text")
        if isinstance(setting, float) and not math.isfinite(setting):
            raise ValueError(f"setting {name!r} must be a finite number")


def _non_negative(value, limits: Limits) -> None:
    if value < 0:
        raise ValueError("must be 0 or more")


def _state(value: str, limits: Limits) -> None:
    if value not in set(JobState):
        raise ValueError(f"must be one of {', '.join(JobState)}")


def _positive(value: int, limits: Limits) -> None:
    if value < 1:
        raise ValueError("must be 1 or more")


def _preview_frames(value: int, limits: Limits) -> None:
    if not 1 <= value <= MAX_PREVIEW_FRAMES:
        raise ValueError(f"must be 1 to {MAX_PREVIEW_FRAMES}")


def _preview_side(value: int, limits: Limits) -> None:
    if not 1 <= value <= MAX_PREVIEW_SIDE:
        raise ValueError(f"must be 1 to {MAX_PREVIEW_SIDE} pixels")


def _instance(value: str, limits: Limits) -> None:
    if not 1 <= len(value) <= 64:
        raise ValueError("must be 1 to 64 characters")


def _request_id(value: str, limits: Limits) -> None:
    if not REQUEST_ID.fullmatch(value):
        raise ValueError("must be 1 to 64 printable ASCII characters without spaces")


def _versions(value: list, limits: Limits) -> None:
    if len(value) > 16 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError("must list at most 16 protocol versions (integers)")


def _job_maps(value: list, limits: Limits) -> None:
    for number, job in enumerate(value, start=1):
        if not isinstance(job, dict) or not isinstance(job.get("job_id"), str):
            raise ValueError(f"entry {number} is not a job map with a job_id")
        state = job.get("state", JobState.QUEUED)
        if not isinstance(state, str) or state not in set(JobState):
            raise ValueError(f"entry {number} has state {str(state)[:40]!r}, none of {', '.join(JobState)}")


def check(fn, since: int = 2, kind: type | None = None):
    """A field's metadata: its check, the version that added it, and the enum its text is read as."""
    return {"check": fn, "since": since, "kind": kind}


def since(field_spec) -> int:
    """The protocol version that added a field."""
    return field_spec.metadata.get("since", 2)


@dataclass(frozen=True)
class Message:
    TYPE: ClassVar[str] = ""
    CARRIES_FRAMES: ClassVar[bool] = False
    SINCE: ClassVar[int] = 2
    """The protocol version that added this type of message."""

    def __post_init__(self) -> None:
        # A field read as an enum holds its member, whether decoded or built by a side's own code.
        for spec in dataclasses.fields(self):
            kind, value = spec.metadata.get("kind"), getattr(self, spec.name)
            if kind is not None and value is not None and not isinstance(value, kind):
                object.__setattr__(self, spec.name, kind(value))

    @property
    def part_count(self) -> int:
        """Parts that follow the header."""
        return getattr(self, "frame_count", 0) if self.CARRIES_FRAMES else 0

    def check_parts(self, parts: list[bytes]) -> None:
        """Refuse parts that do not match what the header announces."""
        if not self.CARRIES_FRAMES:
            if parts:
                raise ProtocolError(
                    BAD_MESSAGE, f"a {self.TYPE} message carries no frames but {len(parts)} parts follow"
                )
            return
        count, masks = getattr(self, "frame_count", 0), getattr(self, "mask_count", 0)
        if masks not in (0, count):
            raise ProtocolError(
                BAD_FIELD,
                f"field 'mask_count' is {masks}; a job has no subject masks or one per frame ({count})",
                "mask_count",
            )
        if len(parts) != self.part_count:
            announced = f"{count} frames" + (f" and {masks} masks" if masks else "")
            raise ProtocolError(BAD_MESSAGE, f"the header announces {announced} but {len(parts)} follow", "frame_count")


@dataclass(frozen=True)
class Request(Message):
    """A client message that is answered: the client may name it, and every answer names it back."""

    request_id: str | None = field(default=None, kw_only=True, metadata=check(_request_id, since=3))


@dataclass(frozen=True)
class Reply(Message):
    """A backend message that can answer a request: it carries that request's id (nil for news)."""

    request_id: str | None = field(default=None, kw_only=True, metadata=check(_request_id, since=3))


# Client to server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello(Request):
    """First message of a client: answered with a Welcome."""

    TYPE: ClassVar[str] = "hello"
    client: str = ""
    versions: list = field(default_factory=list, metadata=check(_versions, since=3))
    """The protocol versions the client speaks; none: only the version of this message."""
    previews: bool = field(default=False, metadata=check(None, since=4))
    """Send this connection `preview` messages of the running jobs it follows and owns."""


@dataclass(frozen=True)
class Submit(Request):
    """A new job: the playblast's frames follow the header, one PNG per part, then its subject
    masks when `mask_count` says so (none, or one per frame: white where the shot's subjects are)."""

    TYPE: ClassVar[str] = "submit"
    CARRIES_FRAMES: ClassVar[bool] = True
    job_id: str = field(metadata=check(_job_id))
    prompt: str = field(metadata=check(_prompt))
    frame_count: int = field(metadata=check(_frame_count))
    negative_prompt: str = field(default="", metadata=check(_prompt))
    seed: int = field(default=0, metadata=check(_seed))
    shot: str = ""
    fps: float = field(default=24.0, metadata=check(_fps))
    settings: dict = field(default_factory=dict, metadata=check(_settings))
    mask_count: int = field(default=0, metadata=check(_non_negative))

    @property
    def part_count(self) -> int:
        return self.frame_count + self.mask_count


@dataclass(frozen=True)
class Ping(Message):
    """Sent by a client every second while it polls: keeps it on the backend's heartbeat list.
    Never answered; the heartbeats are the answer."""

    TYPE: ClassVar[str] = "ping"


@dataclass(frozen=True)
class Cancel(Request):
    TYPE: ClassVar[str] = "cancel"
    job_id: str = field(metadata=check(_job_id))


@dataclass(frozen=True)
class StatusRequest(Request):
    TYPE: ClassVar[str] = "status"
    job_id: str = field(metadata=check(_job_id))


@dataclass(frozen=True)
class Fetch(Request):
    """Ask for a finished job's frames; answered with a Result, or an Error saying why not."""

    TYPE: ClassVar[str] = "fetch"
    job_id: str = field(metadata=check(_job_id))


@dataclass(frozen=True)
class ListJobs(Request):
    TYPE: ClassVar[str] = "list"


# Server to client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Welcome(Reply):
    TYPE: ClassVar[str] = "welcome"
    server: str
    model: str
    device: str
    limits: dict
    queue_length: int = field(metadata=check(_non_negative))
    instance: str = field(metadata=check(_instance))
    """Different at every start of the backend: a client that sees it change knows the backend
    restarted and asks again about the jobs it follows."""
    secure: bool = False
    version: int = field(default=2, metadata=check(_non_negative, since=3))
    """The protocol version the backend chose for this connection (a version 2 welcome has none: 2)."""


@dataclass(frozen=True)
class Accepted(Reply):
    """A job is known to the backend: its state and its place in the queue (0: running now)."""

    TYPE: ClassVar[str] = "accepted"
    job_id: str = field(metadata=check(_job_id))
    state: JobState = field(metadata=check(_state, kind=JobState))
    position: int = field(metadata=check(_non_negative))


@dataclass(frozen=True)
class Progress(Message):
    TYPE: ClassVar[str] = "progress"
    job_id: str = field(metadata=check(_job_id))
    phase: str
    step: int
    total: int
    elapsed: float
    eta: float | None
    forward_passes: int


@dataclass(frozen=True)
class Preview(Message):
    """A glimpse of a running job's take at `step` of `total` (news, in version 4, only to its
    owner's connections that asked for previews in their hello). One part follows the header:
    `frame_count` frames of `width` x `height` RGB pixels, one byte per channel, frame after frame,
    each row top to bottom."""

    TYPE: ClassVar[str] = "preview"
    CARRIES_FRAMES: ClassVar[bool] = True
    SINCE: ClassVar[int] = 4
    job_id: str = field(metadata=check(_job_id))
    step: int = field(metadata=check(_non_negative))
    """The step just taken, counted from 0."""
    total: int = field(metadata=check(_positive))
    frame_count: int = field(metadata=check(_preview_frames))
    width: int = field(metadata=check(_preview_side))
    height: int = field(metadata=check(_preview_side))

    @property
    def part_count(self) -> int:
        return 1

    @property
    def pixel_bytes(self) -> int:
        """The length of the part of pixels."""
        return self.frame_count * self.height * self.width * 3

    def check_parts(self, parts: list[bytes]) -> None:
        if self.step >= self.total:
            raise ProtocolError(BAD_FIELD, f"field 'step' is {self.step}, past the last of {self.total} steps", "step")
        if len(parts) != 1:
            raise ProtocolError(BAD_MESSAGE, f"a preview carries one part of pixels, not {len(parts)}")
        if len(parts[0]) != self.pixel_bytes:
            raise ProtocolError(
                BAD_MESSAGE,
                f"a preview of {self.frame_count} frames of {self.width}x{self.height} "
                f"has {self.pixel_bytes} bytes of pixels, not {len(parts[0])}",
            )


@dataclass(frozen=True)
class JobStatus(Reply):
    TYPE: ClassVar[str] = "job"
    job_id: str = field(metadata=check(_job_id))
    state: JobState = field(metadata=check(_state, kind=JobState))
    position: int = field(metadata=check(_non_negative))
    message: str = ""
    prompt: str = ""
    seed: int = 0
    shot: str = ""
    frame_count: int = 0
    submitted: float = 0.0


@dataclass(frozen=True)
class Result(Reply):
    """A finished job: its frames follow the header, one PNG per part."""

    TYPE: ClassVar[str] = "result"
    CARRIES_FRAMES: ClassVar[bool] = True
    job_id: str = field(metadata=check(_job_id))
    frame_count: int
    width: int
    height: int
    fps: float
    prompt: str
    negative_prompt: str
    seed: int
    shot: str
    settings: dict
    stats: dict


@dataclass(frozen=True)
class JobList(Reply):
    TYPE: ClassVar[str] = "jobs"
    jobs: list = field(metadata=check(_job_maps))
    """The newest jobs, oldest first, as `job` maps; at most MAX_LISTED of them."""
    total: int = field(default=0, metadata=check(_non_negative))
    """How many jobs the backend holds in all."""

    def __post_init__(self) -> None:
        super().__post_init__()
        jobs = [
            {**job, "state": JobState(job["state"])} if isinstance(job, dict) and "state" in job else job
            for job in self.jobs
        ]
        object.__setattr__(self, "jobs", jobs)


@dataclass(frozen=True)
class Error(Reply):
    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    field: str | None = None
    job_id: str | None = None


@dataclass(frozen=True)
class Heartbeat(Message):
    """Sent every second to every client seen lately: the backend is alive, even mid-step."""

    TYPE: ClassVar[str] = "heartbeat"
    time: float
    queue_length: int = field(metadata=check(_non_negative))
    instance: str = field(metadata=check(_instance))
    running: str | None = None


CLIENT_MESSAGES = {m.TYPE: m for m in (Hello, Ping, Submit, Cancel, StatusRequest, Fetch, ListJobs)}
SERVER_MESSAGES = {
    m.TYPE: m for m in (Welcome, Accepted, Progress, Preview, JobStatus, Result, JobList, Error, Heartbeat)
}

_KINDS = {
    "str": (str,),
    "JobState": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "dict": (dict,),
    "list": (list,),
}
_KIND_NAMES = {
    "str": "text",
    "JobState": "text",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "dict": "a map",
    "list": "a list",
}


def encode(message: Message, frames: list[bytes] | tuple = (), version: int = PROTOCOL_VERSION) -> list[bytes]:
    """The message's parts in protocol `version`: its header (without the fields later versions
    added), then its frames."""
    if version < message.SINCE:
        raise ProtocolError(
            BAD_MESSAGE, f"a {message.TYPE} message needs protocol version {message.SINCE} or later, not {version}"
        )
    header = {"type": message.TYPE, "v": version}
    header.update((f.name, getattr(message, f.name)) for f in dataclasses.fields(message) if since(f) <= version)
    if len(frames) != message.part_count:
        raise ProtocolError(
            BAD_MESSAGE, f"a {message.TYPE} message carries {message.part_count} frames, not {len(frames)}"
        )
    return [msgpack.packb(header, use_bin_type=True), *frames]


def _parse_header(data: bytes, limits: Limits) -> dict:
    if len(data) > limits.max_header_bytes:
        raise ProtocolError(LIMIT_EXCEEDED, f"the header is {len(data)} bytes; the limit is {limits.max_header_bytes}")
    try:
        header = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=limits.max_header_bytes,
            max_bin_len=0,
            max_ext_len=0,
            max_array_len=4096,
            max_map_len=256,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as error:
        raise ProtocolError(BAD_MESSAGE, f"the header is not valid msgpack ({type(error).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError(BAD_MESSAGE, "the header must be a msgpack map")
    return header


def peek(header: bytes, limits: Limits) -> dict:
    """What a header that was refused still tells, where it can be read: its `job_id`, `request_id`
    and `v` (a supported version), so the error reply names the job and request and is in the
    sender's version. Missing or unreadable ones are None."""
    try:
        fields = _parse_header(header, limits)
    except ProtocolError:
        return {"job_id": None, "request_id": None, "v": None}
    job_id, request_id, version = fields.get("job_id"), fields.get("request_id"), fields.get("v")
    return {
        "job_id": job_id if isinstance(job_id, str) and JOB_ID.fullmatch(job_id) else None,
        "request_id": request_id if isinstance(request_id, str) and REQUEST_ID.fullmatch(request_id) else None,
        "v": version if version in SUPPORTED_VERSIONS and not isinstance(version, bool) else None,
    }


def peek_job_id(header: bytes, limits: Limits) -> str | None:
    """The job id a header names, if it can be read at all: lets an error reply say which job it is about."""
    return peek(header, limits)["job_id"]


def _check_kind(name: str, value, annotation: str) -> None:
    optional = annotation.endswith("| None")
    kind = annotation.replace("| None", "").strip()
    if value is None and optional:
        return
    allowed = _KINDS[kind]
    is_bool = isinstance(value, bool)
    if not isinstance(value, allowed) or (is_bool and kind != "bool"):
        raise ProtocolError(BAD_FIELD, f"field '{name}' must be {_KIND_NAMES[kind]}", name)


def decode(
    parts: list[bytes], table: Mapping[str, type[Message]], limits: Limits | None = None
) -> tuple[Message, list[bytes]]:
    """Parse and validate a multipart message against `table` (CLIENT_MESSAGES or SERVER_MESSAGES).

    Returns the message and its frames. Anything wrong raises ProtocolError naming the field.
    """
    message, frames, _ = decode_versioned(parts, table, limits)
    return message, frames


def _version_of(header: dict, kind: str) -> tuple[int, bool]:
    """The version to read a header by, and whether its unknown fields are ignored (a newer hello)."""
    version = header.pop("v", None)
    if version in SUPPORTED_VERSIONS and not isinstance(version, bool):
        return version, False
    if kind == "hello" and isinstance(version, int) and not isinstance(version, bool) and version > PROTOCOL_VERSION:
        return PROTOCOL_VERSION, True
    raise ProtocolError(
        VERSION_MISMATCH,
        f"this side speaks protocol versions {SUPPORTED_VERSIONS[0]} to {PROTOCOL_VERSION} but the message is "
        f"version {version!r}; install the same FlowMotion release on both the backend and the add-on",
        "v",
    )


def decode_versioned(
    parts: list[bytes], table: Mapping[str, type[Message]], limits: Limits | None = None
) -> tuple[Message, list[bytes], int]:
    """`decode`, also returning the protocol version the message was read by (answer it in that one)."""
    limits = limits or Limits()
    if not parts:
        raise ProtocolError(BAD_MESSAGE, "the message is empty")
    header = _parse_header(parts[0], limits)
    kind = header.pop("type", None)
    if not isinstance(kind, str):
        raise ProtocolError(BAD_FIELD, "field 'type' is missing or not text", "type")
    version, newer_hello = _version_of(header, kind)
    if kind not in table:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {kind[:40]!r}", "type")
    cls = table[kind]
    if version < cls.SINCE:
        raise ProtocolError(
            UNKNOWN_TYPE, f"a {kind} message needs protocol version {cls.SINCE} or later, not {version}", "type"
        )
    fields = {f.name: f for f in dataclasses.fields(cls) if since(f) <= version}
    unknown = sorted(set(header) - set(fields), key=str)
    if newer_hello:
        header = {name: value for name, value in header.items() if name in fields}
    elif unknown:
        raise ProtocolError(BAD_FIELD, f"unknown field {str(unknown[0])[:40]!r} in a {kind} message", str(unknown[0]))
    for name, spec in fields.items():
        if name not in header:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ProtocolError(BAD_FIELD, f"field '{name}' is missing from a {kind} message", name)
            continue
        _check_kind(name, header[name], str(spec.type))  # text: this module postpones its annotations
        validate = spec.metadata.get("check")
        if validate is not None and header[name] is not None:
            try:
                validate(header[name], limits)
            except ValueError as error:
                raise ProtocolError(BAD_FIELD, f"field '{name}' {error}", name) from None
            except ProtocolError as error:
                raise ProtocolError(error.code, f"field '{name}' {error.message}", name) from None
    message = cls(**header)
    frames = list(parts[1:])
    message.check_parts(frames)
    return message, frames, version
