"""The `preview` message: a running take's glimpse, bounded in size, version 4 only."""

import msgpack
import pytest

import protocol as p
from protocol import errors as codes
from protocol.messages import MAX_PREVIEW_BYTES, MAX_PREVIEW_FRAMES, MAX_PREVIEW_SIDE


def preview(**changes) -> p.Preview:
    fields = {"job_id": "shot010.take-1", "step": 3, "total": 50, "frame_count": 2, "width": 6, "height": 4}
    return p.Preview(**{**fields, **changes})


def pixels(message: p.Preview) -> bytes:
    return bytes(range(256)) * (message.pixel_bytes // 256) + bytes(message.pixel_bytes % 256)


def refused(parts) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as error:
        p.decode(parts, p.SERVER_MESSAGES)
    return error.value


def raw(header: dict, *parts: bytes) -> list[bytes]:
    return [msgpack.packb({"type": "preview", "v": 4, **header}, use_bin_type=True), *parts]


HEADER = {"job_id": "a", "step": 0, "total": 4, "frame_count": 1, "width": 2, "height": 2}


def test_a_preview_round_trips_with_its_pixels():
    message = preview()
    assert message.pixel_bytes == 2 * 4 * 6 * 3
    assert p.decode(p.encode(message, [pixels(message)]), p.SERVER_MESSAGES) == (message, [pixels(message)])


def test_the_largest_preview_round_trips():
    message = preview(frame_count=MAX_PREVIEW_FRAMES, width=MAX_PREVIEW_SIDE, height=MAX_PREVIEW_SIDE)
    assert message.pixel_bytes == MAX_PREVIEW_BYTES
    decoded, parts = p.decode(p.encode(message, [pixels(message)]), p.SERVER_MESSAGES)
    assert decoded == message and len(parts[0]) == MAX_PREVIEW_BYTES


@pytest.mark.parametrize(
    "field, value",
    [
        ("frame_count", MAX_PREVIEW_FRAMES + 1),
        ("width", MAX_PREVIEW_SIDE + 1),
        ("height", MAX_PREVIEW_SIDE + 1),
        ("frame_count", 0),
        ("width", 0),
        ("total", 0),
        ("step", -1),
    ],
)
def test_an_oversize_or_empty_preview_is_refused_by_its_field(field, value):
    header = {**HEADER, field: value}
    size = max(header["frame_count"], 0) * max(header["width"], 0) * max(header["height"], 0) * 3
    error = refused(raw(header, bytes(size)))
    assert (error.code, error.field) == (codes.BAD_FIELD, field)


def test_a_step_past_the_last_is_refused():
    error = refused(raw({**HEADER, "step": 4}, bytes(12)))
    assert error.field == "step" and "past the last of 4" in error.message


@pytest.mark.parametrize("parts", [[], [bytes(11)], [bytes(13)], [bytes(12), bytes(12)]])
def test_pixels_must_be_exactly_what_the_header_announces(parts):
    assert refused(raw(HEADER, *parts)).code == codes.BAD_MESSAGE


@pytest.mark.parametrize("field, value", [("width", "2"), ("step", 1.5), ("job_id", "../x"), ("height", True)])
def test_malformed_fields_are_refused(field, value):
    assert refused(raw({**HEADER, field: value}, bytes(12))).field == field


@pytest.mark.parametrize("version", [2, 3])
def test_a_preview_does_not_exist_before_version_4(version):
    with pytest.raises(p.ProtocolError, match="needs protocol version 4"):
        p.encode(preview(), [pixels(preview())], version=version)
    error = refused([msgpack.packb({"type": "preview", "v": version, **HEADER}), bytes(12)])
    assert error.code == codes.UNKNOWN_TYPE and "version 4" in error.message


def test_a_client_asks_for_previews_in_its_hello_from_version_4():
    hello = p.Hello(client="blender", versions=[2, 3, 4], previews=True)
    assert p.decode(p.encode(hello), p.CLIENT_MESSAGES)[0].previews is True
    for older in (2, 3):
        assert p.decode(p.encode(hello, version=older), p.CLIENT_MESSAGES)[0].previews is False


def test_a_version_3_backend_reads_the_hello_of_a_client_that_asks_for_previews(monkeypatch):
    # The release before previews spoke 2 and 3: it reads a newer hello by its own rules and leaves
    # the field it does not know out, so a newer add-on still connects to it, without previews.
    from protocol import messages

    sent = p.encode(p.Hello(client="blender", versions=[2, 3, 4], previews=True, request_id="h1"))
    monkeypatch.setattr(messages, "PROTOCOL_VERSION", 3)
    monkeypatch.setattr(messages, "SUPPORTED_VERSIONS", (2, 3))
    hello, _, version = p.decode_versioned(sent, p.CLIENT_MESSAGES)
    assert version == 3 and hello.versions == [2, 3, 4] and hello.previews is False and hello.request_id == "h1"
    assert p.Hello(client="blender").previews is False


def test_a_preview_is_not_a_client_message():
    message = preview()
    with pytest.raises(p.ProtocolError) as error:
        p.decode(p.encode(message, [pixels(message)]), p.CLIENT_MESSAGES)
    assert error.value.code == codes.UNKNOWN_TYPE
