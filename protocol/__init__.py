"""The FlowMotion protocol: messages between the Blender add-on and the backend, over ZeroMQ.

Pure Python with msgpack (and pyzmq for the client): the single definition both sides use. The
add-on's zip carries a copy made by build_addon.py. docs/protocol.md describes every message.
"""

from .errors import CODES, ProtocolError
from .limits import Limits
from .messages import (
    CLIENT_MESSAGES,
    PROTOCOL_VERSION,
    SERVER_MESSAGES,
    SUPPORTED_VERSIONS,
    Accepted,
    Cancel,
    Error,
    Fetch,
    Heartbeat,
    Hello,
    JobList,
    JobStatus,
    ListJobs,
    Message,
    Ping,
    Preview,
    Progress,
    Reply,
    Request,
    Result,
    StatusRequest,
    Submit,
    Welcome,
    decode,
    decode_versioned,
    encode,
)
from .states import ACTIVE, ENDED, JobState, enum_items

__all__ = [
    "ACTIVE",
    "CLIENT_MESSAGES",
    "ENDED",
    "JobState",
    "enum_items",
    "CODES",
    "PROTOCOL_VERSION",
    "SERVER_MESSAGES",
    "SUPPORTED_VERSIONS",
    "Accepted",
    "Cancel",
    "Error",
    "Fetch",
    "Heartbeat",
    "Hello",
    "JobList",
    "JobStatus",
    "Limits",
    "ListJobs",
    "Message",
    "Ping",
    "Preview",
    "Progress",
    "ProtocolError",
    "Reply",
    "Request",
    "Result",
    "StatusRequest",
    "Submit",
    "Welcome",
    "decode",
    "decode_versioned",
    "encode",
]
