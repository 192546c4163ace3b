"""The playblast: the scene camera's view of the 3D scene, rendered with Workbench, every frame of
the shot at the size the backend takes; and, when the shot has subjects, their silhouettes: the
same frames with only the subjects visible, on a transparent film, whose alpha is the subject mask.

It renders one image at a time (`PlayblastRender.step`), so a timer can render it while Blender
stays usable. Each image is rendered with the playblast's own settings, whatever the scene's
sequencer, compositor or output hold, and every setting is put back right after it, also when it
fails: between two images the scene is exactly as the artist left it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import bpy
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from .shape import legal_frame_count, sent_size

GEOMETRY_TYPES = {
    "MESH",
    "CURVE",
    "CURVES",
    "SURFACE",
    "META",
    "FONT",
    "POINTCLOUD",
    "VOLUME",
    "GPENCIL",
    "GREASEPENCIL",
}  # Grease Pencil is GPENCIL up to Blender 4.2, GREASEPENCIL from 4.3
MOVE_TOLERANCE = 1e-5
SURVEY_FRAMES_PER_STEP = 8
"""Frames the subject survey looks at per step: a long shot's survey never holds Blender up long."""
SUBJECT_MODES = ("MOVING", "COLLECTION", "NONE")
DEFAULT_LIMITS = {"max_frames": 121, "max_width": 1920, "max_height": 1080}
"""The backend's default limits, assumed until a backend announces its own."""

