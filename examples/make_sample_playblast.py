"""Writes examples/playblast.mp4: a small Workbench-style playblast (grey shading, a block moving
along an arc over a ground plane while the camera pans), the source video of the README's
command-line example (square and 17 frames, like the clips the embedded model knows).

    python examples/make_sample_playblast.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FRAMES, FPS = 96, 96, 17, 12


def draw_frame(index: int) -> np.ndarray:
    t = index / (FRAMES - 1)
    pan = int(round(16 * t))  # the camera pans right, so the world slides left
    frame = np.full((HEIGHT, WIDTH, 3), 92, dtype=np.uint8)  # Workbench's grey world
    horizon = 56
    rows = np.arange(HEIGHT)[:, None]
    cols = np.arange(WIDTH)[None, :] + pan
    ground = np.broadcast_to(rows >= horizon, (HEIGHT, WIDTH))
    checker = ((cols // 16 + (rows - horizon) // 8) % 2 == 0) & ground
    frame[ground] = 130
    frame[checker] = 118
    # A block travels left to right along a hop, in world space.
    x = int(round(14 + 80 * t)) - pan
    y = int(round(horizon - 2 - 28 * np.sin(np.pi * t)))
    size = 20
    top, left = max(0, y - size), max(0, x - size // 2)
    bottom, right = min(HEIGHT, y), min(WIDTH, x + size // 2)
    shadow_left, shadow_right = max(0, x - size // 2), min(WIDTH, x + size // 2)
    frame[horizon + 2 : horizon + 6, shadow_left:shadow_right] = 70
    frame[top:bottom, left:right] = 205
    frame[top:bottom, max(left, right - 5) : right] = 165  # the shaded side
    return frame


def main() -> None:
    import imageio.v3 as iio

    frames = np.stack([draw_frame(i) for i in range(FRAMES)])
    out = Path(__file__).with_name("playblast.mp4")
    iio.imwrite(
        out,
        frames,
        fps=FPS,
        codec="libx264",
        plugin="FFMPEG",
        macro_block_size=1,
        pixelformat="yuv420p",
        output_params=["-crf", "16"],
    )
    print(f"wrote {out} ({FRAMES} frames, {WIDTH}x{HEIGHT}, {FPS} fps)")


if __name__ == "__main__":
    main()
