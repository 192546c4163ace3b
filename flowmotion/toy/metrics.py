"""Quality metrics of a take of the procedural world, computed from its frames.

- Motion fidelity: the object's per-frame centroid in the take (pixels near the prompt's colour)
  against the source object's known track: the share of frames within `TRACK_TOLERANCE` pixels,
  and the mean distance in pixels (frames where the object cannot be found count as the
  frame's half-diagonal).
- Text adherence: a small classifier reads the take's object colour, shape and background; the
  score is the share of the three that match the prompt.
- Temporal consistency: 1 minus the mean absolute change between consecutive frames (in [0, 1]).
- Following a silhouette (for takes of any prompt, like the demo's): per frame, the centroid of
  the pixels that stand out from the frame's median colour, against the centroid of the subject
  mask the source came with.
- Following a shot's subject (the blockout benchmark's figure, and the demo's): the mean distance
  of the take's subject from the shot subject's mask centroid over the frames that show it, next to
  two blobs that do not follow, one parked at the subject's mean position and one at the frame
  centre; the take follows when it is nearer than the better of the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import camera
from .data import BACKGROUNDS, COLORS

COLOR_TOLERANCE = 70.0
"""Largest RGB distance (0-255 scale) at which a pixel counts as the object's colour."""
TRACK_TOLERANCE = 5.0
MIN_OBJECT_PIXELS = 6
SHAPE_FILL = {"ball": np.pi / 4, "cube": 1.0, "triangle": 0.5}
"""Share of its bounding box each shape fills."""


@dataclass(frozen=True)
class Reading:
    color: str | None
    shape: str | None
    background: str


def as_uint8(frames: np.ndarray) -> np.ndarray:
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)


def color_mask(frame: np.ndarray, color: str) -> np.ndarray:
    target = np.array(COLORS[color], np.float32)
    return np.linalg.norm(frame.astype(np.float32) - target, axis=-1) < COLOR_TOLERANCE


def centroid(mask: np.ndarray) -> np.ndarray | None:
    if mask.sum() < MIN_OBJECT_PIXELS:
        return None
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def half_diagonal(frames: np.ndarray) -> float:
    """The distance a frame without the object counts as: half the frame's diagonal."""
    return float(np.hypot(frames.shape[1], frames.shape[2])) / 2


def distances_to_track(points: list, track: np.ndarray, worst: float) -> np.ndarray:
    """Per-frame distance (pixels) from each found point to the track's; `worst` where none was found."""
    return np.array(
        [
            worst if point is None else float(np.linalg.norm(point - expected))
            for point, expected in zip(points, track, strict=False)
        ]
    )


def track_errors(frames: np.ndarray, color: str, track: np.ndarray) -> np.ndarray:
    """Per-frame distance (pixels) between the object of `color` and the source track."""
    frames = as_uint8(frames)
    points = [centroid(color_mask(frame, color)) for frame in frames[: len(track)]]
    return distances_to_track(points, track, half_diagonal(frames))


def motion_fidelity(frames: np.ndarray, color: str, track: np.ndarray) -> tuple[float, float]:
    """(share of frames on track, mean track error in pixels)."""
    errors = track_errors(frames, color, track)
    return float((errors <= TRACK_TOLERANCE).mean()), float(errors.mean())