# (owner path, attribute) of every setting the playblast changes, in the order they are put back:
# Blender 5.0 only accepts a file format of the current media type (a video output must become an
# image output before it can be PNG, and back), so media_type comes before file_format.
TOUCHED = (
    ("render", "engine"),
    ("render", "resolution_x"),
    ("render", "resolution_y"),
    ("render", "resolution_percentage"),
    ("render", "filepath"),
    ("render", "use_file_extension"),
    ("render.image_settings", "media_type"),
    ("render.image_settings", "file_format"),
    ("render.image_settings", "color_mode"),
    ("render.image_settings", "color_depth"),
    ("render", "film_transparent"),
    # What stands between the camera's view and the written image: the edit (which holds the takes
    # themselves), the compositor, a render region, burnt-in metadata, stereo views, other layers.
    ("render", "use_sequencer"),
    ("render", "use_compositing"),
    ("render", "use_border"),
    ("render", "use_crop_to_border"),
    ("render", "use_stamp"),
    ("render", "use_multiview"),
    ("render", "use_single_layer"),
    ("", "frame_current"),
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
    """What a Generate sends: `frames` are scene frames, one image each, in order; the take comes
    back with one image per frame and starts at `frames[0]`."""

    frames: list[int]
    width: int
    height: int
    shot_frames: int
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        frames = (
            f"{len(self.frames)} frames"
            if len(self.frames) == self.shot_frames
            else f"the first {len(self.frames)} of {self.shot_frames} frames"
        )
        return f"{frames} at {self.width}x{self.height}"


def _owner(scene, path: str):
    owner = scene
    for part in filter(None, path.split(".")):
        owner = getattr(owner, part)
    return owner


@contextlib.contextmanager
def preserved_settings(scene):
    # Blender before 5.0 has no media_type: only what this Blender has is saved and put back.
    saved = [
        (path, name, getattr(_owner(scene, path), name)) for path, name in TOUCHED if hasattr(_owner(scene, path), name)
    ]
    try:
        yield
    finally:
        for path, name, value in saved:
            if name == "frame_current":
                scene.frame_set(value)
            else:
                setattr(_owner(scene, path), name, value)


def _limit(limits: dict | None, name: str) -> int:
    return int((limits or {}).get(name) or DEFAULT_LIMITS[name])


def plan(scene, max_side: int, limits: dict | None = None, long_shot: str = "STOP") -> PlayblastPlan:
    """What would be sent for this scene to a backend with `limits` (its Welcome's; the default
    limits when None); raises PlayblastError, saying what to change, when nothing can be.

    Every frame of the shot is sent, so the take covers it frame for frame. A shot longer than
    the backend takes is refused (`long_shot` "STOP") or cut to its first frames ("FIRST")."""
    if scene.camera is None:
        raise PlayblastError("the scene has no camera: add one and make it the scene camera")
    first, last = scene.frame_start, scene.frame_end
    if last < first:
        raise PlayblastError(f"the frame range is empty (start {first}, end {last})")
    scale = scene.render.resolution_percentage / 100.0
    render_width = max(1, round(scene.render.resolution_x * scale))
    render_height = max(1, round(scene.render.resolution_y * scale))
    width, height = sent_size(
        render_width, render_height, max_side, _limit(limits, "max_width"), _limit(limits, "max_height")
    )
    shot_frames, max_frames = last - first + 1, _limit(limits, "max_frames")
    notes = []
    if (width, height) != (render_width, render_height):
        notes.append(f"scaled down from {render_width}x{render_height}")
    if shot_frames > max_frames:
        if long_shot != "FIRST":
            raise PlayblastError(
                f"the shot has {shot_frames} frames and the backend takes at most {max_frames} "
                f"per take: shorten the frame range, or set Long Shots to First Frames Only to "
                f"send frames {first} to {first + max_frames - 1}"
            )
        last = first + max_frames - 1
        notes.append(f"frames {last + 1} to {scene.frame_end} are left out")
    sent = last - first + 1
    if legal_frame_count(sent) != sent:
        notes.append(f"the model works at {legal_frame_count(sent)} frames; the take comes back with {sent}")
    return PlayblastPlan(list(range(first, last + 1)), width, height, shot_frames, notes)


def renders_geometry(obj) -> bool:
    """Whether the object shows up in a render: geometry, or an empty that instances a collection."""
    return obj.type in GEOMETRY_TYPES or (
        obj.type == "EMPTY" and obj.instance_type == "COLLECTION" and obj.instance_collection is not None
    )


def _rendered_objects(scene) -> list:
    view_layer = scene.view_layers[0] if scene.view_layers else None
    return [
        obj
        for obj in scene.objects
        if renders_geometry(obj) and not obj.hide_render and (view_layer is None or obj.name in view_layer.objects)
    ]


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


class Survey:
    """Which of `objects` move over the frames visited (pose or deformation), and which the camera
    sees in at least one of them: two sets of indices into `objects`, filled a frame at a time."""

    def __init__(self, scene, objects: list):
        self.scene, self.objects = scene, objects
        self.first: list | None = None
        self.moved: set[int] = set()
        self.seen: set[int] = set()

    def visit(self, frame: int) -> None:
        """Look at one frame; leaves the scene there."""
        self.scene.frame_set(frame)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        placements = [_placement(obj, depsgraph) for obj in self.objects]
        poses = [pose for pose, _ in placements]
        self.seen.update(
            index
            for index, (_, corners) in enumerate(placements)
            if index not in self.seen and _in_view(self.scene, corners)
        )
        if self.first is None:
            self.first = poses
            return
        self.moved.update(
            index
            for index, (start, now) in enumerate(zip(self.first, poses, strict=True))
            if index not in self.moved and any(abs(a - b) > MOVE_TOLERANCE for a, b in zip(start, now, strict=True))
        )

    def subjects(self, mode: str) -> list:
        wanted = self.seen if mode == "COLLECTION" else self.moved & self.seen
        return [obj for index, obj in enumerate(self.objects) if index in wanted]


def subject_candidates(scene, mode: str, collection=None) -> list:
    """The objects that may be the shot's subjects under `mode` (see FlowMotionShot.subjects): the
    rendered objects, or a collection's; none for 'NONE'. Raises PlayblastError when a collection
    is asked for and none is set."""
    if mode not in SUBJECT_MODES:
        raise PlayblastError(f"unknown subjects setting {mode!r}; choose one of {', '.join(SUBJECT_MODES)}")
    if mode == "NONE":
        return []
    candidates = _rendered_objects(scene)
    if mode == "COLLECTION":
        if collection is None:
            raise PlayblastError(
                "Subjects is set to Collection but no collection is chosen: choose the one that "
                "holds the shot's subjects"
            )
        members = set(collection.all_objects)
        candidates = [obj for obj in candidates if obj in members]
    return candidates


def subject_objects(scene, mode: str, collection=None, frames: list[int] | None = None) -> list:
    """The shot's subjects under `mode` that the camera sees in at least one of `frames`: the
    moving candidates, or all of a collection's. Leaves the scene at the last frame."""
    survey = Survey(scene, subject_candidates(scene, mode, collection))
    if survey.objects:
        for frame in frames or [scene.frame_start, scene.frame_end]:
            survey.visit(frame)
    return survey.subjects(mode)


def render(
    scene,
    max_side: int,
    folder: str | Path | None = None,
    subjects: str = "NONE",
    collection=None,
    on_frame=None,
    limits: dict | None = None,
) -> Playblast:
    """Render the whole playblast at once (see PlayblastRender): the PNG files of its frames and,
    when the shot has subjects, their masks; returns their paths in order. `on_frame(done,
    total)` is called after every rendered image (frames and masks)."""
    job = PlayblastRender(scene, plan(scene, max_side, limits), subjects, collection, folder)
    try:
        while True:
            before = job.done
            finished = job.step()
            if on_frame is not None and job.done > before:
                on_frame(job.done, job.total)
            if finished:
                return job.result()
    except BaseException:
        job.discard()
        raise


class PlayblastRender:
    """A playblast rendered one image per `step()`: the first steps find the subjects (a few
    frames each), every later one renders one frame or mask. Without `folder` the files go to a new
    temporary folder, which `discard()` removes again."""

    def __init__(
        self, scene, shot: PlayblastPlan, subjects: str = "NONE", collection=None, folder: str | Path | None = None
    ):
        self.scene, self.plan, self.mode, self.collection = scene, shot, subjects, collection
        self.own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="flowmotion-playblast-"))
        self.survey: Survey | None = None
        self.unvisited: list[int] = []
        self.subjects: list | None = None
        self.images: list[tuple[int, Path, bool]] = []  # (scene frame, file, whether it is a mask)
        self.done = 0

    @property
    def total(self) -> int:
        """Images to render; 0 while the subjects are still being found."""
        return len(self.images)

    def step(self) -> bool:
        """Do the next piece of work; True once every image is rendered."""
        if self.subjects is None:
            self._survey()
        elif self.done < len(self.images):
            frame, path, mask = self.images[self.done]
            hidden = [obj for obj in _rendered_objects(self.scene) if obj not in self.subjects] if mask else []
            _render_image(self.scene, self.plan, frame, path, hidden, "subject mask" if mask else "playblast frame")
            self.done += 1
        return self.subjects is not None and self.done == len(self.images)

    def _survey(self) -> None:
        """Look at the next few frames for the subjects; once all are seen, list the images."""
        if self.survey is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.survey = Survey(self.scene, subject_candidates(self.scene, self.mode, self.collection))
            self.unvisited = list(self.plan.frames) if self.survey.objects else []
        with preserved_settings(self.scene):  # the survey steps through the shot's frames
            for frame in self.unvisited[:SURVEY_FRAMES_PER_STEP]:
                self.survey.visit(frame)
        del self.unvisited[:SURVEY_FRAMES_PER_STEP]
        if self.unvisited:
            return
        self.subjects = self.survey.subjects(self.mode)
        numbered = list(enumerate(self.plan.frames, start=1))
        self.images = [(frame, self.folder / f"frame_{n:04d}.png", False) for n, frame in numbered]
        if self.subjects:
            (self.folder / "subjects").mkdir(exist_ok=True)
            self.images += [(frame, self.folder / "subjects" / f"frame_{n:04d}.png", True) for n, frame in numbered]

    def result(self) -> Playblast:
        frames = [path for _, path, mask in self.images if not mask]
        masks = [path for _, path, mask in self.images if mask]
        return Playblast(frames, masks, [obj.name for obj in self.subjects or []])

    def discard(self) -> None:
        if self.own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def _use_workbench_png(render_settings, width: int, height: int, transparent: bool) -> None:
    render_settings.engine = "BLENDER_WORKBENCH"
    render_settings.resolution_x, render_settings.resolution_y = width, height
    render_settings.resolution_percentage = 100
    render_settings.use_file_extension = True
    render_settings.film_transparent = transparent
    for name in ("use_sequencer", "use_compositing", "use_border", "use_stamp", "use_multiview"):
        setattr(render_settings, name, False)
    render_settings.use_single_layer = True
    image = render_settings.image_settings
    if hasattr(image, "media_type"):
        image.media_type = "IMAGE"
    image.file_format = "PNG"
    image.color_mode = "RGBA" if transparent else "RGB"
    image.color_depth = "8"


def _render_image(scene, shot: PlayblastPlan, frame: int, path: Path, hidden: list, what: str) -> None:
    """One image of the playblast. A mask (some objects `hidden`) renders on a transparent film:
    its alpha is where the subjects are. Settings and visibility come back afterwards."""
    with preserved_settings(scene):
        _use_workbench_png(scene.render, shot.width, shot.height, transparent=bool(hidden) or what == "subject mask")
        try:
            for obj in hidden:
                obj.hide_render = True
            scene.frame_set(frame)
            scene.render.filepath = str(path)
            try:
                bpy.ops.render.render(write_still=True, scene=scene.name)
            except RuntimeError as error:
                raise PlayblastError(f"Blender could not render {what} {frame}: {error}") from None
        finally:
            for obj in hidden:
                obj.hide_render = False
    if not path.is_file():
        raise PlayblastError(f"Blender did not write {what} {frame} to {path.parent}: is the disk full?")
