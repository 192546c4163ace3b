"""The playblast: the scene camera's view, rendered with Workbench, at the model's size and count.

Every render setting the playblast touches is put back afterwards, also when it fails.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy

from .shape import legal_frame_count, playblast_size, sampled_frames

# (owner path, attribute) of every setting the playblast changes, in the order they are put back:
# Blender 5.0 only accepts a file format of the current media type (a video output must become an
# image output before it can be PNG, and back), so media_type comes before file_format.
TOUCHED = (
    ("render", "engine"), ("render", "resolution_x"), ("render", "resolution_y"),
    ("render", "resolution_percentage"), ("render", "filepath"), ("render", "use_file_extension"),
    ("render.image_settings", "media_type"),
    ("render.image_settings", "file_format"), ("render.image_settings", "color_mode"),
    ("render.image_settings", "color_depth"), ("render", "film_transparent"), ("", "frame_current"),
)


class PlayblastError(Exception):
    """The shot cannot be playblasted; the message says why and what to change."""


@dataclass(frozen=True)
class PlayblastPlan:
    frames: list[int]
    width: int
    height: int
    shot_frames: int

    def describe(self) -> str:
        return f"{len(self.frames)} frames at {self.width}x{self.height}"


def _owner(scene, path: str):
    owner = scene
    for part in filter(None, path.split(".")):
        owner = getattr(owner, part)
    return owner


@contextlib.contextmanager
def preserved_settings(scene):
    # Blender before 5.0 has no media_type: only what this Blender has is saved and put back.
    saved = [(path, name, getattr(_owner(scene, path), name)) for path, name in TOUCHED
             if hasattr(_owner(scene, path), name)]
    try:
        yield
    finally:
        for path, name, value in saved:
            if name == "frame_current":
                scene.frame_set(value)
            else:
                setattr(_owner(scene, path), name, value)


def plan(scene, max_side: int) -> PlayblastPlan:
    """What would be sent for this scene; raises PlayblastError when nothing can be."""
    if scene.camera is None:
        raise PlayblastError("the scene has no camera: add one and make it the scene camera")
    first, last = scene.frame_start, scene.frame_end
    if last < first:
        raise PlayblastError(f"the frame range is empty (start {first}, end {last})")
    scale = scene.render.resolution_percentage / 100.0
    width = max(1, round(scene.render.resolution_x * scale))
    height = max(1, round(scene.render.resolution_y * scale))
    width, height = playblast_size(width, height, max_side)
    count = legal_frame_count(last - first + 1)
    return PlayblastPlan(sampled_frames(first, last, count), width, height, last - first + 1)


def render(scene, max_side: int, folder: str | Path | None = None) -> list[Path]:
    """Render the playblast's frames as PNG files; returns their paths in order.

    Without `folder` the frames go to a new temporary folder, which is removed again if the
    playblast fails."""
    shot = plan(scene, max_side)
    own_folder = folder is None
    folder = Path(folder or tempfile.mkdtemp(prefix="flowmotion-playblast-"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with preserved_settings(scene):
            return _render_frames(scene, shot, folder)
    except BaseException:
        if own_folder:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _use_workbench_png(render_settings, width: int, height: int) -> None:
    render_settings.engine = "BLENDER_WORKBENCH"
    render_settings.resolution_x, render_settings.resolution_y = width, height
    render_settings.resolution_percentage = 100
    render_settings.use_file_extension = True
    render_settings.film_transparent = False
    image = render_settings.image_settings
    if hasattr(image, "media_type"):
        image.media_type = "IMAGE"
    image.file_format = "PNG"
    image.color_mode = "RGB"
    image.color_depth = "8"


def _render_frames(scene, shot: PlayblastPlan, folder: Path) -> list[Path]:
    _use_workbench_png(scene.render, shot.width, shot.height)
    paths = []
    for number, frame in enumerate(shot.frames, start=1):
        scene.frame_set(frame)
        path = folder / f"frame_{number:04d}.png"
        scene.render.filepath = str(path)
        try:
            bpy.ops.render.render(write_still=True, scene=scene.name)
        except RuntimeError as error:
            raise PlayblastError(f"Blender could not render playblast frame {frame}: {error}") from None
        if not path.is_file():
            raise PlayblastError(f"Blender did not write playblast frame {frame} to {folder}: is the disk full?")
        paths.append(path)
    return paths
