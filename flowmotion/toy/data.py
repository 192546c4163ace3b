"""Procedural training and benchmark videos: coloured shapes moving over backgrounds, and
Workbench-style playblasts (grey shapes on a grey stage), each with its caption.

Frames are uint8 (frames, height, width, 3), SIZE x SIZE unless a width and height are given
(lengths then scale with the shorter side, so a shape covers the same share of the frame's
height). Everything is drawn from a numpy Generator, so a seed fixes a video and its caption.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 32
FRAMES = 17
COLORS = {"red": (220, 40, 40), "blue": (40, 70, 230), "yellow": (235, 215, 40), "purple": (150, 50, 200)}
BACKGROUNDS = {"grass": (70, 150, 60), "sand": (205, 180, 120), "snow": (235, 240, 245), "water": (40, 120, 160)}
PLAYBLAST_GREY = (200, 200, 200)
TRAIN_SHAPES = ("ball", "cube", "triangle")
HELD_OUT_SHAPES = ("diamond", "ring")
TRAIN_PATHS = ("straight", "curve", "bounce", "pass")
HELD_OUT_PATHS = ("circle", "zigzag")


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray
    caption: str
    track: np.ndarray
    """The object's centre (x, y) in pixels for every frame."""
    color: str
    shape: str
    background: str
    mask: np.ndarray | None = None
    """Where the object is: bool (frames, height, width)."""


def caption_for(color: str, shape: str, background: str) -> str:
    if background == "playblast":
        return f"a playblast of a grey {shape}"
    return f"a {color} {shape} on {background}"


def shape_mask(
    shape: str, cx: float, cy: float, radius: float, size: int = SIZE, height: int | None = None
) -> np.ndarray:
    """The shape's pixels in a `size`-wide frame, `height` high (square when not given)."""
    ys, xs = np.mgrid[0 : height or size, 0:size] + 0.5
    dx, dy = xs - cx, ys - cy
    if shape == "ball":
        return dx**2 + dy**2 <= radius**2
    if shape == "cube":
        return (np.abs(dx) <= radius * 0.85) & (np.abs(dy) <= radius * 0.85)
    if shape == "triangle":
        return (dy <= radius * 0.8) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) * 0.6)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    if shape == "ring":
        distance = np.sqrt(dx**2 + dy**2)
        return (distance <= radius) & (distance >= radius * 0.55)
    raise ValueError(f"unknown shape {shape!r}")


