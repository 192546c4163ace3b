"""The embedded model's world rendered by Blender: primitives on a ground plane with a horizon,
seen in perspective by a camera, moving along keyed paths or filmed by a moving camera.

    python -m flowmotion.toy.blender_world --out DIR --count N --seed S [--width 320 --height 192
        --frames 17]
    python -m flowmotion.toy.blender_world --pack DIR      # DIR.tar.xz, for a limited upload

A shot is drawn from its own integer seed (`shot_spec`), so a seed fixes it on any machine; its
kind is fixed by the seed too (`KINDS[seed % 3]`), so a run of consecutive seeds holds the three
kinds in turn:

- "object": a subject moves (slide, hop, arc, approach, recede, crossing) under a static camera;
- "object+camera": the same, while the camera pans, dollies or orbits;
- "camera": the camera pans, dollies or orbits over a static set (no subject).

Every shot renders in two looks with the same geometry: "playblast", what the add-on sends (a
factory-default Workbench render: grey studio-lit shapes under a dark world), and "scene", the
shapes in colour, flat-lit, on a ground of its background's colour under a pale sky, captioned in
the embedded model's words ("a red ball on grass"; for a camera shot, the static hero of the set).
With it come the subject's mask per frame (rendered alone on a transparent film, as the add-on
renders subject masks) and the projection of its centre per frame (x, y in pixels, which lies
outside the frame while the subject is out of view).

Seeds below `BENCHMARK_SEED_START` are for training sets; bench/blockout.py draws its held-out
shots from that seed on, so no training run that keeps to the rule ever sees them.

Only the functions that build or render a scene import `bpy`: the rest of the package imports
without Blender.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import durable
from .data import BACKGROUNDS, COLORS, HELD_OUT_SHAPES, TRAIN_SHAPES, Clip, caption_for

KINDS = ("object", "object+camera", "camera")
SUBJECT_PATHS = ("slide", "hop", "arc", "approach", "recede", "cross")
CAMERA_MOVES = ("pan", "dolly", "orbit")
SHAPES = TRAIN_SHAPES + HELD_OUT_SHAPES
COMPOUNDS = ("tower", "arch", "pair")
LOOKS = ("playblast", "scene")
BENCHMARK_SEED_START = 1_000_000
"""Training clips use seeds below this; the benchmark's held-out shots use seeds from it on."""
SKY = (200, 215, 230)
LENS_MM, SENSOR_MM = 35.0, 36.0
GROUND_SIZE = 400.0
MASK_ALPHA = 0.5


class BlenderWorldError(Exception):
    """A shot cannot be generated or written; the message says why."""


@dataclass(frozen=True)
class Piece:
    """A static part of the set: a primitive, or a compound of primitives, standing on the ground."""

    shape: str
    x: float
    y: float
    size: float
    turn: float


@dataclass(frozen=True)
class ShotSpec:
    """Everything a shot is made of, drawn from its seed; positions in Blender units, z up, the
    camera looking down +y at the set around the origin."""

    seed: int
    kind: str
    frames: int
    color: str
    shape: str
    background: str
    size: float
    """The hero's half-size (a ball's radius)."""
    path: str | None
    camera_move: str | None
    subject_positions: list = field(repr=False)
    """(frames, 3): where the subject (or, in a camera shot, the static hero) stands each frame."""
    camera_positions: list = field(repr=False)
    camera_targets: list = field(repr=False)
    pieces: list = field(repr=False)

    @property
    def has_subject(self) -> bool:
        return self.kind != "camera"

    @property
    def caption(self) -> str:
        return caption_for(self.color, self.shape, self.background)

    @property
    def playblast_caption(self) -> str:
        return caption_for("grey", self.shape, "playblast")


@dataclass
class Shot:
    """A rendered shot: uint8 frames (frames, height, width, 3) in both looks, the subject's mask
    (frames, height, width) bool (all false in a camera shot) and its projected centre (frames, 2)
    (NaN in a camera shot)."""

    spec: ShotSpec
    playblast: np.ndarray
    scene: np.ndarray
    mask: np.ndarray
    track: np.ndarray


# ---- drawing a shot from its seed (no Blender needed) ----


def _ground_half_width(distance: float) -> float:
    """Half the width the camera sees on the ground at `distance` in front of it."""
    return distance * SENSOR_MM / (2 * LENS_MM)


