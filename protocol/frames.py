"""What the protocol knows of a frame: a PNG image, whose size is read from its header alone.

Checking a submission's frames this way costs microseconds per frame, so the backend's message
loop (and its heartbeats) never wait on decoding a hundred full-HD images; the worker decodes
them when the job runs.
"""

from __future__ import annotations

import struct

from .errors import BAD_FRAMES, ProtocolError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR = struct.Struct(">I4sII")  # chunk length, chunk type, width, height


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG image, or None when `data` does not start like one."""
    if len(data) < len(PNG_SIGNATURE) + _IHDR.size or not data.startswith(PNG_SIGNATURE):
        return None
    length, kind, width, height = _IHDR.unpack_from(data, len(PNG_SIGNATURE))
    if kind != b"IHDR" or length != 13 or width == 0 or height == 0:
        return None
    return width, height


def check_frames(frames: list[bytes]) -> tuple[int, int]:
    """(width, height) shared by every frame; ProtocolError(BAD_FRAMES) names the first frame that
    is not a PNG or differs in size from frame 1."""
    if not frames:
        raise ProtocolError(BAD_FRAMES, "a job needs at least one frame", "frames")
    first: tuple[int, int] | None = None
    for number, frame in enumerate(frames, start=1):
        size = png_size(frame)
        if size is None:
            raise ProtocolError(BAD_FRAMES, f"frame {number} is not a PNG image", "frames")
        if first is None:
            first = size
        elif size != first:
            raise ProtocolError(
                BAD_FRAMES,
                f"frame {number} is {size[0]}x{size[1]} but frame 1 is "
                f"{first[0]}x{first[1]}: every frame must have the same size",
                "frames",
            )
    assert first is not None  # there is at least one frame
    return first