def path(
    kind: str, rng: np.random.Generator, frames: int = FRAMES, size: int = SIZE, height: int | None = None
) -> np.ndarray:
    """Object centres (frames, 2) in pixels for a kind of motion in a `size`-wide frame, `height` high
    (square when not given); lengths scale with the shorter side."""
    t = np.linspace(0.0, 1.0, frames)[:, None]
    width, height = size, height or size
    scale = min(width, height) / SIZE
    margin = 6.0 * scale
    far = np.array([width - margin, height - margin])
    while True:  # ends that are far enough apart; redrawing both keeps every draw's odds high
        start, end = rng.uniform(margin, far, (2, 2))
        if np.linalg.norm(end - start) >= min(width, height) * 0.45:
            break
    if kind == "straight":
        return start + (end - start) * t
    if kind == "curve":
        bend = rng.uniform(margin, far, 2)
        return (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end
    if kind == "bounce":
        floor = rng.uniform(height * 0.65, height - margin)
        x = start[0] + (end[0] - start[0]) * t[:, 0]
        hops = rng.integers(1, 3)
        y = floor - rng.uniform(8, 16) * scale * np.abs(np.sin(np.pi * hops * t[:, 0]))
        return np.stack([x, y], axis=1)
    if kind == "pass":  # enters or leaves the frame
        side = rng.integers(0, 2)
        y = rng.uniform(margin, height - margin)
        xs = np.array([-margin, width + margin])[[side, 1 - side]]
        return np.stack([xs[0] + (xs[1] - xs[0]) * t[:, 0], np.full(frames, y)], axis=1)
    if kind == "circle":
        centre, radius = np.array([width / 2, height / 2]), rng.uniform(7, 10) * scale
        phase = rng.uniform(0, 2 * np.pi)
        angle = phase + 2 * np.pi * t[:, 0] * rng.choice([-1, 1])
        return centre + radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    if kind == "zigzag":
        x = start[0] + (end[0] - start[0]) * t[:, 0]
        y = (
            height / 2
            + rng.uniform(6, 10)
            * scale
            * np.sign(np.sin(2 * np.pi * 2 * t[:, 0]))
            * np.abs(np.sin(2 * np.pi * 2 * t[:, 0])) ** 0.3
        )
        return np.stack([x, y], axis=1)
    raise ValueError(f"unknown path {kind!r}")


def background_frames(
    background: str,
    rng: np.random.Generator,
    pan: float,
    frames: int = FRAMES,
    size: int = SIZE,
    height: int | None = None,
) -> np.ndarray:
    """The backdrop of every frame, `size` wide and `height` high (square when not given); `pan`
    pixels of camera pan over the clip shift its texture."""
    height = height or size
    ys, xs = np.mgrid[0:height, 0:size].astype(np.float32)
    out = np.empty((frames, height, size, 3), np.float32)
    offsets = np.linspace(0.0, pan, frames)
    if background == "playblast":
        horizon = rng.uniform(height * 0.35, height * 0.6)
        for f, shift in enumerate(offsets):
            stage = np.where(ys >= horizon, 128.0, 64.0)
            tiles = (((xs + shift) // 8 + (ys - horizon) // 4) % 2 == 0) & (ys >= horizon)
            out[f] = (stage - 10.0 * tiles)[..., None]
        return out
    base = np.array(BACKGROUNDS[background], np.float32)
    frequency = rng.uniform(0.4, 0.8)
    for f, shift in enumerate(offsets):
        texture = np.sin((xs + shift) * frequency) * np.sin(ys * frequency * 0.7)
        out[f] = base + 14.0 * texture[..., None]
    return out


def draw_object(
    frames: np.ndarray, track: np.ndarray, shape: str, radius: float, fill: np.ndarray, shaded: bool = False
) -> np.ndarray:
    """Paint the object into float `frames` along `track`, its right side darker when `shaded` (as
    Workbench's studio light leaves it); returns where it is, bool (frames, height, width)."""
    height, width = frames.shape[1:3]
    columns = np.mgrid[0:height, 0:width][1] + 0.5
    masks = np.zeros(frames.shape[:3], bool)
    for f, (cx, cy) in enumerate(track):
        mask = masks[f] = shape_mask(shape, cx, cy, radius, width, height)
        frames[f][mask] = fill
        if shaded:
            frames[f][mask & (columns > cx + radius * 0.3)] = fill * 0.8
    return masks


def make_clip(
    rng: np.random.Generator,
    *,
    shapes=TRAIN_SHAPES,
    paths=TRAIN_PATHS,
    background: str | None = None,
    color: str | None = None,
    shape: str | None = None,
    playblast_share: float = 0.25,
    frames: int = FRAMES,
    width: int = SIZE,
    height: int = SIZE,
) -> Clip:
    if background is None:
        background = "playblast" if rng.random() < playblast_share else str(rng.choice(list(BACKGROUNDS)))
    shape = shape or str(rng.choice(shapes))
    color = "grey" if background == "playblast" else (color or str(rng.choice(list(COLORS))))
    scale = min(width, height) / SIZE
    track = path(str(rng.choice(paths)), rng, frames, width, height)
    pan = float(rng.choice([0.0, 0.0, rng.uniform(-10, 10)])) * scale
    video = background_frames(background, rng, pan, frames, width, height)
    radius = rng.uniform(4.0, 6.5) * scale
    fill = np.array(PLAYBLAST_GREY if background == "playblast" else COLORS[color], np.float32)
    masks = draw_object(video, track, shape, radius, fill, shaded=background == "playblast")
    return Clip(
        np.clip(video, 0, 255).astype(np.uint8),
        caption_for(color, shape, background),
        track,
        color,
        shape,
        background,
        masks,
    )


def redraw(clip: Clip, color: str, shape: str, background: str, radius: float = 5.0, seed: int = 0) -> Clip:
    """The clip's object track (in frame coordinates) drawn again in another look, without a camera pan."""
    frames = background_frames(background, np.random.default_rng(seed), 0.0, len(clip.track))
    masks = draw_object(frames, clip.track, shape, radius, np.array(COLORS[color], np.float32))
    return Clip(
        np.clip(frames, 0, 255).astype(np.uint8),
        caption_for(color, shape, background),
        clip.track,
        color,
        shape,
        background,
        masks,
    )


def training_clips(count: int, seed: int, frames: int = FRAMES, width: int = SIZE, height: int = SIZE) -> list[Clip]:
    rng = np.random.default_rng(seed)
    return [make_clip(rng, frames=frames, width=width, height=height) for _ in range(count)]


def vocabulary() -> list[str]:
    words = {"a", "of", "on", "playblast", "grey", *COLORS, *BACKGROUNDS, *TRAIN_SHAPES, *HELD_OUT_SHAPES}
    return sorted(words)
