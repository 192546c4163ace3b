"""Camera Placement: the shot's camera move, read from its frames, imposed on the take's layout.

A small model draws a static set whatever the playblast's camera does. Camera Placement reads the
camera's motion from the shot (tiled phase correlation between consecutive frames, fitted with a
zoom and a shift per frame pair), and at a few noise levels of the sampling rebuilds the clean-latent
prediction so that every latent frame is the middle latent frame's content seen through that motion.
What is drawn stays the model's: only where it sits in each frame comes from the shot.

Coordinates are normalised as torch's `grid_sample` has them: -1 to 1 across the frame, centre 0.
A frame-to-frame motion (scale, shift x, shift y) maps a point p of one frame to scale * p + shift
in the next: a pan is a shift, a dolly a scale, an orbit mostly a shift.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .guidance import FRAME_DIM
from .video import retime_indices

MOTION_TILES = (2, 2)
"""Rows and columns of tiles whose shifts are fitted with one zoom and one shift per frame pair."""
ESTIMATE_WIDTH = 320
"""Frames wider than this are shrunk to it before the motion is read (phase correlation needs detail)."""
MAX_SCALE_STEP = 0.1
"""The most a frame pair may zoom in or out (a larger read is a mismatch, not a dolly)."""
MAX_RESIDUAL_PIXELS = 1.0
RESIDUAL_SHARE = 0.5
"""Two tiles' shifts agree within MAX_RESIDUAL_PIXELS or RESIDUAL_SHARE of the shift, whichever is
more (a dolly moves tiles apart by a share of their shift)."""
LOCK_FACTOR = 8.0
MIN_LOCKED_TILES = 3
"""A tile locks on where its correlation peak reaches LOCK_FACTOR / sqrt(its pixels), well above
what chance gives a tile of that size; a frame pair in which fewer than MIN_LOCKED_TILES tiles lock
on has nothing to read the camera by: a camera move shows all over the frame, a lone subject in a
part of it."""
STILL_SHIFT = 0.02
"""A track whose frames all stay within this (normalised units) of the middle frame is a still camera."""
IDENTITY = (1.0, 0.0, 0.0)


def phase_shift(before: torch.Tensor, after: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How far (dx, dy) pixels the content of grey images `before` (..., height, width) moved to be
    `after`, by phase correlation with a sub-pixel peak; and the peak's height (0-1), which is low
    where the image has nothing to lock on to (a sky, a plain floor)."""
    height, width = before.shape[-2:]
    window = torch.outer(
        torch.hann_window(height, periodic=False, dtype=torch.float64),
        torch.hann_window(width, periodic=False, dtype=torch.float64),
    )
    a = torch.fft.fft2((before - before.mean(dim=(-2, -1), keepdim=True)).double() * window)
    b = torch.fft.fft2((after - after.mean(dim=(-2, -1), keepdim=True)).double() * window)
    cross = b * a.conj()
    surface = torch.fft.ifft2(cross / (cross.abs() + 1e-9)).real.flatten(-2)
    peak = surface.argmax(dim=-1)
    peak_y, peak_x = peak // width, peak % width

    def value(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return surface.gather(-1, ((y % height) * width + x % width).unsqueeze(-1)).squeeze(-1)

    centre = value(peak_y, peak_x)
    shift = []
    for position, length, left, right in (
        (peak_x, width, value(peak_y, peak_x - 1), value(peak_y, peak_x + 1)),
        (peak_y, height, value(peak_y - 1, peak_x), value(peak_y + 1, peak_x)),
    ):
        curvature = left - 2 * centre + right
        curved = curvature < 0
        offset = torch.where(curved, 0.5 * (left - right) / torch.where(curved, curvature, -1.0), 0.0)
        located = position + offset
        shift.append(torch.where(located > length / 2, located - length, located))
    return torch.stack(shift, dim=-1), centre


def frame_motion(video: torch.Tensor, tiles: tuple[int, int] = MOTION_TILES) -> torch.Tensor:
    """The camera's motion between consecutive grey frames `video` (frames, height, width): per
    pair (scale, shift x, shift y), fitted to the tiles' shifts weighted by their peaks' heights."""
    frames, height, width = video.shape
    rows, columns = tiles
    tile_h, tile_w = height // rows, width // columns
    cropped = video[:, : tile_h * rows, : tile_w * columns]
    tiled = cropped.reshape(frames, rows, tile_h, columns, tile_w).transpose(2, 3).flatten(1, 2)
    pixels, peaks = phase_shift(tiled[:-1], tiled[1:])  # (pairs, tiles, 2), (pairs, tiles)
    half_size = torch.tensor([width / 2, height / 2], dtype=pixels.dtype)
    shifts = pixels / half_size
    ys = (torch.arange(rows, dtype=shifts.dtype) + 0.5) * (2 * tile_h / height) - 1
    xs = (torch.arange(columns, dtype=shifts.dtype) + 0.5) * (2 * tile_w / width) - 1
    centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)
    weights = peaks.clamp(min=0) ** 2 + 1e-12  # (pairs, tiles)
    # Consensus first: the move most of the frame agrees on, among the fit to all tiles (a pan, a
    # dolly) and each tile's own shift (a subject crossing a still set moves one tile, the set none).
    zoom, shift = _fit(shifts, centres, weights)
    fitted = (zoom[:, None, None] * centres + shift[:, None]) * half_size  # (pairs, tiles, 2), pixels
    hypotheses = torch.cat([fitted[:, None], pixels[:, :, None].expand(-1, -1, pixels.shape[1], -1)], dim=1)
    tolerance = torch.clamp(hypotheses.norm(dim=-1) * RESIDUAL_SHARE, min=MAX_RESIDUAL_PIXELS)
    agree = (hypotheses - pixels[:, None]).norm(dim=-1) <= tolerance  # (pairs, hypothesis, tile)
    support = (agree * weights[:, None, :]).sum(dim=-1)
    best = support.argmax(dim=1)  # the first, the fit to all tiles, wins ties
    agreeing = agree.gather(1, best[:, None, None].expand(-1, 1, agree.shape[-1]))[:, 0]
    zoom, shift = _fit(shifts, centres, weights * agreeing)
    # Fewer than three agreeing tiles cannot tell a zoom: their mean shift is the move.
    few = agreeing.sum(dim=1) < 3
    share = weights * agreeing
    plain_shift = (share[..., None] * shifts).sum(dim=1) / share.sum(dim=1, keepdim=True)
    zoom, shift = torch.where(few, 0.0, zoom), torch.where(few[:, None], plain_shift, shift)
    # A pair in which the frame does not lock on (flicker, a plain floor) tells nothing: the camera stays.
    lost = (peaks >= LOCK_FACTOR / (tile_h * tile_w) ** 0.5).sum(dim=1) < MIN_LOCKED_TILES
    zoom, shift = torch.where(lost, 0.0, zoom), torch.where(lost[:, None], 0.0, shift)
    return torch.cat([1 + zoom[:, None], shift], dim=1)


