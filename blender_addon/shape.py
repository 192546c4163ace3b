"""The model's rules for a playblast's size and frame count, as the FlowMotion core states them.

Pure Python (the add-on never imports flowmotion or torch); a test checks that these rules and
flowmotion.video's agree.
"""

from __future__ import annotations

SPATIAL_MULTIPLE = 16
TEMPORAL_MULTIPLE = 4


def legal_side(side: int, multiple: int = SPATIAL_MULTIPLE) -> int:
    """The multiple of `multiple` nearest to `side` (halves round up), never below `multiple`."""
    return max(multiple, ((side + multiple // 2) // multiple) * multiple)


def legal_frame_count(frames: int, temporal: int = TEMPORAL_MULTIPLE) -> int:
    """The count of the form temporal * k + 1 nearest to `frames` (halves round up), at least 1."""
    k = (frames - 1 + temporal // 2) // temporal
    return max(0, k) * temporal + 1


def playblast_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The output size scaled down so its longer side is at most `max_side`, then made legal."""
    longest = max(width, height)
    if max_side and longest > max_side:
        width, height = round(width * max_side / longest), round(height * max_side / longest)
    return legal_side(width), legal_side(height)


def sampled_frames(first: int, last: int, count: int) -> list[int]:
    """`count` scene frames spread over first..last, first and last included (nearest frame)."""
    span = last - first
    if count == 1 or span == 0:
        return [first] * count
    return [first + min(span, int(i * span / (count - 1) + 0.5)) for i in range(count)]
