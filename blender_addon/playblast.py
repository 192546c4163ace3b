"""The playblast: the scene camera's view, rendered with Workbench, at the model's size and count;
and, when the shot has subjects, their silhouettes: the same frames with only the subjects
visible, on a transparent film, whose alpha is the subject mask.

Every render setting the playblast touches is put back afterwards, also when it fails.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from .shape import legal_frame_count, playblast_size, sampled_frames

GEOMETRY_TYPES = {"MESH", "CURVE", "CURVES", "SURFACE", "META", "FONT", "POINTCLOUD", "VOLUME", "GPENCIL",
                  "GREASEPENCIL"}  # Grease Pencil is GPENCIL up to Blender 4.2, GREASEPENCIL from 4.3
MOVE_TOLERANCE = 1e-5
SUBJECT_MODES = ("MOVING", "COLLECTION", "NONE")

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
class Playblast:
    """A rendered playblast: its frames, the subject masks (none when the shot has no subjects) and
    the names of the subjects."""

    frames: list[Path]
    masks: list[Path]
    subjects: list[str]


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


def renders_geometry(obj) -> bool:
    """Whether the object shows up in a render: geometry, or an empty that instances a collection."""
    return obj.type in GEOMETRY_TYPES or (obj.type == "EMPTY" and obj.instance_type == "COLLECTION"
                                          and obj.instance_collection is not None)


def _rendered_objects(scene) -> list:
    view_layer = scene.view_layers[0] if scene.view_layers else None
    return [obj for obj in scene.objects if renders_geometry(obj) and not obj.hide_render
            and (view_layer is None or obj.name in view_layer.objects)]


def _placement(obj, depsgraph) -> tuple[tuple, list]:
    """Where the object is and what space it fills, as evaluated: its pose (world matrix and world
    bounding box, flattened, for comparing frames) and its bounding box's world-space corners."""
    evaluated = obj.evaluated_get(depsgraph)
    matrix = evaluated.matrix_world
    corners = [matrix @ Vector(corner) for corner in evaluated.bound_box]
    return tuple(value for row in matrix for value in row) + tuple(value for c in corners for value in c), corners


def _in_view(scene, corners) -> bool:
    """Whether a bounding box reaches into the scene camera's frame (in front of the camera)."""
    points = [world_to_camera_view(scene, scene.camera, corner) for corner in corners]
    ahead = [p for p in points if p.z > 0]
    if not ahead:
        return False
    xs, ys = [p.x for p in ahead], [p.y for p in ahead]
    return min(xs) <= 1 and max(xs) >= 0 and min(ys) <= 1 and max(ys) >= 0


def survey(scene, objects: list, frames: list[int]) -> tuple[set, set]:
    """Which of `objects` move over `frames` (pose or deformation), and which the camera sees in
    at least one of them: two sets of indices into `objects`. Leaves the scene at the last frame."""
    first, moved, seen = None, set(), set()
    for frame in frames:
        scene.frame_set(frame)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        placements = [_placement(obj, depsgraph) for obj in objects]
        poses = [pose for pose, _ in placements]
        seen.update(index for index, (_, corners) in enumerate(placements)
                    if index not in seen and _in_view(scene, corners))
        if first is None:
            first = poses
            continue
        moved.update(index for index, (start, now) in enumerate(zip(first, poses))
                     if index not in moved and any(abs(a - b) > MOVE_TOLERANCE for a, b in zip(start, now)))
    return moved, seen


def subject_objects(scene, mode: str, collection=None, frames: list[int] | None = None) -> list:
    """The shot's subjects under `mode` (see FlowMotionShot.subjects) that the camera sees in at
    least one of `frames`: the moving rendered objects, or a collection's; none for 'NONE'. Raises
    PlayblastError when a collection is asked for and none is set."""
    if mode not in SUBJECT_MODES:
        raise PlayblastError(f"unknown subjects setting {mode!r}; choose one of {', '.join(SUBJECT_MODES)}")
    if mode == "NONE":
        return []
    candidates = _rendered_objects(scene)
    if mode == "COLLECTION":
        if collection is None:
            raise PlayblastError("Subjects is set to Collection but no collection is chosen: choose the one that "
                                 "holds the shot's subjects")
        members = set(collection.all_objects)
        candidates = [obj for obj in candidates if obj in members]
    moved, seen = survey(scene, candidates, frames or [scene.frame_start, scene.frame_end])
    wanted = seen if mode == "COLLECTION" else moved & seen
    return [obj for index, obj in enumerate(candidates) if index in wanted]


def render(scene, max_side: int, folder: str | Path | None = None, subjects: str = "NONE",
           collection=None, on_frame=None) -> Playblast:
    """Render the playblast's frames as PNG files and, when the shot has subjects (`subjects`: a
    FlowMotionShot.subjects mode), their masks; returns their paths in order. `on_frame(done,
    total)` is called after every rendered image (frames and masks).

    Without `folder` the files go to a new temporary folder, which is removed again if the
    playblast fails."""
    shot = plan(scene, max_side)
    own_folder = folder is None
    folder = Path(folder or tempfile.mkdtemp(prefix="flowmotion-playblast-"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with preserved_settings(scene):
            chosen = subject_objects(scene, subjects, collection, shot.frames)
            total = len(shot.frames) * (2 if chosen else 1)
            counter = _Counter(total, on_frame)
            frames = _render_frames(scene, shot, folder, counter)
            masks = _render_masks(scene, shot, folder / "subjects", chosen, counter) if chosen else []
            return Playblast(frames, masks, [obj.name for obj in chosen])
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


class _Counter:
    """Counts rendered images and tells `on_frame(done, total)`, when there is one."""

    def __init__(self, total: int, on_frame=None):
        self.done, self.total, self.on_frame = 0, total, on_frame

    def tick(self) -> None:
        self.done += 1
        if self.on_frame is not None:
            self.on_frame(self.done, self.total)


def _render_masks(scene, shot: PlayblastPlan, folder: Path, subjects: list, counter: _Counter) -> list[Path]:
    """The frames again with every rendered object but the subjects hidden, on a transparent film:
    each PNG's alpha is where the subjects are. The objects' render visibility comes back after."""
    keep = set(subjects)
    hidden = [obj for obj in _rendered_objects(scene) if obj not in keep]
    scene.render.film_transparent = True
    scene.render.image_settings.color_mode = "RGBA"
    try:
        for obj in hidden:
            obj.hide_render = True
        folder.mkdir(parents=True, exist_ok=True)
        return _render_sequence(scene, shot, folder, "subject mask", counter)
    finally:
        for obj in hidden:
            obj.hide_render = False


def _render_frames(scene, shot: PlayblastPlan, folder: Path, counter: _Counter) -> list[Path]:
    _use_workbench_png(scene.render, shot.width, shot.height)
    return _render_sequence(scene, shot, folder, "playblast frame", counter)


def _render_sequence(scene, shot: PlayblastPlan, folder: Path, what: str, counter: _Counter) -> list[Path]:
    paths = []
    for number, frame in enumerate(shot.frames, start=1):
        scene.frame_set(frame)
        path = folder / f"frame_{number:04d}.png"
        scene.render.filepath = str(path)
        try:
            bpy.ops.render.render(write_still=True, scene=scene.name)
        except RuntimeError as error:
            raise PlayblastError(f"Blender could not render {what} {frame}: {error}") from None
        if not path.is_file():
            raise PlayblastError(f"Blender did not write {what} {frame} to {folder}: is the disk full?")
        paths.append(path)
        counter.tick()
    return paths