def _fit(shifts: torch.Tensor, centres: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted least squares of tile shifts (pairs, tiles, 2) at tile centres (tiles, 2) as
    zoom * centre + shift: the zoom (pairs,) less one, and the shift (pairs, 2)."""
    share = (weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12))[..., None]
    mean_centre = (share * centres).sum(dim=1)
    mean_shift = (share * shifts).sum(dim=1)
    spread = centres - mean_centre[:, None]
    zoom = (share * (shifts - mean_shift[:, None]) * spread).sum(dim=(1, 2)) / (
        (share * spread * spread).sum(dim=(1, 2)) + 1e-12
    )
    zoom = zoom.clamp(-MAX_SCALE_STEP, MAX_SCALE_STEP)
    return zoom, mean_shift - zoom[:, None] * mean_centre


def accumulate(motions: torch.Tensor) -> torch.Tensor:
    """Frame-to-frame motions (pairs, 3) -> each frame's motion from the first (frames, 3)."""
    track = [torch.tensor(IDENTITY, dtype=motions.dtype)]
    for scale, shift_x, shift_y in motions:
        total, total_x, total_y = track[-1]
        track.append(torch.stack([scale * total, scale * total_x + shift_x, scale * total_y + shift_y]))
    return torch.stack(track)


def latent_frame_times(frames: int, temporal_factor: int) -> list[float]:
    """The video time (in frames) each latent frame of a `frames`-frame video stands for: the first
    frame alone, then the middle of each group of `temporal_factor` frames."""
    count = (frames - 1) // temporal_factor + 1
    return [0.0] + [temporal_factor * k - (temporal_factor - 1) / 2 for k in range(1, count)]


def camera_track(frames: np.ndarray, model_frames: int, temporal_factor: int) -> torch.Tensor | None:
    """The camera's motion from the shot's first frame to each latent frame's time, (latent frames,
    3), from uint8 `frames` (frames, height, width, 3) retimed to the model's `model_frames`; None
    where the camera stands still."""
    grey = torch.from_numpy(np.ascontiguousarray(frames)).float().mean(dim=-1) / 255.0
    if grey.shape[0] != model_frames:
        grey = grey[retime_indices(grey.shape[0], model_frames)]  # the frames the model is given
    height, width = grey.shape[1:]
    if width > ESTIMATE_WIDTH:
        size = (max(8, round(height * ESTIMATE_WIDTH / width)), ESTIMATE_WIDTH)
        grey = F.interpolate(grey[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    if grey.shape[0] < 2:
        return None
    track = accumulate(frame_motion(grey))
    times = latent_frame_times(grey.shape[0], temporal_factor)
    at = []
    for time in times:
        before = int(np.floor(time))
        after = min(before + 1, len(track) - 1)
        share = time - before
        at.append((1 - share) * track[before] + share * track[after])
    latent_track = torch.stack(at).float()
    if len(latent_track) < 3 or travel(latent_track) < STILL_SHIFT:
        return None
    return latent_track


def travel(track: torch.Tensor) -> float:
    """How far (normalised units) a frame's corner moves, at most, from the middle frame's."""
    relative = relative_to(track, len(track) // 2)
    corner = relative[:, 0:1] - 1 + relative[:, 1:]  # where the frame's (1, 1) corner goes, less (1, 1)
    return float(corner.abs().max())


def relative_to(track: torch.Tensor, anchor: int) -> torch.Tensor:
    """Each frame's motion from the `anchor` frame, (frames, 3)."""
    scale = track[:, 0] / track[anchor, 0]
    return torch.stack(
        [scale, track[:, 1] - scale * track[anchor, 1], track[:, 2] - scale * track[anchor, 2]],
        dim=1,
    )


def place_camera(prediction: torch.Tensor, track: torch.Tensor) -> torch.Tensor:
    """The clean-latent `prediction` (batch, channels, frames, height, width) rebuilt so that every
    latent frame shows the middle latent frame's content moved by the camera `track` (frames, 3);
    what a frame sees that the middle one does not keeps the prediction's own. The first latent
    frame (encoded alone by Wan-family VAEs) is given the warped content in its own channel
    statistics."""
    frames, height, width = prediction.shape[FRAME_DIM:]
    anchor = frames // 2
    relative = relative_to(track.to(prediction.device, torch.float64), anchor)
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, dtype=torch.float64, device=prediction.device)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, dtype=torch.float64, device=prediction.device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    scale, shift_x, shift_y = (relative[:, i, None, None] for i in range(3))
    # A point p of the anchor lands at scale * p + shift: frame k samples the anchor at the inverse.
    source_x, source_y = (grid_x - shift_x) / scale, (grid_y - shift_y) / scale  # (frames, h, w)
    grid = torch.stack([source_x, source_y], dim=-1).to(prediction.dtype)
    anchor_frames = prediction[:, :, anchor]
    batch = prediction.shape[0]
    warped = torch.stack(
        [
            F.grid_sample(anchor_frames, grid[k].expand(batch, -1, -1, -1), padding_mode="border", align_corners=False)
            for k in range(frames)
        ],
        dim=FRAME_DIM,
    )
    seen = ((source_x.abs() <= 1) & (source_y.abs() <= 1)).to(prediction.dtype)[None, None]
    if anchor != 0:  # more than one latent frame
        dims = (2, 3)
        first, middle = prediction[:, :, 0], anchor_frames
        restyled = (warped[:, :, 0] - middle.mean(dim=dims, keepdim=True)) / (middle.std(dim=dims, keepdim=True) + 1e-6)
        warped[:, :, 0] = restyled * first.std(dim=dims, keepdim=True) + first.mean(dim=dims, keepdim=True)
    return seen * warped + (1 - seen) * prediction