def subject_path(kind: str, rng: np.random.Generator, frames: int, size: float, camera_distance: float) -> np.ndarray:
    """Ground-standing positions (frames, 3) of a subject moving along a kind of path."""
    t = np.linspace(0.0, 1.0, frames)[:, None]
    side = rng.choice([-1.0, 1.0])
    middle = rng.uniform(-3.0, 3.0)  # paths need not centre on the frame: a parked blob there must not win
    x0, x1 = middle + side * rng.uniform(1.5, 3.5), middle - side * rng.uniform(1.5, 3.5)
    y = rng.uniform(-2.0, 3.0)
    start, end = np.array([x0, y]), np.array([x1, y + rng.uniform(-1.5, 1.5)])
    hop = np.zeros(frames)
    if kind == "slide":
        ground = start + (end - start) * t
    elif kind == "hop":
        ground = start + (end - start) * t
        hop = rng.uniform(1.0, 2.5) * np.abs(np.sin(np.pi * rng.integers(1, 3) * t[:, 0]))
    elif kind == "arc":
        bend = (start + end) / 2 + np.array([0.0, rng.choice([-1.0, 1.0]) * rng.uniform(3.0, 5.0)])
        ground = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end
    elif kind in ("approach", "recede"):
        far = np.array([middle + rng.uniform(-1.5, 1.5), rng.uniform(6, 9)])
        near = np.array([middle + rng.uniform(-1.5, 1.5), -5.0])
        a, b = (far, near) if kind == "approach" else (near, far)
        ground = a + (b - a) * t
    elif kind == "cross":  # enters on one side, leaves on the other
        reach = _ground_half_width(camera_distance + y) + size * 2.5
        ground = np.array([side * reach, y]) + (np.array([-side * reach, y]) - np.array([side * reach, y])) * t
    else:
        raise BlenderWorldError(f"unknown subject path {kind!r}; choose one of {', '.join(SUBJECT_PATHS)}")
    return np.column_stack([ground, size + hop])