def read_take(frames: np.ndarray) -> Reading:
    """What the take shows: its object's colour and shape, and its background."""
    frames = as_uint8(frames)
    counts = {color: sum(int(color_mask(f, color).sum()) for f in frames) for color in COLORS}
    most_seen = max(counts, key=lambda name: counts[name])
    color = most_seen if counts[most_seen] >= MIN_OBJECT_PIXELS * len(frames) // 2 else None
    object_pixels = (
        np.zeros(frames.shape[:3], bool) if color is None else np.stack([color_mask(f, color) for f in frames])
    )
    rest = frames[~object_pixels].astype(np.float32)
    backdrop = np.median(rest, axis=0) if len(rest) else np.zeros(3)
    background = min(BACKGROUNDS, key=lambda b: np.linalg.norm(backdrop - np.array(BACKGROUNDS[b])))
    shape = None
    if color is not None:
        fills = []
        for mask in object_pixels:
            if mask.sum() >= MIN_OBJECT_PIXELS:
                ys, xs = np.nonzero(mask)
                box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
                fills.append(mask.sum() / box)
        if fills:
            fill = float(np.median(fills))
            shape = min(SHAPE_FILL, key=lambda s: abs(SHAPE_FILL[s] - fill))
    return Reading(color, shape, background)


def text_adherence(frames: np.ndarray, color: str, shape: str, background: str) -> float:
    reading = read_take(frames)
    return ((reading.color == color) + (reading.shape == shape) + (reading.background == background)) / 3


def temporal_consistency(frames: np.ndarray) -> float:
    frames = as_uint8(frames).astype(np.float32) / 255
    if len(frames) < 2:
        return 1.0
    return float(1.0 - np.abs(np.diff(frames, axis=0)).mean())


STANDOUT_DISTANCE = 60.0
"""RGB distance (0-255 scale) from the frame's median colour at which a pixel stands out."""


def standout_centroid(frame: np.ndarray) -> np.ndarray | None:
    """Centre (x, y) of the pixels that differ from the frame's median colour, whatever the colours."""
    frame = as_uint8(frame[None])[0].astype(np.float32)
    backdrop = np.median(frame.reshape(-1, 3), axis=0)
    return centroid(np.linalg.norm(frame - backdrop, axis=-1) > STANDOUT_DISTANCE)


def silhouette_following(frames: np.ndarray, masks: np.ndarray, tolerance: float) -> tuple[float, float]:
    """(share of frames whose standing-out pixels are centred within `tolerance` pixels of the mask's
    centre, mean distance in pixels). `masks`: (frames, height, width), true or non-zero where the
    subjects are; frames without a subject are left out, a take frame without a standout counts as
    the frame's half-diagonal."""
    distances = subject_following(frames, masks).per_frame
    return float((distances <= tolerance).mean()), float(distances.mean())


MOTION_TILES = (2, 2)
"""Rows and columns of the tiles whose shifts make up a frame pair's global motion field: a pan or
an orbit moves them all alike, a dolly spreads them out or draws them in."""
MIN_CAMERA_SHIFT = 0.5
"""Smallest motion field (pixels, root mean square over the tiles) that counts as the camera moving."""
AGREEMENT_COSINE = 0.5
"""Two motion fields agree when their cosine is at least this (within 60 degrees)."""


