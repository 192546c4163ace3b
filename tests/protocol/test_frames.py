import struct
import zlib

import pytest

from protocol import ProtocolError
from protocol import errors as codes
from protocol.frames import PNG_SIGNATURE, check_frames, png_size


def png(width: int, height: int) -> bytes:
    """A real one-colour PNG, built by hand: the protocol reads only its header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80\x80\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_the_size_comes_from_the_header():
    assert png_size(png(48, 32)) == (48, 32)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GIF89a" + b"\0" * 40,
        PNG_SIGNATURE,
        PNG_SIGNATURE + b"\0" * 8,
        png(4, 4).replace(b"IHDR", b"IHDX"),
        png(4, 4)[:20],
        PNG_SIGNATURE + struct.pack(">I4sII", 13, b"IHDR", 0, 4),
    ],
)
def test_what_is_not_a_png_has_no_size(data):
    assert png_size(data) is None


def test_frames_of_one_size_pass():
    assert check_frames([png(16, 8)] * 3) == (16, 8)


@pytest.mark.parametrize(
    "frames, words",
    [
        ([], "at least one frame"),
        ([png(16, 8), b"\xff\xd8\xff\xe0 a jpeg", png(16, 8)], "frame 2 is not a PNG image"),
        ([png(16, 8), png(16, 8), png(8, 16)], "frame 3 is 8x16 but frame 1 is 16x8"),
    ],
)
def test_bad_frames_are_named(frames, words):
    with pytest.raises(ProtocolError) as error:
        check_frames(frames)
    assert error.value.code == codes.BAD_FRAMES and error.value.field == "frames"
    assert words in error.value.message
