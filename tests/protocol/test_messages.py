import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol as p
from protocol import errors as codes
from protocol.messages import PROTOCOL_VERSION, peek_job_id

LIMITS = p.Limits(max_frames=10, max_prompt_chars=50, max_header_bytes=4096)


def raw(header: dict, *frames: bytes) -> list[bytes]:
    return [msgpack.packb(header, use_bin_type=True), *frames]


def refused(parts, table=p.CLIENT_MESSAGES) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as error:
        p.decode(parts, table, LIMITS)
    return error.value


EXAMPLES = [
    (p.Hello(client="blender"), ()),
    (p.Hello(client="blender", versions=[2, 3], request_id="r1"), ()),
    (
        p.Submit(
            job_id="shot010.take-1",
            prompt="a red ball",
            frame_count=2,
            negative_prompt="blur",
            seed=7,
            shot="shot010",
            fps=25.0,
            settings={"guided_steps": 5, "difference_alignment": False},
        ),
        (b"1", b"2"),
    ),
    (p.Submit(job_id="masked", prompt="a cube", frame_count=2, mask_count=2), (b"f1", b"f2", b"m1", b"m2")),
    (p.Ping(), ()),
    (p.Cancel(job_id="a"), ()),
    (p.StatusRequest(job_id="a"), ()),
    (p.Fetch(job_id="a"), ()),
    (p.ListJobs(), ()),
]
SERVER_EXAMPLES = [
    (p.Welcome(server="s", model="m", device="cpu", limits={"max_frames": 3}, queue_length=0, instance="a1"), ()),
    (p.Accepted(job_id="a", state="queued", position=2, request_id="r9"), ()),
    (p.Progress(job_id="a", phase="sampling", step=3, total=50, elapsed=1.5, eta=None, forward_passes=12), ()),
    (p.JobStatus(job_id="a", state="failed", position=0, message="bad video"), ()),
    (
        p.Result(
            job_id="a",
            frame_count=1,
            width=4,
            height=4,
            fps=24.0,
            prompt="x",
            negative_prompt="",
            seed=0,
            shot="",
            settings={},
            stats={"seconds": 1.0},
        ),
        (b"png",),
    ),
    (p.JobList(jobs=[{"job_id": "a"}], total=7), ()),
    (p.Error(code="bad_field", message="m", field="seed"), ()),
    (p.Heartbeat(time=1.0, queue_length=0, instance="a1", running="a"), ()),
]


@pytest.mark.parametrize("message, frames", EXAMPLES)
def test_client_messages_round_trip(message, frames):
    assert p.decode(p.encode(message, frames), p.CLIENT_MESSAGES, LIMITS) == (message, list(frames))


@pytest.mark.parametrize("message, frames", SERVER_EXAMPLES)
def test_server_messages_round_trip(message, frames):
    assert p.decode(p.encode(message, frames), p.SERVER_MESSAGES) == (message, list(frames))


def test_a_server_message_is_not_a_client_message():
    assert refused(p.encode(p.Heartbeat(time=1.0, queue_length=0, instance="a1"))).code == codes.UNKNOWN_TYPE


def test_version_mismatch_names_both_versions():
    error = refused(raw({"type": "status", "v": 99, "job_id": "a"}))
    assert error.code == codes.VERSION_MISMATCH and f"versions 2 to {PROTOCOL_VERSION}" in error.message
    assert "99" in error.message
    assert refused(raw({"type": "hello", "v": "3"})).code == codes.VERSION_MISMATCH


def test_a_hello_from_a_newer_version_is_read_for_its_versions():
    message, _, version = p.decode_versioned(
        raw({"type": "hello", "v": 9, "client": "later", "versions": [3, 9], "colour": "blue"}),
        p.CLIENT_MESSAGES,
        LIMITS,
    )
    assert message == p.Hello(client="later", versions=[3, 9]) and version == PROTOCOL_VERSION


def test_an_older_version_is_read_by_its_own_rules_and_answered_in_them():
    # Version 2 had no request ids: a version 2 message that names one is refused, as a v2 side would.
    error = refused(raw({"type": "status", "v": 2, "job_id": "a", "request_id": "r1"}))
    assert (error.code, error.field) == (codes.BAD_FIELD, "request_id")
    message, _, version = p.decode_versioned(raw({"type": "status", "v": 2, "job_id": "a"}), p.CLIENT_MESSAGES)
    assert (message, version) == (p.StatusRequest(job_id="a"), 2)
    old = msgpack.unpackb(p.encode(p.JobStatus(job_id="a", state="done", position=0, request_id="r1"), version=2)[0])
    assert old["v"] == 2 and "request_id" not in old
    welcome = p.Welcome(server="s", model="m", device="cpu", limits={}, queue_length=0, instance="a1", version=3)
    assert p.decode(p.encode(welcome, version=2), p.SERVER_MESSAGES)[0].version == 2


def test_request_ids_travel_in_version_3():
    parts = p.encode(p.Fetch(job_id="a", request_id="r-17"))
    assert p.decode(parts, p.CLIENT_MESSAGES)[0].request_id == "r-17"
    assert refused(raw({"type": "fetch", "v": 3, "job_id": "a", "request_id": "has space"})).field == "request_id"


SUBMIT = {"type": "submit", "v": PROTOCOL_VERSION, "job_id": "a"}
"""The start of a submit header, which each case completes."""


