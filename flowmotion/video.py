"""Source videos in and result videos out: reading, validating, sizing and writing frames.

Frames are uint8 numpy arrays shaped (frames, height, width, 3) unless a function says otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import durable
from .errors import FlowMotionError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_FPS = 24.0


@dataclass(frozen=True)
class ShapePlan:
    """The frame count and size the model works at, and the ones the caller gets back."""

    model_frames: int
    model_height: int
    model_width: int
    out_frames: int
    out_height: int
    out_width: int


def legal_side(side: int, multiple: int = 16) -> int:
    """The multiple of `multiple` nearest to `side` (halves round up), never below `multiple`."""
    return max(multiple, ((side + multiple // 2) // multiple) * multiple)


def legal_frame_count(frames: int, temporal: int = 4) -> int:
    """The count of the form temporal * k + 1 nearest to `frames` (halves round up), at least 1."""
    k = (frames - 1 + temporal // 2) // temporal
    return max(0, k) * temporal + 1


def plan_shape(
    source_frames: int,
    source_height: int,
    source_width: int,
    *,
    num_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    spatial_multiple: int = 16,
    temporal_multiple: int = 4,
    max_area: int | None = None,
) -> ShapePlan:
    """Map a source and the size the caller asks for onto the model's legal size and count.

    The rule: the caller gets exactly `num_frames` x `height` x `width` (each defaulting to the
    source's). The model works at the nearest legal shape: each side rounded to the nearest
    multiple of `spatial_multiple`, the frame count to the nearest `temporal_multiple` * k + 1.
    With `max_area` (pixels), a larger size is first scaled down with its aspect kept and each
    side rounded down instead, so the model never works above the cap; the result is scaled back.
    The source is resampled over its whole duration onto the model's frames, and the result back
    onto the caller's, so the first and last frames line up with the source's first and last.
    """
    out_frames = source_frames if num_frames is None else num_frames
    out_height = source_height if height is None else height
    out_width = source_width if width is None else width
    for name, value in (("num_frames", out_frames), ("height", out_height), ("width", out_width)):
        if value < 1:
            raise FlowMotionError(f"{name} must be at least 1, got {value}")
    model_height = legal_side(out_height, spatial_multiple)
    model_width = legal_side(out_width, spatial_multiple)
    if max_area is not None and model_height * model_width > max_area:
        if max_area < spatial_multiple**2:
            raise FlowMotionError(
                f"max_area {max_area} is below the smallest model frame ({spatial_multiple}x{spatial_multiple})"
            )
        scale = (max_area / (out_height * out_width)) ** 0.5
        model_height = max(spatial_multiple, int(out_height * scale) // spatial_multiple * spatial_multiple)
        model_width = max(spatial_multiple, int(out_width * scale) // spatial_multiple * spatial_multiple)
    return ShapePlan(
        model_frames=legal_frame_count(out_frames, temporal_multiple),
        model_height=model_height,
        model_width=model_width,
        out_frames=out_frames,
        out_height=out_height,
        out_width=out_width,
    )


def retime_indices(source_count: int, target_count: int) -> list[int]:
    """Nearest source frame for each target frame, spreading the target over the source's span."""
    if target_count == 1 or source_count == 1:
        return [0] * target_count
    scale = (source_count - 1) / (target_count - 1)
    return [min(source_count - 1, int(i * scale + 0.5)) for i in range(target_count)]


def resample(frames: torch.Tensor, count: int, height: int, width: int) -> torch.Tensor:
    """Retime and resize float frames shaped (frames, channels, height, width)."""
    if frames.shape[0] != count:
        frames = frames[retime_indices(frames.shape[0], count)]
    if frames.shape[-2:] != (height, width):
        frames = F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return frames


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _as_rgb(image: np.ndarray, label: str, alpha_is_mask: bool = False) -> np.ndarray:
    """Any 8- or 16-bit image as uint8 RGB. With `alpha_is_mask`, an image with an alpha channel
    (a render on a transparent film) becomes its alpha, grey."""
    if alpha_is_mask and image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., 3:]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise FlowMotionError(f"{label} has shape {image.shape}; expected height x width x RGB")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    image = image[..., :3]
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.dtype != np.uint8:
        raise FlowMotionError(f"{label} has pixel type {image.dtype}; expected 8-bit images")
    return image


