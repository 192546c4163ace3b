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


def sent_size(width: int, height: int, max_side: int = 0, max_width: int = 0, max_height: int = 0) -> tuple[int, int]:
    """The render size scaled down, aspect kept, until its longer side is at most `max_side` and it
    fits `max_width` x `max_height` (0: no bound). Sides round down, so no bound is ever passed:
    the backend works at the model's legal size and gives the take back at this one."""
    scale = 1.0
    if max_side:
        scale = min(scale, max_side / max(width, height))
    if max_width:
        scale = min(scale, max_width / width)
    if max_height:
        scale = min(scale, max_height / height)
    if scale >= 1.0:
        return width, height
    return max(1, int(width * scale)), max(1, int(height * scale))