@pytest.mark.parametrize(
    "header, code, field",
    [
        ({"type": "launch", "v": PROTOCOL_VERSION}, codes.UNKNOWN_TYPE, "type"),
        ({"v": PROTOCOL_VERSION}, codes.BAD_FIELD, "type"),
        ({"type": "cancel", "v": PROTOCOL_VERSION}, codes.BAD_FIELD, "job_id"),
        ({"type": "cancel", "v": PROTOCOL_VERSION, "job_id": 5}, codes.BAD_FIELD, "job_id"),
        ({"type": "cancel", "v": PROTOCOL_VERSION, "job_id": "../../etc"}, codes.BAD_FIELD, "job_id"),
        ({"type": "cancel", "v": PROTOCOL_VERSION, "job_id": "a", "extra": 1}, codes.BAD_FIELD, "extra"),
        ({**SUBMIT, "prompt": "p", "frame_count": True}, codes.BAD_FIELD, "frame_count"),
        ({**SUBMIT, "prompt": "p", "frame_count": 11}, codes.LIMIT_EXCEEDED, "frame_count"),
        ({**SUBMIT, "prompt": "p" * 51, "frame_count": 1}, codes.LIMIT_EXCEEDED, "prompt"),
        ({**SUBMIT, "prompt": "p", "frame_count": 1, "seed": -1}, codes.BAD_FIELD, "seed"),
        ({**SUBMIT, "prompt": "p", "frame_count": 1, "fps": float("nan")}, codes.BAD_FIELD, "fps"),
        ({**SUBMIT, "prompt": "p", "frame_count": 1, "settings": {"x": [1]}}, codes.BAD_FIELD, "settings"),
        ({**SUBMIT, "prompt": "p", "frame_count": 1, "settings": {"Bad-Name": 1}}, codes.BAD_FIELD, "settings"),
    ],
)
def test_bad_fields_are_named(header, code, field):
    frames = [b"x"] * header.get("frame_count", 0) if isinstance(header.get("frame_count"), int) else []
    error = refused(raw(header, *frames[:10]))
    assert (error.code, error.field) == (code, field)
    assert field in error.message


def test_frame_count_must_match_the_parts():
    header = {"type": "submit", "v": PROTOCOL_VERSION, "job_id": "a", "prompt": "p", "frame_count": 3}
    assert refused(raw(header, b"1", b"2")).field == "frame_count"
    assert refused(raw({"type": "cancel", "v": PROTOCOL_VERSION, "job_id": "a"}, b"stray")).code == codes.BAD_MESSAGE


def test_subject_masks_follow_the_frames_one_per_frame_or_none():
    header = {"type": "submit", "v": PROTOCOL_VERSION, "job_id": "a", "prompt": "p", "frame_count": 2, "mask_count": 2}
    message, parts = p.decode(raw(header, b"f1", b"f2", b"m1", b"m2"), p.CLIENT_MESSAGES, LIMITS)
    assert (message.frame_count, message.mask_count, parts) == (2, 2, [b"f1", b"f2", b"m1", b"m2"])
    short = refused(raw(header, b"f1", b"f2", b"m1"))
    assert short.field == "frame_count" and "announces 2 frames and 2 masks but 3 follow" in short.message
    partial = refused(raw({**header, "mask_count": 1}, b"f1", b"f2", b"m1"))
    assert partial.field == "mask_count" and "one per frame (2)" in partial.message
    assert refused(raw({**header, "mask_count": -1}, b"f1")).field == "mask_count"
    with pytest.raises(p.ProtocolError, match="carries 4 frames, not 2"):
        p.encode(p.Submit(job_id="a", prompt="p", frame_count=2, mask_count=2), [b"f1", b"f2"])


@pytest.mark.parametrize(
    "data",
    [
        b"",  # empty header
        b"\xc1",  # never-used msgpack byte
        b"\x85\xa4type",  # truncated map
        b"\xdb\x7f\xff\xff\xff",  # a string that claims 2 GiB
        b"\xdd\x7f\xff\xff\xff",  # an array that claims 2 billion entries
        b"\xc6\x7f\xff\xff\xff",  # binary data
        b"\xd4\x01\x00",  # an ext type
        msgpack.packb([1, 2, 3]),  # not a map
        msgpack.packb({1: "integer key"}),
        bytes(range(256)),
    ],
)
def test_malformed_headers_are_refused_before_use(data):
    assert refused([data]).code in (codes.BAD_MESSAGE, codes.BAD_FIELD)


def test_oversized_header_is_refused_unparsed():
    error = refused([b"\x80" * 5000])
    assert error.code == codes.LIMIT_EXCEEDED and "4096" in error.message


def test_empty_message():
    assert refused([]).code == codes.BAD_MESSAGE


def test_peek_job_id_only_trusts_a_valid_id():
    assert peek_job_id(msgpack.packb({"job_id": "shot1"}), LIMITS) == "shot1"
    assert peek_job_id(msgpack.packb({"job_id": "../x"}), LIMITS) is None
    assert peek_job_id(b"\xc1", LIMITS) is None


FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=80),
    st.binary(max_size=20),
    st.lists(st.integers(-9, 9), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers(-9, 9), max_size=3),
)
FIELD_NAMES = st.sampled_from(
    [
        "type",
        "v",
        "job_id",
        "prompt",
        "frame_count",
        "seed",
        "fps",
        "settings",
        "shot",
        "negative_prompt",
        "client",
        "zzz",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.dictionaries(FIELD_NAMES, FIELD_VALUES, max_size=8),
    kind=st.sampled_from(sorted(p.CLIENT_MESSAGES) + ["nope"]),
    frames=st.integers(0, 3),
)
def test_fuzzed_headers_decode_or_are_refused_cleanly(header, kind, frames):
    header.setdefault("type", kind)
    header.setdefault("v", 1)
    try:
        message, parts = p.decode(raw(header, *([b"f"] * frames)), p.CLIENT_MESSAGES, LIMITS)
    except p.ProtocolError as error:
        assert error.code in p.CODES and error.message
    else:
        assert message.TYPE == header["type"] and len(parts) == frames