def _stack_frames(images: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
    if not images:
        raise FlowMotionError("the source video has no frames")
    first = images[0]
    for image, label in zip(images, labels, strict=True):
        if image.shape != first.shape:
            raise FlowMotionError(
                f"{label} is {image.shape[1]}x{image.shape[0]} but {labels[0]} is {first.shape[1]}x{first.shape[0]}; "
                "all frames must have the same size"
            )
    return np.ascontiguousarray(np.stack(images))


def read_image_folder(folder: Path, alpha_is_mask: bool = False) -> np.ndarray:
    import imageio.v3 as iio

    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise FlowMotionError(f"{folder} holds no PNG or JPEG frames")
    images, labels = [], []
    for number, path in enumerate(files, start=1):
        label = f"frame {number} ({path.name})"
        try:
            image = iio.imread(path, plugin="pillow")
        except Exception as error:  # imageio raises many unrelated types for a bad file
            raise FlowMotionError(f"{label} cannot be read as an image: {error}") from None
        images.append(_as_rgb(image, label, alpha_is_mask))
        labels.append(label)
    return _stack_frames(images, labels)


def read_video_file(path: Path) -> tuple[np.ndarray, float]:
    import imageio.v3 as iio

    try:
        frames = iio.imread(path, plugin="FFMPEG", index=None)
        fps = float(iio.immeta(path, plugin="FFMPEG").get("fps") or DEFAULT_FPS)
    except Exception as error:  # ffmpeg failures come as OSError, RuntimeError, StopIteration...
        raise FlowMotionError(f"{path} cannot be read as a video: {error}".strip()) from None
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise FlowMotionError(f"{path} holds no video frames")
    return np.ascontiguousarray(frames[..., :3]), fps


def read_video(source: str | os.PathLike, alpha_is_mask: bool = False) -> tuple[np.ndarray, float | None]:
    """Read a video file or a folder of PNG/JPEG frames; returns frames and fps (None for a folder).
    `alpha_is_mask`: frames with an alpha channel are read as their alpha (see `_as_rgb`)."""
    path = Path(source)
    if not path.exists():
        raise FlowMotionError(f"source video {path} does not exist")
    if path.is_dir():
        return read_image_folder(path, alpha_is_mask), None
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise FlowMotionError(f"{path} is a single image; pass the folder that holds the frames")
    return read_video_file(path)


def as_frames(video) -> np.ndarray:
    """Bring any accepted video form to uint8 frames (F, H, W, 3).

    Accepted: a path (video file or frame folder), a uint8 array (F, H, W, 3), a float array in
    [0, 1], a torch tensor of either, or a sequence of PIL images or arrays.
    """
    if isinstance(video, (str, os.PathLike)):
        return read_video(video)[0]
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu().numpy()
    if isinstance(video, np.ndarray):
        if video.ndim != 4 or video.shape[-1] not in (3, 4):
            raise FlowMotionError(f"video array has shape {video.shape}; expected (frames, height, width, 3)")
        if video.shape[0] == 0:
            raise FlowMotionError("the source video has no frames")
        if video.dtype != np.uint8:
            if not np.issubdtype(video.dtype, np.floating):
                raise FlowMotionError(f"video array has type {video.dtype}; expected uint8 or float in [0, 1]")
            video = (np.clip(video, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return np.ascontiguousarray(video[..., :3])
    if isinstance(video, (list, tuple)):
        images = [_as_rgb(np.asarray(frame), f"frame {n}") for n, frame in enumerate(video, start=1)]
        return _stack_frames(images, [f"frame {n}" for n in range(1, len(images) + 1)])
    raise FlowMotionError(f"cannot use a {type(video).__name__} as a video; pass a path, an array or a list of images")


def to_unit_float(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) / 255.0


def to_uint8(frames: np.ndarray) -> np.ndarray:
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def frames_from_png_bytes(parts: Sequence[bytes], noun: str = "frame", alpha_is_mask: bool = False) -> np.ndarray:
    """Decode one PNG per part into frames; errors name the part (`noun` and its number from 1).
    `alpha_is_mask`: frames with an alpha channel are read as their alpha (see `_as_rgb`)."""
    import imageio.v3 as iio

    images, labels = [], []
    for number, data in enumerate(parts, start=1):
        label = f"{noun} {number}"
        if not bytes(data[:8]) == PNG_SIGNATURE:
            raise FlowMotionError(f"{label} is not a PNG image")
        try:
            image = iio.imread(bytes(data), plugin="pillow", extension=".png")
        except Exception as error:  # a corrupt PNG surfaces as whatever the decoder raises
            raise FlowMotionError(f"{label} is a damaged PNG: {error}") from None
        images.append(_as_rgb(image, label, alpha_is_mask))
        labels.append(label)
    return _stack_frames(images, labels)


def frames_to_png_bytes(frames: np.ndarray) -> list[bytes]:
    import imageio.v3 as iio

    return [iio.imwrite("<bytes>", frame, extension=".png") for frame in to_uint8(frames)]


def _remove_previous_result(folder: Path) -> None:
    """Clear a folder that holds only an earlier result's frames; refuse anything else."""
    foreign = [p.name for p in folder.iterdir() if not re.fullmatch(r"frame_\d+\.png", p.name)]
    if foreign:
        raise FlowMotionError(
            f"{folder} already holds other files ({', '.join(sorted(foreign)[:3])}); choose an empty or new folder"
        )
    shutil.rmtree(folder)


def write_video(frames: np.ndarray, out: str | os.PathLike, fps: float = DEFAULT_FPS) -> Path:
    """Write frames to a video file (by suffix) or a folder of PNGs, all or nothing.

    Everything is written to a staging name next to the target, synced and moved into place at
    the end (`flowmotion.durable`), so a failure or a crash leaves no partial output behind.
    """
    import imageio.v3 as iio

    target = Path(out)
    frames = to_uint8(np.asarray(frames))
    target.parent.mkdir(parents=True, exist_ok=True)
    is_file = target.suffix.lower() in VIDEO_SUFFIXES
    if target.exists() and (is_file != target.is_file()):
        raise FlowMotionError(f"{target} exists and is not a {'file' if is_file else 'folder'}")
    if is_file:
        with durable.replacing(target) as staged:
            iio.imwrite(
                staged,
                frames,
                fps=fps,
                codec="libx264",
                plugin="FFMPEG",
                macro_block_size=1,
                quality=8,
                pixelformat="yuv420p" if frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0 else "yuv444p",
            )
        return target
    with durable.staged_folder(target) as staging:
        digits = max(4, len(str(len(frames))))
        for number, frame in enumerate(frames, start=1):
            iio.imwrite(staging / f"frame_{number:0{digits}d}.png", frame)
        if target.exists():
            _remove_previous_result(target)
    return target