def camera_path(
    move: str | None, rng: np.random.Generator, frames: int, distance: float, height: float, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Camera positions and look-at points (frames, 3 each) for a move (None: static)."""
    t = np.linspace(0.0, 1.0, frames)[:, None]
    position = np.array([0.0, -distance, height])
    positions, targets = np.repeat(position[None], frames, 0), np.repeat(target[None], frames, 0)
    sign = rng.choice([-1.0, 1.0])
    if move is None:
        return positions, targets
    if move == "pan":  # the camera turns where it stands
        angles = np.radians(sign * rng.uniform(10.0, 18.0)) * (t[:, 0] - 0.5)
        offset = target - position
        turned = np.stack(
            [
                offset[0] * np.cos(angles) - offset[1] * np.sin(angles),
                offset[0] * np.sin(angles) + offset[1] * np.cos(angles),
                np.full(frames, offset[2]),
            ],
            axis=1,
        )
        return positions, position + turned
    if move == "dolly":  # the camera travels along its view
        view = (target - position) / np.linalg.norm(target - position)
        travel = sign * rng.uniform(2.5, 4.5) * (t - 0.5)
        return positions + travel * view, targets + travel * view
    if move == "orbit":  # the camera circles the set, looking at its centre
        angles = np.radians(sign * rng.uniform(15.0, 30.0)) * (t[:, 0] - 0.5)
        radius = np.hypot(*(position - target)[:2])
        return np.stack(
            [target[0] + radius * np.sin(angles), target[1] - radius * np.cos(angles), np.full(frames, height)], axis=1
        ), targets
    raise BlenderWorldError(f"unknown camera move {move!r}; choose one of {', '.join(CAMERA_MOVES)}")


def _set_pieces(rng: np.random.Generator, avoid: np.ndarray, camera_distance: float) -> list[Piece]:
    """A few static primitives and compounds around the set, none standing on the hero's ground
    positions (`avoid`, (n, 2))."""
    pieces: list[Piece] = []
    while len(pieces) < rng.integers(3, 6):
        x, y = rng.uniform(-6.0, 6.0), rng.uniform(-1.0, 10.0)
        if np.min(np.hypot(avoid[:, 0] - x, avoid[:, 1] - y)) < 2.0:
            continue
        shape = str(rng.choice(SHAPES + COMPOUNDS))
        pieces.append(Piece(shape, float(x), float(y), float(rng.uniform(0.4, 0.9)), float(rng.uniform(0, 90))))
    return pieces + _rocks(rng, avoid, camera_distance)


def _rocks(rng: np.random.Generator, avoid: np.ndarray, camera_distance: float) -> list[Piece]:
    """Small stones strewn over the ground the camera sees, near and far: a blockout's ground
    plane has no texture, and without them a camera move would show nothing moving below the set."""
    rocks: list[Piece] = []
    while len(rocks) < rng.integers(14, 23):
        y = rng.uniform(4.0 - camera_distance, 10.0)
        x = rng.uniform(-1.4, 1.4) * _ground_half_width(camera_distance + y)
        if np.min(np.hypot(avoid[:, 0] - x, avoid[:, 1] - y)) < 1.2:
            continue
        shape = str(rng.choice(["cube", "ball"]))
        rocks.append(Piece(shape, float(x), float(y), float(rng.uniform(0.1, 0.25)), float(rng.uniform(0, 90))))
    return rocks


def shot_spec(seed: int, frames: int = 17, kind: str | None = None) -> ShotSpec:
    """The shot of a seed: its kind (by default `KINDS[seed % 3]`), subject, set and camera."""
    if frames < 2:
        raise BlenderWorldError(f"a shot needs at least 2 frames, got {frames}")
    kind = kind or KINDS[seed % len(KINDS)]
    if kind not in KINDS:
        raise BlenderWorldError(f"unknown shot kind {kind!r}; choose one of {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    color, shape = str(rng.choice(list(COLORS))), str(rng.choice(SHAPES))
    background = str(rng.choice(list(BACKGROUNDS)))
    size = float(rng.uniform(0.6, 1.0))
    distance, tilt = float(rng.uniform(10.0, 14.0)), math.radians(rng.uniform(7.0, 12.0))
    target = np.array([0.0, 0.0, 0.5])
    height = float(target[2] + distance * math.tan(tilt))
    path = move = None
    if kind == "camera":
        positions = np.repeat([[rng.uniform(-1.5, 1.5), rng.uniform(0.0, 3.0), size]], frames, 0)
    else:
        path = str(rng.choice(SUBJECT_PATHS))
        positions = subject_path(path, rng, frames, size, distance)
    if kind != "object":
        move = str(rng.choice(CAMERA_MOVES))
    cameras, targets = camera_path(move, rng, frames, distance, height, target)
    pieces = _set_pieces(rng, positions[:, :2], distance)
    return ShotSpec(
        seed,
        kind,
        frames,
        color,
        shape,
        background,
        size,
        path,
        move,
        positions.tolist(),
        cameras.tolist(),
        targets.tolist(),
        pieces,
    )


# ---- building and rendering the scene (Blender) ----


def _linear(rgb) -> tuple:
    """sRGB 0-255 -> scene-linear 0-1, so a flat Standard-view render shows the colour as given."""
    c = np.asarray(rgb, np.float64) / 255.0
    return tuple(np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4))


def _primitive(shape: str, size: float, location, name: str):
    import bpy

    ops = bpy.ops.mesh
    if shape == "ball":
        ops.primitive_uv_sphere_add(radius=size, segments=24, ring_count=12, location=location)
    elif shape == "cube":
        ops.primitive_cube_add(size=2 * size, location=location)
    elif shape == "triangle":  # a cone: a triangle from the side
        ops.primitive_cone_add(vertices=24, radius1=size, depth=2 * size, location=location)
    elif shape == "diamond":  # an octahedron
        ops.primitive_uv_sphere_add(radius=size, segments=4, ring_count=2, location=location)
    elif shape == "ring":  # a torus standing up, facing the camera
        ops.primitive_torus_add(
            major_radius=size * 0.8, minor_radius=size * 0.25, location=location, rotation=(math.pi / 2, 0.0, 0.0)
        )
    else:
        raise BlenderWorldError(f"unknown shape {shape!r}")
    obj = bpy.context.active_object
    obj.name = name
    return obj


COMPOUND_PARTS = {
    # (shape, x, z, size) of each part, in units of the compound's size, standing on the ground
    "tower": (("cube", 0.0, 1.0, 1.0), ("cube", 0.0, 2.7, 0.7), ("ball", 0.0, 3.9, 0.5)),
    "arch": (("cube", -1.2, 1.0, 0.4), ("cube", 1.2, 1.0, 0.4), ("cube", 0.0, 2.2, 0.45)),
    "pair": (("ball", -0.7, 0.6, 0.6), ("cube", 0.7, 0.8, 0.8)),
}


def _add_piece(piece: Piece, index: int) -> list:
    turn = math.radians(piece.turn)
    if piece.shape not in COMPOUND_PARTS:
        obj = _primitive(piece.shape, piece.size, (piece.x, piece.y, piece.size), f"set_{index}")
        obj.rotation_euler[2] += turn
        return [obj]
    parts = []
    for number, (shape, dx, z, scale) in enumerate(COMPOUND_PARTS[piece.shape]):
        dx *= piece.size
        location = (piece.x + dx * math.cos(turn), piece.y + dx * math.sin(turn), z * piece.size)
        parts.append(_primitive(shape, scale * piece.size, location, f"set_{index}_{number}"))
    return parts


def _aim(obj, position, target) -> None:
    from mathutils import Vector

    obj.location = Vector(position)
    obj.rotation_euler = (Vector(target) - Vector(position)).to_track_quat("-Z", "Y").to_euler()


def build_scene(spec: ShotSpec, width: int, height: int):
    """A fresh Blender scene of the shot (the file in memory is replaced), keyed frame by frame;
    returns (scene, subject or hero object, set objects, ground)."""
    try:
        import bpy
    except ImportError:
        raise BlenderWorldError(
            "rendering the Blender world needs Blender as a Python module: "
            "pip install bpy (in a Python version its release supports)"
        ) from None

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.world = bpy.data.worlds.new("World")  # a factory world: the playblast's dark backdrop
    scene.frame_start, scene.frame_end = 1, spec.frames
    render = scene.render
    render.engine = "BLENDER_WORKBENCH"
    render.resolution_x, render.resolution_y, render.resolution_percentage = width, height, 100
    render.image_settings.file_format = "PNG"
    render.image_settings.color_depth = "8"
    bpy.ops.mesh.primitive_plane_add(size=GROUND_SIZE, location=(0.0, 0.0, 0.0))
    ground = bpy.context.active_object
    ground.name = "ground"
    hero = _primitive(spec.shape, spec.size, spec.subject_positions[0], "subject")
    pieces = [obj for index, piece in enumerate(spec.pieces) for obj in _add_piece(piece, index)]
    camera_data = bpy.data.cameras.new("camera")
    camera_data.lens, camera_data.sensor_width, camera_data.sensor_fit = LENS_MM, SENSOR_MM, "HORIZONTAL"
    camera_data.clip_end = GROUND_SIZE
    camera = bpy.data.objects.new("camera", camera_data)
    scene.collection.objects.link(camera)
    scene.camera = camera
    for frame in range(spec.frames):
        if spec.has_subject:
            hero.location = spec.subject_positions[frame]
            hero.keyframe_insert("location", frame=frame + 1)
        _aim(camera, spec.camera_positions[frame], spec.camera_targets[frame])
        camera.keyframe_insert("location", frame=frame + 1)
        camera.keyframe_insert("rotation_euler", frame=frame + 1)
    return scene, hero, pieces, ground


def set_look(scene, look: str, spec: ShotSpec, hero, pieces: list, ground) -> None:
    """Dress the scene in a look; the geometry, camera and keys stay as they are."""
    shading = scene.display.shading
    if look == "playblast":  # Blender's factory defaults, which the add-on renders with
        scene.view_settings.view_transform = "AgX"
        shading.light, shading.color_type = "STUDIO", "MATERIAL"
        scene.world.color = (0.050876, 0.050876, 0.050876)
        return
    if look != "scene":
        raise BlenderWorldError(f"unknown look {look!r}; choose one of {', '.join(LOOKS)}")
    scene.view_settings.view_transform = "Standard"
    shading.light, shading.color_type = "FLAT", "OBJECT"
    scene.world.color = _linear(SKY)
    backdrop = np.array(BACKGROUNDS[spec.background], np.float64)
    ground.color = (*_linear(backdrop), 1.0)
    hero.color = (*_linear(COLORS[spec.color]), 1.0)
    for number, obj in enumerate(pieces):  # set pieces in shades of the ground, so the hero stands out
        obj.color = (*_linear(backdrop * (0.55 if number % 2 else 0.75)), 1.0)


@contextlib.contextmanager
def _quiet_stdout():
    """Blender logs every rendered image on the process's standard output, where the caller's own
    output (a benchmark's table) goes: the renders' lines go nowhere instead."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as sink:
        os.dup2(sink.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _render_frames(scene, folder: Path, frames: int, alpha: bool = False) -> np.ndarray:
    import bpy
    from PIL import Image

    scene.render.film_transparent = alpha
    scene.render.image_settings.color_mode = "RGBA" if alpha else "RGB"
    images = []
    for frame in range(1, frames + 1):
        scene.frame_set(frame)
        path = folder / f"frame_{frame:04d}.png"
        scene.render.filepath = str(path)
        with _quiet_stdout():
            bpy.ops.render.render(write_still=True, scene=scene.name)
        with Image.open(path) as image:
            images.append(np.array(image))
    return np.stack(images)


def render_look(scene, frames: int, folder: Path) -> np.ndarray:
    """The scene's frames as they look now: uint8 (frames, height, width, 3)."""
    return _render_frames(scene, folder, frames)


def render_mask(scene, subject, frames: int, folder: Path) -> np.ndarray:
    """Where the subject is, as the add-on finds it: rendered alone on a transparent film, bool
    (frames, height, width); every other object's render visibility comes back after."""
    others = [obj for obj in scene.objects if obj is not subject and obj.type == "MESH"]
    try:
        for obj in others:
            obj.hide_render = True
        return _render_frames(scene, folder, frames, alpha=True)[..., 3] >= MASK_ALPHA * 255
    finally:
        for obj in others:
            obj.hide_render = False


def project_track(scene, subject, frames: int) -> np.ndarray:
    """The subject's bounding-box centre in the camera's frame, (x, y) pixels from the top left,
    per frame."""
    import bpy
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    width, height = scene.render.resolution_x, scene.render.resolution_y
    track = []
    for frame in range(1, frames + 1):
        scene.frame_set(frame)
        evaluated = subject.evaluated_get(bpy.context.evaluated_depsgraph_get())
        corners = [evaluated.matrix_world @ Vector(corner) for corner in evaluated.bound_box]
        point = world_to_camera_view(scene, scene.camera, sum(corners, Vector()) / len(corners))
        track.append((point.x * width, (1.0 - point.y) * height))
    return np.array(track, np.float64)


def render_shot(spec: ShotSpec, width: int, height: int) -> Shot:
    """Build the shot in Blender and render both looks, the subject's mask and its track."""
    if width < 8 or height < 8:
        raise BlenderWorldError(f"frames of {width}x{height} are too small; use at least 8x8")
    scene, hero, pieces, ground = build_scene(spec, width, height)
    with tempfile.TemporaryDirectory(prefix="flowmotion-world-") as temporary:
        folder = Path(temporary)
        looks = {}
        for look in LOOKS:
            set_look(scene, look, spec, hero, pieces, ground)
            looks[look] = render_look(scene, spec.frames, folder)
        if spec.has_subject:
            mask, track = render_mask(scene, hero, spec.frames, folder), project_track(scene, hero, spec.frames)
        else:
            mask, track = np.zeros((spec.frames, height, width), bool), np.full((spec.frames, 2), np.nan)
    return Shot(spec, looks["playblast"], looks["scene"], mask, track)


# ---- files ----


def describe(shot: Shot) -> dict:
    spec = shot.spec
    return {
        "seed": spec.seed,
        "kind": spec.kind,
        "caption": spec.caption,
        "playblast_caption": spec.playblast_caption,
        "color": spec.color,
        "shape": spec.shape,
        "background": spec.background,
        "path": spec.path,
        "camera_move": spec.camera_move,
        "frames": spec.frames,
        "track": None if not spec.has_subject else shot.track.round(3).tolist(),
        "pieces": [asdict(piece) for piece in spec.pieces],
    }


def clip_name(seed: int) -> str:
    return f"shot_{seed:08d}.npz"


def write_shots(out: Path, seeds, width: int, height: int, frames: int, on_shot=None) -> list[dict]:
    """Render the shots of `seeds` into `out`: one .npz each (playblast, scene, mask, track) and
    shots.json describing them all, each written whole or not at all (`flowmotion.durable`)."""
    out.mkdir(parents=True, exist_ok=True)
    described = []
    for seed in seeds:
        shot = render_shot(shot_spec(seed, frames), width, height)
        with durable.replacing(out / clip_name(seed)) as staged, open(staged, "wb") as file:
            np.savez_compressed(file, playblast=shot.playblast, scene=shot.scene, mask=shot.mask, track=shot.track)
        described.append({"file": clip_name(seed), **describe(shot)})
        if on_shot is not None:
            on_shot(len(described), shot)
    durable.write_text(out / "shots.json", json.dumps({"width": width, "height": height, "shots": described}, indent=1))
    return described


ARCHIVE_SUFFIX = ".tar.xz"


def is_archive(path: Path) -> bool:
    return Path(path).name.endswith(ARCHIVE_SUFFIX) and Path(path).is_file()


def pack_shots(folder: Path, archive: Path) -> Path:
    """One xz-compressed tar of the shots that write_shots left in `folder`: shots.json and each shot's
    arrays as a plain .npz, since xz packs the raw frames about twice as tight as each shot's own zip
    (the form that carries a training set to a machine that takes a limited upload). Written whole or
    not at all; `load_shots` reads it as it reads the folder."""
    folder, archive = Path(folder), Path(archive)
    index = json.loads((folder / "shots.json").read_text())
    with durable.replacing(archive) as staged, tarfile.open(staged, "w:xz", preset=9) as tar:
        for entry in index["shots"]:  # one shot in memory at a time
            buffer = io.BytesIO()
            np.savez(buffer, **_arrays(folder / entry["file"]))
            _add_member(tar, entry["file"], buffer.getvalue())
        _add_member(tar, "shots.json", json.dumps(index, indent=1).encode())
    return archive


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def load_shots(source: Path) -> list[tuple[dict, dict]]:
    """(description, arrays) of every shot that write_shots left in the folder `source`, or that
    pack_shots put in the archive `source`."""
    source = Path(source)
    if is_archive(source):
        with tarfile.open(source, "r:xz") as tar:
            members = {member.name: member for member in tar.getmembers() if member.isfile()}
            if "shots.json" not in members:
                raise BlenderWorldError(f"{source} holds no shots.json: pack a folder of shots with --pack")

            def read(name: str) -> bytes:
                stream = tar.extractfile(members[name]) if name in members else None
                if stream is None:
                    raise BlenderWorldError(f"{source} names {name} in shots.json but does not hold it")
                return stream.read()

            index = json.loads(read("shots.json"))
            return [(entry, _arrays(io.BytesIO(read(entry["file"])))) for entry in index["shots"]]
    index = json.loads((source / "shots.json").read_text())
    return [(entry, _arrays(source / entry["file"])) for entry in index["shots"]]


def _arrays(file) -> dict:
    with np.load(file) as arrays:
        return {name: arrays[name] for name in arrays.files}


def clips_from_shots(folder: Path) -> list[Clip]:
    """The shots that write_shots left in `folder` as the embedded model's training clips: each
    shot twice, in its playblast look ("a playblast of a grey cube") and its scene look ("a red
    cube on grass"), with the subject's track and mask (NaN and empty in a camera shot)."""
    clips = []
    for entry, arrays in load_shots(folder):
        for look, color, background in (
            ("playblast", "grey", "playblast"),
            ("scene", entry["color"], entry["background"]),
        ):
            clips.append(
                Clip(
                    arrays[look],
                    caption_for(color, entry["shape"], background),
                    arrays["track"],
                    color,
                    entry["shape"],
                    background,
                    arrays["mask"],
                )
            )
    return clips


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="the folder to render the shots into")
    parser.add_argument(
        "--pack",
        type=Path,
        metavar="FOLDER",
        help=f"render nothing: pack the shots in FOLDER into FOLDER{ARCHIVE_SUFFIX} (train.py's --shots reads it)",
    )
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0, help="the first shot's seed; the others follow it")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--frames", type=int, default=17)
    args = parser.parse_args(argv)
    if (args.out is None) == (args.pack is None):
        parser.error("give --out to render shots, or --pack to pack a folder of them (one of the two)")
    if args.pack is not None:
        if not (args.pack / "shots.json").is_file():
            parser.error(f"--pack {args.pack}: no shots.json there; render shots into it with --out first")
        try:
            archive = pack_shots(args.pack, args.pack.with_name(args.pack.name + ARCHIVE_SUFFIX))
        except (OSError, ValueError) as error:  # a shot named in shots.json is missing or damaged
            print(f"error: {args.pack} cannot be packed: {error}", file=sys.stderr)
            return 2
        print(f"{archive} ({archive.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)
        return 0
    if args.count < 1:
        parser.error("--count must be at least 1")
    try:
        write_shots(
            args.out,
            range(args.seed, args.seed + args.count),
            args.width,
            args.height,
            args.frames,
            on_shot=lambda done, shot: print(
                f"{done}/{args.count} {shot.spec.kind}: {shot.spec.caption}", file=sys.stderr
            ),
        )
    except BlenderWorldError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
