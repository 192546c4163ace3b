"""The protocol's one exception type, with the error codes both sides use."""

from __future__ import annotations

BAD_MESSAGE = "bad_message"  # not msgpack, not a map, or a part that is not what the header says
BAD_FIELD = "bad_field"  # a field is missing, of the wrong type, or out of range
UNKNOWN_TYPE = "unknown_type"  # the message type is not one this version knows
VERSION_MISMATCH = "version_mismatch"
LIMIT_EXCEEDED = "limit_exceeded"  # frames, size, prompt length, message bytes or queue length
UNKNOWN_JOB = "unknown_job"  # no job with that id (never submitted, or expired)
JOB_CONFLICT = "job_conflict"  # the id is taken by a different request
NOT_READY = "not_ready"  # the job has no result yet
JOB_FAILED = "job_failed"  # the job ended with an error; the message says why
BAD_FRAMES = "bad_frames"  # frames are not PNG, or differ in size
DAMAGED_RESULT = "damaged_result"  # a done job's result is missing, short or changed on the backend's disk
BACKEND_ERROR = "backend_error"  # the backend could not do it (its disk is full, ...); the message says why
UNREACHABLE = "unreachable"  # client side: the backend did not answer in time
UNREAD_LIMIT = "unread_limit"  # the backend holds too many unread reply bytes for this client
RATE_LIMITED = "rate_limited"  # this client sends faster than max_messages_per_second
NOT_OWNER = "not_owner"  # behind an allow-list: the job was submitted with another artist's key

CODES = (
    BAD_MESSAGE,
    BAD_FIELD,
    UNKNOWN_TYPE,
    VERSION_MISMATCH,
    LIMIT_EXCEEDED,
    UNKNOWN_JOB,
    JOB_CONFLICT,
    NOT_READY,
    JOB_FAILED,
    BAD_FRAMES,
    DAMAGED_RESULT,
    BACKEND_ERROR,
    UNREACHABLE,
    UNREAD_LIMIT,
    RATE_LIMITED,
    NOT_OWNER,
)


class ProtocolError(Exception):
    """A message that cannot be accepted, with a code from CODES and the field at fault, if any."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message