def phase_shift(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """How far (dx, dy) pixels the content of grey image `before` moved to be `after`, by phase
    correlation with a sub-pixel peak (the estimate Camera Placement reads the playblast with)."""
    shift, _ = camera.phase_shift(torch.from_numpy(np.asarray(before)), torch.from_numpy(np.asarray(after)))
    return shift.numpy()


def global_motion(frames: np.ndarray) -> np.ndarray:
    """The camera's motion between consecutive frames, as each tile's shift (frames - 1, tiles, 2)."""
    grey = as_uint8(frames).astype(np.float32).mean(axis=-1)
    rows, columns = MOTION_TILES
    height, width = grey.shape[1] // rows, grey.shape[2] // columns
    fields = []
    for before, after in zip(grey[:-1], grey[1:], strict=True):
        fields.append(
            [
                phase_shift(
                    before[r * height : (r + 1) * height, c * width : (c + 1) * width],
                    after[r * height : (r + 1) * height, c * width : (c + 1) * width],
                )
                for r in range(rows)
                for c in range(columns)
            ]
        )
    return np.array(fields)


def camera_agreement(take: np.ndarray, source: np.ndarray) -> float | None:
    """Share of the frame pairs in which the source's camera moves whose motion field the take's
    follows in direction (cosine at least AGREEMENT_COSINE); None when the source's camera never moves."""
    take_fields = global_motion(take).reshape(len(take) - 1, -1)
    source_fields = global_motion(source).reshape(len(source) - 1, -1)
    agreed = []
    for seen, expected in zip(take_fields, source_fields, strict=False):
        size = np.sqrt(np.mean(expected**2) * 2)
        if size < MIN_CAMERA_SHIFT:
            continue
        cosine = float(seen @ expected) / (np.linalg.norm(seen) * np.linalg.norm(expected) + 1e-9)
        agreed.append(cosine >= AGREEMENT_COSINE)
    return float(np.mean(agreed)) if agreed else None


def subject_track(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frames whose mask shows the subject, and the subject's centroid (x, y) in each."""
    found = [(index, centroid(np.asarray(mask) > 0)) for index, mask in enumerate(masks)]
    found = [(index, point) for index, point in found if point is not None]
    if not found:
        raise ValueError("the masks show no subject in any frame")
    return np.array([index for index, _ in found], int), np.array([point for _, point in found])


def parked_distances(track: np.ndarray, width: int, height: int) -> dict[str, np.ndarray]:
    """Distance in each frame from the subject's `track` of blobs that do not follow it: parked at
    its mean position, and at the frame centre."""
    centre = np.array([width / 2, height / 2])
    return {
        "mean position": np.linalg.norm(track - track.mean(axis=0), axis=1),
        "frame centre": np.linalg.norm(track - centre, axis=1),
    }


def parked_baselines(track: np.ndarray, width: int, height: int) -> dict[str, float]:
    """Mean distance from the subject's `track` of blobs that do not follow it: parked at its
    mean position, and at the frame centre."""
    return {name: float(distances.mean()) for name, distances in parked_distances(track, width, height).items()}


@dataclass(frozen=True)
class SubjectFollowing:
    """Mean distances (pixels) from the shot subject's centroid over the frames that show it: the
    take's subject's, and the two parked blobs'; the take's in each of those frames, and whether the
    take showed a subject there at all (a frame without one counts as the half-diagonal)."""

    take: float
    parked: float
    centre: float
    per_frame: np.ndarray = field(repr=False)
    found: np.ndarray = field(repr=False)

    @property
    def missing(self) -> float:
        """The share of the frames in which the take shows no subject (none of the prompt's colour)."""
        return float(1.0 - self.found.mean())

    @property
    def where_found(self) -> float | None:
        """The take's mean distance over the frames where it shows a subject; None where it shows none."""
        return float(self.per_frame[self.found].mean()) if self.found.any() else None

    @property
    def better_baseline(self) -> float:
        return min(self.parked, self.centre)

    @property
    def ratio(self) -> float:
        """The take's distance over the better baseline's: below 1 the take follows the subject."""
        return self.take / max(self.better_baseline, 1e-9)


def subject_following(take: np.ndarray, masks: np.ndarray, color: str | None = None) -> SubjectFollowing:
    """How far the take's subject stays from the shot's (`masks`: (frames, height, width), true or
    non-zero where the subject is). The take's subject is its pixels near `color` (one of COLORS),
    or without one, its pixels that stand out from the frame's median colour; a frame where none
    is found counts as the frame's half-diagonal."""
    take = as_uint8(take)
    frames, track = subject_track(masks)
    if color is not None:
        points = [centroid(color_mask(frame, color)) for frame in take[frames]]
    else:
        points = [standout_centroid(frame) for frame in take[frames]]
    found = np.array([point is not None for point in points])
    distances = distances_to_track(points, track, half_diagonal(take))
    baselines = parked_baselines(track, take.shape[2], take.shape[1])
    return SubjectFollowing(
        float(distances.mean()), baselines["mean position"], baselines["frame centre"], distances, found
    )
